package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/vigil-attest/vigil/reason"
)

// fullReport is a valid report with one item in every list and map that
// holds a closed claim, so that every vocabulary has a place to be set.
func fullReport() *Report {
	r := NewReport()
	for _, s := range r.Sections() {
		s.Status = StatusOK
	}
	r.Modules.Loaded = []LoadedModule{{Name: "ext4", Size: 1, Signature: SignatureSigned, Signed: true, Judged: true, Allowed: true, Reasons: []reason.Code{reason.Unsigned}}}
	r.Modules.Hidden = []HiddenModule{{Name: "rk", SeenIn: []string{ViewKallsyms}, MissingFrom: []string{ViewProcModules}}}
	r.Modules.Views = []string{ViewProcModules}
	r.Taint.Flags = []string{"E"}
	r.Taint.Unexplained = []string{"E"}
	r.Enforcement.Lockdown = LockdownIntegrity
	r.Enforcement.SELinux = "disabled"
	r.Enforcement.AppArmor = "disabled"
	r.Debug.RelaxedSigning = []string{"efi=debug"}
	r.SecureBoot.BootFiles = []BootFile{{Path: "/boot/vmlinuz", Reasons: []reason.Code{reason.Unsigned}}}
	r.MeasuredBoot.Separators = map[string]string{"0": "ok"}
	r.Processes.Critical = []CriticalState{{Name: "sshd", PIDs: []int{}, TracerPIDs: []int{}, Problems: []string{ProblemPtraced}}}
	r.Processes.Hidden = []HiddenProcess{{PID: 7, SeenIn: []string{ViewProbe}, MissingFrom: []string{ViewReaddir}}}
	hr := func() HostRevocation {
		return HostRevocation{Kind: "image_sha256", Value: strings.Repeat("ab", 32), Targets: []string{StoreDBX}, At: []string{StoreDBX}}
	}
	r.Revocations.Enforced = []HostRevocation{hr()}
	r.Revocations.Pending = []HostRevocation{hr()}
	r.Keyrings.Membership = MembershipKeyctl
	r.Keyrings.Missing = []string{KeyringMachine}
	r.Keyrings.Blacklist = []string{"tbs:" + strings.Repeat("ab", 32)}
	r.Keyrings.Trusted = []KeyringKey{{Keyring: KeyringBuiltin, Description: "k: 01", Algorithm: "X509.rsa"}}
	r.Keyrings.Revoked = []KeyringKey{{Keyring: KeyringBlacklist, Description: "k: 02", Algorithm: "X509.rsa"}}
	fillEmpty(reflect.ValueOf(r).Elem())
	return r
}

// setClaim sets the claim at a Vocabulary path in r (the first item of a
// list, the value of the first key of a map) to s, and returns the
// concrete path ParseError names.
func setClaim(t *testing.T, r *Report, path, s string) string {
	t.Helper()
	v := reflect.ValueOf(r).Elem()
	var concrete strings.Builder
	var set func(v reflect.Value, rest string)
	set = func(v reflect.Value, rest string) {
		switch {
		case rest == "":
			v.SetString(s)
		case strings.HasPrefix(rest, "[]"):
			if v.Len() == 0 {
				t.Fatalf("%s: empty list in the fixture", path)
			}
			concrete.WriteString("[0]")
			set(v.Index(0), rest[2:])
		case strings.HasPrefix(rest, "{}"):
			keys := v.MapKeys()
			if len(keys) == 0 {
				t.Fatalf("%s: empty map in the fixture", path)
			}
			fmt.Fprintf(&concrete, "[%q]", keys[0].String())
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(keys[0]))
			set(e, rest[2:])
			v.SetMapIndex(keys[0], e)
		default:
			rest = strings.TrimPrefix(rest, ".")
			end := strings.IndexAny(rest, ".[{")
			if end < 0 {
				end = len(rest)
			}
			f, ok := memberOf(v.Type(), rest[:end])
			if !ok {
				t.Fatalf("%s: no member %s in %s", path, rest[:end], v.Type())
			}
			if concrete.Len() > 0 {
				concrete.WriteByte('.')
			}
			concrete.WriteString(f.name)
			set(v.FieldByIndex(f.index), rest[end:])
		}
	}
	set(v, path)
	return concrete.String()
}

// TestVocabulariesRefused: for every closed claim, ParseReport accepts
// each value of its vocabulary and refuses near misses, naming the claim.
func TestVocabulariesRefused(t *testing.T) {
	if b, err := fullReport().Canonical(); err != nil {
		t.Fatal(err)
	} else if _, err := ParseReport(b); err != nil {
		t.Fatalf("the fixture report: %v", err)
	}
	for _, voc := range Vocabularies() {
		t.Run(voc.Path, func(t *testing.T) {
			good := voc.Values
			bad := []string{"x", "OK", " ", "\u00e9", strings.Repeat("a", 100)}
			switch voc.Pattern {
			case "":
			case blacklistHash.pattern:
				good = []string{"tbs:" + strings.Repeat("0a", 32), "bin:ab", "bin:" + strings.Repeat("9c", 64)}
				bad = append(bad, "tbs:", "tbs:a", "TBS:ab", "bin:AB", "raw:ab", "bin:"+strings.Repeat("a", 130))
			case hexDigest.pattern:
				good = []string{strings.Repeat("0a", 20), strings.Repeat("f1", 32), strings.Repeat("9c", 64)}
				bad = append(bad, "", strings.Repeat("a", 41), strings.Repeat("a", 38), strings.Repeat("a", 130), strings.Repeat("g", 64))
			default:
				good = []string{"", "E", "OE", "POE", moduleTaintLetters}
				bad = append(bad, "EO", "EE", "Z", "e", "E+", "E-", "(E)", "J")
			}
			for _, g := range good {
				if !slices.Contains(good, "") || g != "" {
					bad = append(bad, strings.ToUpper(g), g+" ", " "+g, g+"\x00", g+g)
				}
			}
			for _, g := range good {
				r := fullReport()
				setClaim(t, r, voc.Path, g)
				b, err := r.Canonical()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ParseReport(b); err != nil {
					t.Errorf("%q refused: %v", g, err)
				}
			}
			for _, x := range bad {
				if slices.Contains(voc.Values, x) || voc.Pattern != "" && regexp.MustCompile(voc.Pattern).MatchString(x) {
					continue
				}
				r := fullReport()
				where := setClaim(t, r, voc.Path, x)
				b, err := r.Canonical()
				if err != nil {
					t.Fatal(err)
				}
				_, err = ParseReport(b)
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Path != where {
					t.Errorf("%q: %v, want a ParseError at %s", x, err, where)
				}
			}
		})
	}
}

// TestModuleTaintPattern: the hand-written matcher is the schema's
// pattern, on every string of up to four characters over the letters,
// their neighbours and the state marks.
func TestModuleTaintPattern(t *testing.T) {
	re := regexp.MustCompile(moduleTaint.pattern)
	alphabet := moduleTaintLetters + "JSeZ+- "
	var walk func(prefix string)
	n := 0
	walk = func(prefix string) {
		n++
		if moduleTaint.accepts(prefix) != re.MatchString(prefix) {
			t.Fatalf("%q: matcher %v, pattern %v", prefix, moduleTaint.accepts(prefix), re.MatchString(prefix))
		}
		if len(prefix) == 4 {
			return
		}
		for _, c := range alphabet {
			walk(prefix + string(c))
		}
	}
	walk("")
	// Every subset in order, up to all nine.
	for mask := 0; mask < 1<<len(moduleTaintLetters); mask++ {
		var s strings.Builder
		for i := range moduleTaintLetters {
			if mask&(1<<i) != 0 {
				s.WriteByte(moduleTaintLetters[i])
			}
		}
		if !moduleTaint.accepts(s.String()) || !re.MatchString(s.String()) {
			t.Fatalf("%q refused", s.String())
		}
	}
	t.Logf("%d strings compared", n)
}

// mutateJSON decodes a canonical report generically, applies f and
// writes it back canonically, so that only the mutation is at fault.
func mutateJSON(t *testing.T, b []byte, f func(doc map[string]any)) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jcs.Transform(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := IsCanonical(out); err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(doc map[string]any, path ...string) map[string]any {
	for _, p := range path {
		doc = doc[p].(map[string]any)
	}
	return doc
}

// TestAbsentOrNullRefused: an absent or null section (or list, map,
// nested object) is malformed, named by its path; null stands only for
// the nullable claims.
func TestAbsentOrNullRefused(t *testing.T) {
	b, err := fullReport().Canonical()
	if err != nil {
		t.Fatal(err)
	}
	type mutation struct {
		name, path string
		f          func(doc map[string]any)
	}
	var cases []mutation
	for name := range fullReport().Sections() {
		cases = append(cases,
			mutation{name + " absent", name, func(doc map[string]any) { delete(doc, name) }},
			mutation{name + " null", name, func(doc map[string]any) { doc[name] = nil }},
			mutation{name + " status absent", name + ".status", func(doc map[string]any) { delete(obj(doc, name), "status") }},
			mutation{name + " status null", name + ".status", func(doc map[string]any) { obj(doc, name)["status"] = nil }},
			mutation{name + " status empty", name + ".status", func(doc map[string]any) { obj(doc, name)["status"] = "" }},
		)
	}
	cases = append(cases,
		mutation{"inputs null", "inputs", func(doc map[string]any) { doc["inputs"] = nil }},
		mutation{"inputs absent", "inputs", func(doc map[string]any) { delete(doc, "inputs") }},
		mutation{"loaded null", "modules.loaded", func(doc map[string]any) { obj(doc, "modules")["loaded"] = nil }},
		mutation{"reasons null", "modules.loaded[0].reasons", func(doc map[string]any) {
			obj(doc, "modules")["loaded"].([]any)[0].(map[string]any)["reasons"] = nil
		}},
		mutation{"taint flags null", "taint.flags", func(doc map[string]any) { obj(doc, "taint")["flags"] = nil }},
		mutation{"pcrs null", "measured_boot.pcrs", func(doc map[string]any) { obj(doc, "measured_boot")["pcrs"] = nil }},
		mutation{"pcr10 null", "ima.pcr10", func(doc map[string]any) { obj(doc, "ima")["pcr10"] = nil }},
		mutation{"apparmor_profiles null", "enforcement.apparmor_profiles", func(doc map[string]any) { obj(doc, "enforcement")["apparmor_profiles"] = nil }},
		mutation{"lockdown null", "enforcement.lockdown", func(doc map[string]any) { obj(doc, "enforcement")["lockdown"] = nil }},
		mutation{"lockdown absent", "enforcement.lockdown", func(doc map[string]any) { delete(obj(doc, "enforcement"), "lockdown") }},
		mutation{"version absent", "version", func(doc map[string]any) { delete(doc, "version") }},
		mutation{"version v2", "version", func(doc map[string]any) { doc["version"] = "vigil.report.v2" }},
		// Wrong types.
		mutation{"status a number", "ima.status", func(doc map[string]any) { obj(doc, "ima")["status"] = 1 }},
		mutation{"status a list", "ima.status", func(doc map[string]any) { obj(doc, "ima")["status"] = []any{"ok"} }},
		mutation{"section a list", "ima", func(doc map[string]any) { doc["ima"] = []any{} }},
		mutation{"section a string", "secure_boot", func(doc map[string]any) { doc["secure_boot"] = "ok" }},
		mutation{"loaded an object", "modules.loaded", func(doc map[string]any) { obj(doc, "modules")["loaded"] = map[string]any{} }},
		mutation{"signed a string", "modules.loaded[0].signed", func(doc map[string]any) {
			obj(doc, "modules")["loaded"].([]any)[0].(map[string]any)["signed"] = "true"
		}},
		mutation{"taint value a string", "taint.value", func(doc map[string]any) { obj(doc, "taint")["value"] = "0" }},
		mutation{"sig_enforce a number", "enforcement.sig_enforce", func(doc map[string]any) { obj(doc, "enforcement")["sig_enforce"] = 1 }},
		mutation{"separator a bool", `measured_boot.separators["0"]`, func(doc map[string]any) { obj(doc, "measured_boot", "separators")["0"] = true }},
		// Unknown members, at every level.
		mutation{"unknown section", "attested", func(doc map[string]any) { doc["attested"] = map[string]any{} }},
		mutation{"unknown claim", "secure_boot.enabled_really", func(doc map[string]any) { obj(doc, "secure_boot")["enabled_really"] = true }},
		mutation{"unknown item member", "modules.loaded[0].verified", func(doc map[string]any) {
			obj(doc, "modules")["loaded"].([]any)[0].(map[string]any)["verified"] = true
		}},
		mutation{"unknown member, odd name", `ima["a b"]`, func(doc map[string]any) { obj(doc, "ima")["a b"] = 1 }},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := mutateJSON(t, b, c.f)
			_, err := ParseReport(doc)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Path != c.path {
				t.Fatalf("%v, want a ParseError at %s", err, c.path)
			}
		})
	}
	// The nullable claims stay nullable.
	for _, c := range []struct{ section, claim string }{{"enforcement", "kptr_restrict"}, {"enforcement", "ipe"}, {"enforcement", "evm"}, {"debug", "sysrq"}} {
		doc := mutateJSON(t, b, func(doc map[string]any) { obj(doc, c.section)[c.claim] = nil })
		if _, err := ParseReport(doc); err != nil {
			t.Errorf("%s.%s null: %v", c.section, c.claim, err)
		}
	}
}

// TestNewReportParses: the empty report, and one whose collectors left
// lists nil, are valid once filled.
func TestNewReportParses(t *testing.T) {
	b, err := NewReport().Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseReport(b); err != nil {
		t.Fatal(err)
	}
	r := &Report{Version: Version}
	for _, s := range r.Sections() {
		s.Status = StatusError
	}
	r.Modules.Loaded = []LoadedModule{{Name: "x", Signature: SignatureUnknown}}
	r.SecureBoot.DB = &SignatureDB{}
	b, _ = r.Canonical()
	if _, err := ParseReport(b); err == nil {
		t.Fatal("nil lists accepted")
	}
	fillEmpty(reflect.ValueOf(r).Elem())
	b, _ = r.Canonical()
	if _, err := ParseReport(b); err != nil {
		t.Fatal(err)
	}
}
