package codepolicy

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/vigil-attest/vigil/internal/artifacts"
)

// sharedData returns the path of a real input under shared/data; the test
// fails, not skips, when it is missing: the real inputs are the point.
func sharedData(tb testing.TB, rel string) string { return artifacts.SharedData(tb, rel) }

func mustParse(tb testing.TB, yml, baseDir string) *Policy {
	tb.Helper()
	p, err := Parse([]byte(yml), baseDir)
	if err != nil {
		tb.Fatalf("Parse: %v\n%s", err, yml)
	}
	return p
}

func asParseError(err error, pe **ParseError) bool { return errors.As(err, pe) }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
