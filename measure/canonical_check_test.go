package measure_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/reason"
)

// reencodeCheck is the check ParseReport replaces: a strict
// encoding/json decode, then the canonical re-encoding compared with the
// input.
func reencodeCheck(b []byte) (*measure.Report, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r measure.Report
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	c, err := r.Canonical()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c, b) {
		return nil, errors.New("not canonical")
	}
	return &r, nil
}

// jcsCanonical is the oracle for IsCanonical: JSON (by encoding/json)
// that the jcs package writes back unchanged.
func jcsCanonical(b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	c, err := jcs.Transform(b)
	return err == nil && bytes.Equal(c, b)
}

// appraiseHost is appraise's benchmark host: the base host with Secure
// Boot on (a 40-hash dbx), two signed modules, a real firmware event log
// and a 210-entry IMA list.
func appraiseHost(tb testing.TB) *testhost.Host {
	tb.Helper()
	h := testhost.Base()
	if err := h.SetSecureBoot(true, []*x509.Certificate{pki.Root.Cert}, 40); err != nil {
		tb.Fatal(err)
	}
	for _, n := range []string{"nf_tables", "vboxguest"} {
		h.Modules = append(h.Modules, testhost.Module{Name: n, Size: 4096, File: signedModule(tb, n)})
	}
	log, err := os.ReadFile(artifacts.SharedData(tb, "eventlogs/sb_cert_eventlog"))
	if err != nil {
		tb.Fatal(err)
	}
	h.EventLog = log
	h.Files[testhost.IMAListPath] = imatest.List(210)
	return h
}

// realReports are canonical reports of fixture hosts.
func realReports(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for name, r := range map[string]*measure.Report{
		"healthy":  measureHost(tb, healthy(tb), measure.Options{Engine: engine(tb, ""), Config: sshdConfig()}),
		"appraise": measureHost(tb, appraiseHost(tb), measure.Options{Engine: engine(tb, "")}),
		"empty":    measureHost(tb, &testhost.Host{Files: map[string][]byte{}}, measure.Options{}),
	} {
		b, err := r.Canonical()
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = b
	}
	return out
}

func TestParseReportRealReports(t *testing.T) {
	for name, b := range realReports(t) {
		t.Run(name, func(t *testing.T) {
			if err := measure.IsCanonical(b); err != nil {
				t.Fatal(err)
			}
			if !jcsCanonical(b) {
				t.Fatal("the jcs oracle disagrees")
			}
			got, err := measure.ParseReport(b)
			if err != nil {
				t.Fatal(err)
			}
			want, err := reencodeCheck(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ParseReport gives\n%+v\nencoding/json\n%+v", got, want)
			}
		})
	}
}

// TestNonCanonicalReports: every other spelling of a real report is
// rejected, by ParseReport as by the re-encoding check it replaces.
func TestNonCanonicalReports(t *testing.T) {
	b := realReports(t)["healthy"]
	s := string(b)
	must := func(old string) {
		if !strings.Contains(s, old) {
			t.Fatalf("fixture report lacks %s", old)
		}
	}
	repl := func(old, new string) string { must(old); return strings.Replace(s, old, new, 1) }
	const policy = `{"code_policy":"`
	must(policy)
	emptyPolicy := policy + s[len(policy)+strings.IndexByte(s[len(policy):], '"'):]
	for _, c := range []struct {
		name, doc string
		// syntax: IsCanonical itself rejects it (else only the schema).
		syntax bool
	}{
		{"members swapped", `{"version":"vigil.report.v1",` + repl(`,"version":"vigil.report.v1"`, ``)[1:], true},
		{"duplicate member", repl(`"version":"vigil.report.v1"`, `"version":"vigil.report.v1","version":"vigil.report.v1"`), true},
		{"duplicate map key", repl(`"inputs":{`, `"inputs":{"/":"x","/":"x",`), true},
		{"space after colon", repl(`"version":`, `"version": `), true},
		{"space after comma", repl(`,"version"`, `, "version"`), true},
		{"leading space", " " + s, true},
		{"trailing newline", s + "\n", true},
		{"escaped slash", repl(`"/proc/`, `"\/proc/`), true},
		{"upper-case \\u00XX", repl(`"hostname":"web-01"`, `"hostname":"web\u001F01"`), true},
		{"\\u escape of a printable", repl(`"hostname":"web-01"`, `"hostname":"web\u002d01"`), true},
		{"\\u escape of a newline", repl(`"hostname":"web-01"`, `"hostname":"web\u000a01"`), true},
		{"escaped non-ASCII", repl(`"hostname":"web-01"`, `"hostname":"web\u00e901"`), true},
		{"surrogate pair escape", repl(`"hostname":"web-01"`, `"hostname":"web\ud83d\ude0001"`), true},
		{"raw control character", repl(`"hostname":"web-01"`, "\"hostname\":\"web\x0101\""), true},
		{"invalid UTF-8", repl(`"hostname":"web-01"`, "\"hostname\":\"web\xff01\""), true},
		{"1.0", repl(`"uptime_s":86400`, `"uptime_s":86400.0`), true},
		{"exponent", repl(`"uptime_s":86400`, `"uptime_s":8.64e4`), true},
		{"-0", repl(`"uptime_s":86400`, `"uptime_s":-0`), true},
		{"leading zero", repl(`"uptime_s":86400`, `"uptime_s":086400`), true},
		{"two values", s + s, true},
		{"member name case", `{"Version":"vigil.report.v1",` + repl(`,"version":"vigil.report.v1"`, ``)[1:], false},
		{"required member missing", repl(`"uptime_s":86400,`, ``), false},
		{"empty omitempty member", emptyPolicy, false},
		{"null for a string", repl(`"hostname":"web-01"`, `"hostname":null`), false},
		{"null for a struct", repl(`"pcr10":{"sha1":"","sha256":""}`, `"pcr10":null`), false},
		{"unknown member", repl(`"hostname":"web-01"`, `"hostname":"web-01","hostname2":"x"`), false},
		{"string for an integer", repl(`"uptime_s":86400`, `"uptime_s":"86400"`), false},
		{"negative unsigned", repl(`"value":0}`, `"value":-1}`), false},
		{"integer beyond 2^53", repl(`"uptime_s":86400`, `"uptime_s":9007199254740992`), false},
		{"not an object", `[` + s + `]`, false},
		{"null", `null`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := []byte(c.doc)
			if bytes.Equal(doc, b) {
				t.Fatal("the variant is the report")
			}
			if err := measure.IsCanonical(doc); (err != nil) != c.syntax {
				t.Errorf("IsCanonical: %v, want an error: %v", err, c.syntax)
			}
			if c.syntax == jcsCanonical(doc) {
				t.Errorf("jcs oracle: canonical %v", !c.syntax)
			}
			if r, err := measure.ParseReport(doc); err == nil {
				t.Errorf("ParseReport accepted it: %+v", r)
			}
			if _, err := reencodeCheck(doc); err == nil {
				t.Errorf("the re-encoding check accepts it")
			}
		})
	}
}

// TestIsCanonicalCases: generic documents, checked against the jcs
// oracle too.
func TestIsCanonicalCases(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range []struct {
		doc string
		ok  bool
	}{
		{`{}`, true}, {`[]`, true}, {`0`, true}, {`-1`, true}, {`true`, true}, {`null`, true}, {`""`, true},
		{`1.5`, true}, {`1e+21`, true}, {`1e-7`, true}, {`0.000001`, true}, {`123456789012345680000`, true},
		{`9007199254740992`, true}, {`9007199254740993`, false}, {`1E+21`, false}, {`1e21`, false},
		{`1e+021`, false}, {`0.1e1`, false}, {`1.50`, false}, {`-0`, false}, {`-0.0`, false}, {`1e400`, false},
		{`100000000000000000000`, true}, {`1000000000000000000000`, false},
		{`{"a":1,"b":2}`, true}, {`{"b":2,"a":1}`, false}, {`{"a":1,"a":1}`, false},
		{`{"\ud800":1}`, false}, {"{\"\uffff\":1,\"\U0001F600\":2}", false}, {"{\"\U0001F600\":2,\"\uffff\":1}", true},
		{`{"\n":1,"A":2}`, true}, {`{"A":2,"\n":1}`, false}, {`{"\"":1,"#":2}`, true},
		{`"\u001f\u0000\b\t\n\f\r\"\\"`, true}, {`"\u0008"`, false}, {`"\u001F"`, false}, {`"\/"`, false},
		{"\"\x7f\"", true}, {"\"\u2028\"", true}, {"\"\xed\xa0\x80\"", false}, {"\"\xc0\xaf\"", false},
		{`[1,2]`, true}, {`[1,]`, false}, {`[1 ]`, false}, {`{"a":}`, false}, {`tru`, false}, {`nul`, false},
		{``, false}, {` `, false}, {`"a`, false}, {`{"a"`, false}, {`[`, false}, {`1 `, false},
		{deep(10000), true}, {deep(10001), false},
	} {
		err := measure.IsCanonical([]byte(c.doc))
		if (err == nil) != c.ok {
			t.Errorf("%.60q: IsCanonical %v, want canonical %v", c.doc, err, c.ok)
		}
		if jcsCanonical([]byte(c.doc)) != c.ok {
			t.Errorf("%.60q: jcs oracle disagrees with the table", c.doc)
		}
	}
}

func FuzzIsCanonical(f *testing.F) {
	for _, b := range realReports(f) {
		f.Add(b)
	}
	for _, s := range []string{`{"a":[1,-2.5,1e+21,true,false,null,"\u001f\n"],"b":{}}`, `{"\n":1,"A":2,"\ufb01":3,"😀":4}`,
		`[0.000001,1e-7,123456789012345680000,-9007199254740991]`, `"\ud83d\ude00"`, `{"a":1,"a":2}`, ` {} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := measure.IsCanonical(b)
		if want := jcsCanonical(b); (err == nil) != want {
			t.Fatalf("%q: IsCanonical %v, jcs canonical %v", b, err, want)
		}
	})
}

// reportSchema compiles the published schema once.
func reportSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	b, err := os.ReadFile(docsPath("runtime-report.schema.json"))
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("schema.json", doc); err != nil {
		tb.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// schemaValid reports whether b is JSON the published schema accepts.
func schemaValid(s *jsonschema.Schema, b []byte) bool {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	return err == nil && s.Validate(v) == nil
}

// FuzzParseReport: ParseReport accepts exactly what the strict decode and
// re-encoding check accepts and the published schema validates, and
// decodes it to the same report; a refusal of canonical JSON is a
// *ParseError. Seeds: the fixture hosts' reports, this machine's, and
// near misses of them in the closed claims.
func FuzzParseReport(f *testing.F) {
	schema := reportSchema(f)
	seeds := realReports(f)
	if r, err := measure.New(measure.Options{}).Measure(context.Background(), hostfs.New("/")); err == nil {
		if b, err := r.Canonical(); err == nil {
			seeds["live"] = b
		}
	}
	// Small reports too, so that most executions are fast.
	small := measure.NewReport()
	small.Modules.Loaded = []measure.LoadedModule{{Name: "ext4", Taint: "OE", Signature: measure.SignatureUnknown, Reasons: []reason.Code{reason.NotFound}}}
	small.Enforcement.Lockdown = measure.LockdownIntegrity
	small.Enforcement.SELinux, small.Enforcement.AppArmor = "disabled", "enabled"
	for name, r := range map[string]*measure.Report{"new": measure.NewReport(), "small": small} {
		b, err := r.Canonical()
		if err != nil {
			f.Fatal(err)
		}
		seeds[name] = b
	}
	for _, b := range seeds {
		f.Add(b)
		for _, m := range [][2]string{{`"status":"ok"`, `"status":"OK"`}, {`"lockdown":"`, `"lockdown":"x`},
			{`"signature":"signed"`, `"signature":"unsigned "`}, {`"loaded":[`, `"loaded":null,"x":[`},
			{`"taint":"`, `"taint":"Z`}, {`"reasons":[]`, `"reasons":["unsigned"]`}, {`"reasons":[]`, `"reasons":["nope"]`},
			{`"ima":{`, `"ima":null,"imb":{`}} {
			if bytes.Contains(b, []byte(m[0])) {
				f.Add(bytes.Replace(b, []byte(m[0]), []byte(m[1]), 1))
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := measure.ParseReport(b)
		want, werr := reencodeCheck(b)
		valid := werr == nil && schemaValid(schema, b)
		if (err == nil) != valid {
			t.Fatalf("%.2000q: ParseReport %v, re-encoding check %v, schema valid %v", b, err, werr, valid)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%.2000q: ParseReport gives %+v, encoding/json %+v", b, got, want)
		}
		var pe *measure.ParseError
		if err != nil && measure.IsCanonical(b) == nil && !errors.As(err, &pe) {
			t.Fatalf("%.2000q: canonical JSON refused without a ParseError: %v", b, err)
		}
	})
}

// BenchmarkCheckReport compares ParseReport with the strict decode and
// re-encoding it replaces, on appraise's benchmark report and the
// reference host's (200 modules, 300 processes, a 10,000-entry IMA list).
func BenchmarkCheckReport(b *testing.B) {
	reports := realReports(b)
	dir, h := benchHost(b)
	r, err := measure.New(measure.Options{Config: sshdConfig()}).Measure(context.Background(), h.Source(dir))
	if err != nil {
		b.Fatal(err)
	}
	if reports["reference"], err = r.Canonical(); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"appraise", "reference"} {
		doc := reports[name]
		for _, c := range []struct {
			name  string
			check func([]byte) (*measure.Report, error)
		}{{"reencode", reencodeCheck}, {"parse", measure.ParseReport}, {"iscanonical", func(b []byte) (*measure.Report, error) {
			return nil, measure.IsCanonical(b)
		}}} {
			b.Run(name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(doc)))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := c.check(doc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
