package appraise

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// FuzzJSONValue holds jsonValue to ast.ValueFromReader (encoding/json
// underneath): the same value for every valid JSON document, an error for
// every invalid one, never a panic. Seeded with the runtime report schema,
// docs and the policy's data.
func FuzzJSONValue(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e3`, `-12E-2`, `123456789012345678901234567890`,
		`"a\u00e9\ud83d\ude00\n\"\\\/"`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a":[1,{"b":null}]}`,
		" \t\n{ \"x\" : [ 1 , 2 ] } \r\n", `"\xff"`, `{"a":1}x`, `[1,]`, `01`, `1.`, `-`, `"\u12"`, `1e999`,
		strings.Repeat("[", 70) + strings.Repeat("]", 70),
	} {
		f.Add([]byte(s))
	}
	for _, p := range []string{"../docs/runtime-report.schema.json", "../docs/evidence.schema.json", "policy/default/data.json"} {
		if b, err := os.ReadFile(filepath.FromSlash(p)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := jsonValue(doc)
		if !json.Valid(doc) {
			if err == nil {
				t.Fatalf("invalid JSON accepted: %q", doc)
			}
			return
		}
		want, werr := ast.ValueFromReader(bytes.NewReader(doc))
		if werr != nil {
			if err == nil && bytes.Count(doc, []byte("[")) < maxJSONDepth {
				t.Fatalf("ValueFromReader refuses %q (%v), jsonValue accepts", doc, werr)
			}
			return
		}
		if err != nil {
			if err == errJSONDepth {
				return
			}
			t.Fatalf("valid JSON %q refused: %v", doc, err)
		}
		if got.Compare(want) != 0 {
			t.Fatalf("%q: got %v, want %v", doc, got, want)
		}
	})
}

// FuzzReportValue holds the section cache to jsonValue: for any document
// the cached conversion gives the same value as jsonValue, twice (a miss,
// then hits), or an error when jsonValue gives one; never a panic.
func FuzzReportValue(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":{"b":[1,2,{"c":"}"}]},"d":"x\"y"}`, `{"a":1,"a":2}`, `{"a":1}x`, `{"a":}`, `{"a" 1}`,
		`{"a":1,}`, `{,"a":1}`, `{"a":[1,]}`, `{"a":"\"}"}`, `{"a":tru}`, `{"a":[}`, `[1]`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	for _, p := range []string{"../docs/runtime-report.schema.json", "policy/default/data.json"} {
		if b, err := os.ReadFile(filepath.FromSlash(p)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		want, werr := jsonValue(doc)
		var c sectionCache
		for round := 0; round < 2; round++ {
			got, err := c.reportValue(doc)
			switch {
			case werr != nil && err == nil:
				t.Fatalf("%q: jsonValue refuses it (%v), the section cache gives %v", doc, werr, got)
			case werr == nil && err != nil:
				t.Fatalf("%q: jsonValue accepts it, the section cache refuses it: %v", doc, err)
			case werr == nil && got.Compare(want) != 0:
				t.Fatalf("%q round %d: got %v, want %v", doc, round, got, want)
			}
		}
	})
}
