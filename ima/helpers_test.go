package ima_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testcmd"
)

// sharedList is one of the real ASCII lists under shared/data/ima.
type sharedList struct {
	name string
	text []byte
}

// sharedLists returns every file of shared/data/ima, sorted by name. It
// fails the test when there is none.
func sharedLists(tb testing.TB) []sharedList {
	tb.Helper()
	dir := artifacts.SharedData(tb, "ima")
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []sharedList
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, sharedList{e.Name(), b})
	}
	if len(out) == 0 {
		tb.Fatalf("no IMA lists in %s", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// encode returns the binary list of recs.
func encode(tb testing.TB, recs []ima.Record) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := ima.EncodeBinary(&b, recs); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// parseASCII parses text that must be valid.
func parseASCII(tb testing.TB, text []byte) []ima.Record {
	tb.Helper()
	recs, err := ima.ParseASCII(bytes.NewReader(text), ima.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// span is an entry's place in a list.
type span struct{ off, size int }

// spans returns where each entry of a valid list lies.
func spans(tb testing.TB, list []byte) []span {
	tb.Helper()
	var out []span
	p := ima.NewParser(bytes.NewReader(list), ima.Options{})
	for {
		e, err := p.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, span{int(e.Offset), e.Size})
	}
}

// parse replays a list that must be valid.
func parse(tb testing.TB, list []byte) *ima.State {
	tb.Helper()
	st, err := ima.Parse(bytes.NewReader(list), ima.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// parseErr returns the *ParseError of err, failing the test otherwise.
func parseErr(tb testing.TB, err error) *ima.ParseError {
	tb.Helper()
	var pe *ima.ParseError
	if !errors.As(err, &pe) {
		tb.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
	return pe
}

// opensslDigest hashes b with `openssl dgst`: an implementation that
// shares nothing with this package.
func opensslDigest(tb testing.TB, algo string, b []byte) []byte {
	tb.Helper()
	return testcmd.RunStdin(tb, b, "openssl", "dgst", "-"+algo, "-binary")
}

// handNG builds ima-ng template data field by field, without the package.
func handNG(algo string, digest []byte, name string) []byte {
	var b []byte
	d := append([]byte(algo+":\x00"), digest...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(d)))
	b = append(b, d...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = append(b, name...)
	return append(b, 0)
}

func le32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
