package api

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/evidence"
)

// constants returns the string constants of api.go whose names start
// with prefix.
func constants(t *testing.T, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					out[n.Name] = v
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s constants in api.go", prefix)
	}
	return out
}

type schema struct {
	Ref        string             `json:"$ref"`
	Type       any                `json:"type"`
	Required   []string           `json:"required"`
	Properties map[string]*schema `json:"properties"`
	Items      *schema            `json:"items"`
	AllOf      []*schema          `json:"allOf"`
	Enum       []string           `json:"enum"`
}

type document struct {
	OpenAPI    string                                `json:"openapi"`
	Info       struct{ Title, Version string }       `json:"info"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

func load(t *testing.T) *document {
	t.Helper()
	var d document
	dec := json.NewDecoder(strings.NewReader(string(OpenAPI)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("openapi.json has trailing data")
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") || d.Info.Title == "" || d.Info.Version == "" {
		t.Fatalf("not an OpenAPI 3.x document: openapi %q, info %+v", d.OpenAPI, d.Info)
	}
	return &d
}

func TestOpenAPIPaths(t *testing.T) {
	d := load(t)
	want := map[string]bool{}
	for name, p := range constants(t, "Path") {
		want[p] = true
		if _, ok := d.Paths[p]; !ok {
			t.Errorf("%s (%s) is not in openapi.json", name, p)
		}
	}
	for p, ops := range d.Paths {
		if !want[p] {
			t.Errorf("openapi.json path %s has no Path constant", p)
		}
		for m := range ops {
			if !slices.Contains([]string{"get", "post", "put", "delete", "patch"}, m) {
				t.Errorf("%s: unexpected operation %q", p, m)
			}
		}
	}
}

func TestOpenAPIProblemCodes(t *testing.T) {
	d := load(t)
	p := d.Components.Schemas["Problem"]
	if p == nil || p.Properties["code"] == nil {
		t.Fatal("no Problem schema with a code")
	}
	enum := p.Properties["code"].Enum
	codes := constants(t, "Code")
	for name, c := range codes {
		if !slices.Contains(enum, c) {
			t.Errorf("%s (%s) is not in Problem.code's enum", name, c)
		}
	}
	if len(enum) != len(codes) {
		t.Errorf("Problem.code lists %d codes, api.go %d", len(enum), len(codes))
	}
	// Every problem response names known codes under their status (the
	// status in the code's comment in api.go).
	status := codeStatuses(t)
	n := 0
	for path, ops := range d.Paths {
		for method, raw := range ops {
			var op struct {
				Responses map[string]struct {
					Description string
					Content     map[string]json.RawMessage
				}
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			for st, r := range op.Responses {
				list, ok := strings.CutPrefix(r.Description, "problem: ")
				if !ok {
					continue
				}
				if _, ok := r.Content["application/problem+json"]; !ok {
					t.Errorf("%s %s %s: problem response without application/problem+json", method, path, st)
				}
				for _, c := range strings.Split(list, ", ") {
					n++
					if want, ok := status[c]; !ok || strconv.Itoa(want) != st {
						t.Errorf("%s %s: code %q under %s; api.go gives %d", method, path, c, st, want)
					}
				}
			}
		}
	}
	if n < len(codes) {
		t.Errorf("only %d problem responses documented", n)
	}
}

// codeStatuses reads each problem code's HTTP status from its comment in
// api.go ("// 400: ...").
func codeStatuses(t *testing.T) map[string]int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Code") || vs.Comment == nil {
				continue
			}
			lit := vs.Values[0].(*ast.BasicLit)
			v, _ := strconv.Unquote(lit.Value)
			txt := strings.TrimSpace(vs.Comment.Text())
			st, err := strconv.Atoi(txt[:3])
			if err != nil {
				t.Fatalf("%s: comment %q does not start with a status", vs.Names[0].Name, txt)
			}
			out[v] = st
		}
	}
	return out
}

// TestOpenAPIBodies: each schema has exactly the JSON fields of its Go
// type, and requires the ones without omitempty.
func TestOpenAPIBodies(t *testing.T) {
	d := load(t)
	types := map[string]any{
		"EnrollRequest": EnrollRequest{}, "EnrollResponse": EnrollResponse{}, "ActivateRequest": ActivateRequest{},
		"Challenge": Challenge{}, "AttestResponse": AttestResponse{}, "Agent": Agent{}, "AgentList": AgentList{},
		"Result": Result{}, "AdminRequest": AdminRequest{}, "Event": Event{}, "Problem": Problem{},
		"Failure": appraise.Failure{}, "ChallengeRequest": ChallengeRequest{}, "KeyProof": evidence.KeyProof{},
		"RelyingPartyRequest": RelyingPartyRequest{}, "RelyingParty": RelyingParty{}, "RelyingPartyList": RelyingPartyList{},
		"VerifyRequest": VerifyRequest{}, "VerifyResponse": VerifyResponse{},
	}
	for name, v := range types {
		s := d.Components.Schemas[name]
		if s == nil {
			t.Errorf("no schema %s", name)
			continue
		}
		fields, required := jsonFields(reflect.TypeOf(v))
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if !slices.Equal(props, fields) {
			t.Errorf("%s: schema properties %v, Go fields %v", name, props, fields)
		}
		req := slices.Clone(s.Required)
		sort.Strings(req)
		if !slices.Equal(req, required) {
			t.Errorf("%s: schema requires %v, Go fields without omitempty %v", name, req, required)
		}
	}
	// AgentDetail is Agent plus results.
	ad := d.Components.Schemas["AgentDetail"]
	if ad == nil || len(ad.AllOf) != 2 || ad.AllOf[0].Ref != "#/components/schemas/Agent" || ad.AllOf[1].Properties["results"] == nil {
		t.Errorf("AgentDetail is not allOf Agent and results")
	}
	// Every $ref resolves.
	for _, ref := range refs(OpenAPI) {
		if _, ok := d.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]; !ok || !strings.HasPrefix(ref, "#/components/schemas/") {
			t.Errorf("unresolved $ref %s", ref)
		}
	}
}

func jsonFields(t reflect.Type) (fields, required []string) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			a, b := jsonFields(f.Type)
			fields, required = append(fields, a...), append(required, b...)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields = append(fields, name)
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	sort.Strings(fields)
	sort.Strings(required)
	return fields, required
}

func refs(doc []byte) []string {
	var v any
	json.Unmarshal(doc, &v)
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, y := range x {
				if s, ok := y.(string); ok && k == "$ref" {
					out = append(out, s)
				}
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return out
}
