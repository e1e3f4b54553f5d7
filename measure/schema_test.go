package measure_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/schemagen"
	"github.com/vigil-attest/vigil/measure"
)

var update = flag.Bool("update", false, "rewrite docs/runtime-report.schema.json from the Go types")

func docsPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "docs", name)
}

func generatedSchema(t *testing.T) []byte {
	b, err := schemagen.Document(reflect.TypeOf(measure.Report{}),
		"https://vigil-attest.github.io/schemas/runtime-report.v1.json",
		"Vigil runtime report ("+measure.Version+")",
		"Generated from the Go types by `go test ./measure -run TestSchema -update`; see docs/runtime-report.md.",
		func(props map[string]any) {
			for _, v := range measure.Vocabularies() {
				s := schemaAt(t, map[string]any{"properties": props}, v.Path)
				if v.Pattern != "" {
					s["pattern"] = v.Pattern
					continue
				}
				enum := make([]any, len(v.Values))
				for i, x := range v.Values {
					enum[i] = x
				}
				s["enum"] = enum
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// schemaAt is the schema of the claim at path (a Vocabulary's).
func schemaAt(t testing.TB, s map[string]any, path string) map[string]any {
	t.Helper()
	for _, name := range strings.Split(path, ".") {
		base := strings.TrimRight(name, "[]{}")
		next, ok := s["properties"].(map[string]any)[base].(map[string]any)
		if !ok {
			t.Fatalf("schema has no claim %s (in %s)", base, path)
		}
		s = next
		for rest := name[len(base):]; rest != ""; rest = rest[2:] {
			key := "items"
			if strings.HasPrefix(rest, "{}") {
				key = "additionalProperties"
			}
			if s, ok = s[key].(map[string]any); !ok {
				t.Fatalf("schema of %s has no %s", path, key)
			}
		}
	}
	return s
}

// TestSchemaVocabularies: the published schema's closed claims (every
// enum, const and pattern in it) are exactly the vocabularies
// ParseReport enforces, and ParseReport accepts every value the schema
// lists (measure's TestVocabulariesRefused drives the refusals).
func TestSchemaVocabularies(t *testing.T) {
	b, err := os.ReadFile(docsPath("runtime-report.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	inSchema := map[string]measure.Vocabulary{}
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if _, ok := s["const"]; ok {
			t.Errorf("%s: const in the schema (a vocabulary is an enum)", path)
		}
		if e, ok := s["enum"].([]any); ok {
			v := measure.Vocabulary{Path: path}
			for _, x := range e {
				v.Values = append(v.Values, x.(string))
			}
			inSchema[path] = v
		}
		if p, ok := s["pattern"].(string); ok {
			inSchema[path] = measure.Vocabulary{Path: path, Pattern: p}
		}
		props, _ := s["properties"].(map[string]any)
		for name, sub := range props {
			p := name
			if path != "" {
				p = path + "." + name
			}
			walk(p, sub.(map[string]any))
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			walk(path+"{}", ap)
		}
	}
	walk("", doc)
	want := map[string]measure.Vocabulary{}
	for _, v := range measure.Vocabularies() {
		want[v.Path] = v
	}
	if !reflect.DeepEqual(inSchema, want) {
		for p, v := range want {
			if !reflect.DeepEqual(inSchema[p], v) {
				t.Errorf("%s: schema has %+v, ParseReport enforces %+v", p, inSchema[p], v)
			}
		}
		for p := range inSchema {
			if _, ok := want[p]; !ok {
				t.Errorf("%s: closed in the schema, open in ParseReport", p)
			}
		}
	}
}

// TestSchemaUpToDate keeps the published schema equal to the types.
func TestSchemaUpToDate(t *testing.T) {
	path := docsPath("runtime-report.schema.json")
	gen := generatedSchema(t)
	if *update {
		if err := os.WriteFile(path, gen, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(have, gen) {
		t.Fatalf("docs/runtime-report.schema.json is stale (%v): run go test ./measure -run TestSchema -update", err)
	}
}

// TestReportsMatchSchema validates real reports: a fixture host, an empty
// tree and this machine.
func TestReportsMatchSchema(t *testing.T) {
	schema := generatedSchema(t)
	h := healthy(t)
	dir := h.WriteDir(t)
	for name, src := range map[string]hostfs.Source{"fixture": h.Source(dir), "empty": hostfs.New(t.TempDir()), "live": hostfs.New("/")} {
		r, err := measure.New(measure.Options{Engine: engine(t, ""), Config: sshdConfig()}).Measure(context.Background(), src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if err := schemagen.Validate(schema, b); err != nil {
			t.Errorf("%s report does not match the schema: %v", name, err)
		}
	}
}

// TestDocsNameEveryClaim: docs/runtime-report.md mentions every claim.
func TestDocsNameEveryClaim(t *testing.T) {
	md, err := os.ReadFile(docsPath("runtime-report.md"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(prefix string, s map[string]any)
	walk = func(prefix string, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for name, sub := range props {
			if !bytes.Contains(md, []byte("`"+name+"`")) && !bytes.Contains(md, []byte("`"+name+"[]`")) {
				missing = append(missing, prefix+name)
			}
			m, _ := sub.(map[string]any)
			if items, ok := m["items"].(map[string]any); ok {
				m = items
			}
			if ap, ok := m["additionalProperties"].(map[string]any); ok {
				m = ap
			}
			walk(prefix+name+".", m)
		}
	}
	var s map[string]any
	json.Unmarshal(generatedSchema(t), &s)
	walk("", s)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/runtime-report.md does not mention: %s", strings.Join(missing, ", "))
	}
}
