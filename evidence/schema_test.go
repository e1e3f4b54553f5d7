package evidence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/schemagen"
)

var updateSchema = flag.Bool("update", false, "rewrite docs/evidence.schema.json from the Go types")

func docsFile(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "docs", name)
}

func evidenceSchema(t *testing.T) []byte {
	b, err := schemagen.Document(reflect.TypeOf(evidence.Evidence{}),
		"https://vigil-attest.github.io/schemas/evidence.v1.json",
		"Vigil evidence ("+evidence.Version+")",
		"Generated from the Go types by `go test ./evidence -run TestEvidenceSchema -update`; see docs/evidence.md.",
		func(props map[string]any) {
			props["version"] = map[string]any{"const": evidence.Version}
			props["enclave"] = map[string]any{"enum": []any{"tpm", "software"}}
		})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEvidenceSchema keeps docs/evidence.schema.json equal to the types and
// validates real (software) evidence against it.
func TestEvidenceSchema(t *testing.T) {
	gen := evidenceSchema(t)
	path := docsFile("evidence.schema.json")
	if *updateSchema {
		if err := os.WriteFile(path, gen, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if have, err := os.ReadFile(path); err != nil || !bytes.Equal(have, gen) {
		t.Fatalf("docs/evidence.schema.json is stale (%v): go test ./evidence -run TestEvidenceSchema -update", err)
	}
	e, _ := soft.New()
	ev, err := evidence.Build(context.Background(), e, evidence.BuildOptions{Nonce: []byte("0123456789abcdef"), Report: []byte(`{"version":"vigil.report.v1"}`),
		EventLog: []byte{1, 2}, IMALog: []byte{3}, IMAOffset: 7})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	if err := schemagen.Validate(gen, b); err != nil {
		t.Errorf("evidence does not match its schema: %v", err)
	}
}

// TestDocsNameEveryReason: docs/evidence.md lists every reason code.
func TestDocsNameEveryReason(t *testing.T) {
	md, err := os.ReadFile(docsFile("evidence.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range evidence.AllReasons() {
		if !bytes.Contains(md, []byte("`"+string(r)+"`")) {
			t.Errorf("docs/evidence.md does not list reason %s", r)
		}
	}
}
