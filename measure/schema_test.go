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
			props["version"] = map[string]any{"const": measure.Version}
			for _, sec := range []string{"kernel", "modules", "taint", "enforcement", "debug", "secure_boot", "measured_boot", "ima", "processes"} {
				p := props[sec].(map[string]any)["properties"].(map[string]any)
				p["status"] = map[string]any{"enum": []any{"ok", "unavailable", "error"}}
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return b
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
