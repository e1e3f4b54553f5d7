package codepolicy

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// sharedData returns the path of a file under shared/data, which sits
// beside the repository (../shared/data from the repository root). The test
// fails, not skips, when it is missing: the real inputs are the point.
func sharedData(tb testing.TB, rel string) string {
	tb.Helper()
	dir := os.Getenv("VIGIL_SHARED_DATA")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "shared", "data")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("real test input missing: %v (set VIGIL_SHARED_DATA to the shared/data directory)", err)
	}
	return p
}

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
