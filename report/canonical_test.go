package report

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gowebpki/jcs"
)

// canonicalByJCS is the reference: encoding/json, then RFC 8785 by an
// implementation no one here wrote.
func canonicalByJCS(t testing.TB, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return jcs.Transform(b)
}

func TestCanonicalMatchesJCS(t *testing.T) {
	tru := true
	n := int64(-42)
	r := &Report{
		Version: Version,
		Kernel:  Kernel{Section: Section{Status: StatusOK}, Cmdline: "quote\" back\\slash \x01 tab\t nl\n <html>&amp; é 日本 \u2028 😀 \xff", UptimeS: 1 << 40},
		Modules: Modules{Loaded: []LoadedModule{{Name: "a"}}, Hidden: []HiddenModule{}, Views: []string{"x"}},
		Enforcement: Enforcement{KptrRestrict: &n, IPE: &IPE{Enforce: true}, AppArmorProfiles: map[string]int64{
			"enforce": 1, "complain": 2, "é": 3, "😀": 4, "\uff61": 5, "Z": 6, "": 7}},
		SecureBoot: SecureBoot{AuditMode: &tru},
		Inputs:     map[string]string{"/b": "2", "/a": "1", "/a/b": "3"},
	}
	got, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if want, err := canonicalByJCS(t, r); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("canonical form differs from JCS (%v):\n%s\n%s", err, got, want)
	}
}

func FuzzCanonicalString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\x1f\x7f", "é\u2028\u2029😀", "\xff\xfe", "<>&"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, s, k string) {
		r := &Report{Version: s, Inputs: map[string]string{k: s, s: k}}
		got, err := r.Canonical()
		want, werr := canonicalByJCS(t, r)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: error %v, JCS error %v", s, err, werr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("%q: %s\nwant %s", s, got, want)
		}
	})
}
