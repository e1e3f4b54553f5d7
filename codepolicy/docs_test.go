package codepolicy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/vigil-attest/vigil/internal/testpki"
)

func docsPath(t *testing.T, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "docs", name)
}

// yamlBlocks returns the ```yaml fenced blocks of a Markdown file.
func yamlBlocks(t *testing.T, md []byte) []string {
	re := regexp.MustCompile("(?ms)^```yaml\\n(.*?)^```")
	var out []string
	for _, m := range re.FindAllSubmatch(md, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

func loadSchema(t *testing.T) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(docsPath(t, "policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("policy.schema.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("policy.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("policy.schema.json")
	if err != nil {
		t.Fatalf("compiling policy.schema.json: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return s, m
}

// yamlToJSONValue decodes YAML the way a schema-aware editor sees it.
func yamlToJSONValue(t *testing.T, y string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDocsExamples loads every YAML example of docs/policy.md, with
// generated certificates at the trust paths they name, and validates it
// against docs/policy.schema.json.
func TestDocsExamples(t *testing.T) {
	md, err := os.ReadFile(docsPath(t, "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(t, md)
	if len(blocks) < 3 {
		t.Fatalf("found %d yaml examples in docs/policy.md, want the kernel module, UEFI and Windows driver ones", len(blocks))
	}
	schema, _ := loadSchema(t)
	root := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	for i, b := range blocks {
		var head struct {
			Trust []string `yaml:"trust"`
		}
		if err := yaml.Unmarshal([]byte(b), &head); err != nil {
			t.Errorf("example %d: %v", i, err)
			continue
		}
		dir := t.TempDir()
		for _, tp := range head.Trust {
			p := filepath.Join(dir, tp)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			data := root.CertPEM()
			if strings.HasSuffix(tp, ".crt") || strings.HasSuffix(tp, ".cer") || strings.HasSuffix(tp, ".x509") {
				data = root.Cert.Raw // the DER files Microsoft and the kernel build ship
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Parse([]byte(b), dir); err != nil {
			t.Errorf("example %d does not load: %v\n%s", i, err, b)
		}
		if err := schema.Validate(yamlToJSONValue(t, b)); err != nil {
			t.Errorf("example %d does not match the schema: %v", i, err)
		}
	}
}

// TestSchemaMatchesStructs keeps docs/policy.schema.json and the Go structs
// in step: the same keys at every level, no other keys allowed.
func TestSchemaMatchesStructs(t *testing.T) {
	_, s := loadSchema(t)
	defs := s["$defs"].(map[string]any)
	for _, c := range []struct {
		where  string
		schema map[string]any
		typ    reflect.Type
	}{
		{"top level", s, reflect.TypeOf(Policy{})},
		{"deny", defs["deny"].(map[string]any), reflect.TypeOf(Deny{})},
		{"revocations[]", defs["revocation"].(map[string]any), reflect.TypeOf(Revocation{})},
		{"allow_signers[]", defs["signer"].(map[string]any), reflect.TypeOf(Signer{})},
	} {
		var inSchema []string
		for k := range c.schema["properties"].(map[string]any) {
			inSchema = append(inSchema, k)
		}
		sort.Strings(inSchema)
		_, inGo := yamlFields(c.typ)
		sort.Strings(inGo)
		if strings.Join(inSchema, " ") != strings.Join(inGo, " ") {
			t.Errorf("%s: schema keys %v, Go keys %v", c.where, inSchema, inGo)
		}
		if c.schema["additionalProperties"] != false {
			t.Errorf("%s: schema allows unknown keys", c.where)
		}
	}

	// The EKU names and revocation reasons the schema lists are the ones
	// the parser accepts.
	items := s["properties"].(map[string]any)["require_eku"].(map[string]any)["items"].(map[string]any)
	var enum []string
	for _, v := range items["anyOf"].([]any)[0].(map[string]any)["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	want := []string{"any"}
	for _, e := range ekuNames {
		want = append(want, e.name)
	}
	sort.Strings(enum)
	sort.Strings(want)
	if strings.Join(enum, " ") != strings.Join(want, " ") {
		t.Errorf("schema EKU names %v, parser %v", enum, want)
	}
	var reasons []string
	for _, v := range defs["revocation"].(map[string]any)["properties"].(map[string]any)["reason"].(map[string]any)["enum"].([]any) {
		reasons = append(reasons, v.(string))
	}
	if strings.Join(reasons, ", ") != reasonNames() {
		t.Errorf("schema reasons %v, parser %s", reasons, reasonNames())
	}
	// And the docs list every EKU name.
	md, err := os.ReadFile(docsPath(t, "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ekuNames {
		if !bytes.Contains(md, []byte("`"+e.name+"`")) {
			t.Errorf("docs/policy.md does not list EKU name %s", e.name)
		}
	}
}

// TestSchemaRejects checks that the schema catches what the parser rejects.
func TestSchemaRejects(t *testing.T) {
	schema, _ := loadSchema(t)
	for _, y := range []string{
		"require_ekus: [codeSigning]",
		"deny: {sah256: []}",
		"deny: {sha256: [abc]}",
		"min_hash: md5",
		"ignore_expiry: yes-please",
		"revocations: [{issuer: CN=A}]",
		"revocations: [{issuer: CN=A, serial: '01', tbs_sha256: " + strings.Repeat("a", 64) + "}]",
		"revocations: [{tbs_sha256: " + strings.Repeat("a", 64) + ", reason: stolen}]",
		"allow_signers: [{comment: nothing}]",
		"require_eku: [kernelCodeSigning]",
	} {
		if err := schema.Validate(yamlToJSONValue(t, y)); err == nil {
			t.Errorf("schema accepts %q", y)
		}
		if _, err := Parse([]byte(y), ""); err == nil {
			t.Errorf("parser accepts %q", y)
		}
	}
}
