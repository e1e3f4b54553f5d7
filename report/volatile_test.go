package report

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     string
		paths    []string
		volatile []bool
	}{
		{"equal", `{"kernel":{"release":"6.1","uptime_s":3}}`, `{"kernel":{"release":"6.1","uptime_s":3}}`, nil, nil},
		{"uptime only", `{"kernel":{"uptime_s":3}}`, `{"kernel":{"uptime_s":4}}`, []string{"kernel.uptime_s"}, []bool{true}},
		{"a real difference", `{"processes":{"count":49},"kernel":{"uptime_s":3}}`, `{"processes":{"count":52},"kernel":{"uptime_s":4}}`,
			[]string{"kernel.uptime_s", "processes.count"}, []bool{true, false}},
		{"keyrings from keyctl", `{"keyrings":{"membership":"keyctl","trusted":[{"keyring":".machine"}],"blacklist_count":115}}`,
			`{"keyrings":{"membership":"proc_keys","trusted":[],"blacklist_count":114}}`,
			[]string{"keyrings.blacklist_count", "keyrings.membership", "keyrings.trusted", "keyrings.trusted[0].keyring"}, []bool{false, true, true, true}},
		{"inputs by path", `{"inputs":{"/proc/uptime":"aa","/proc/modules":"bb"}}`, `{"inputs":{"/proc/uptime":"cc","/proc/modules":"dd"}}`,
			[]string{`inputs["/proc/modules"]`, `inputs["/proc/uptime"]`}, []bool{false, true}},
		{"absent on one side", `{"modules":{"loaded":[{"name":"a"}]}}`, `{"modules":{"loaded":[]}}`,
			[]string{"modules.loaded", "modules.loaded[0].name"}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := Compare([]byte(tc.a), []byte(tc.b))
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			var vol []bool
			for _, d := range ds {
				paths = append(paths, d.Path)
				vol = append(vol, d.Volatile != "")
			}
			if !slices.Equal(paths, tc.paths) || !slices.Equal(vol, tc.volatile) {
				t.Errorf("diffs %v volatile %v, want %v %v", paths, vol, tc.paths, tc.volatile)
			}
		})
	}
	if _, err := Compare([]byte(`{`), []byte(`{}`)); err == nil {
		t.Error("Compare accepted a truncated report")
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"a", "a", true}, {"a", "ab", false}, {"a*", "ab", true}, {"*b", "ab", true},
		{`inputs["/proc/*"]`, `inputs["/proc/1/stat"]`, true}, {`inputs["/proc/*"]`, `inputs["/sys/x"]`, false},
		{"a*a", "a", false}, {"a*b*c", "abc", true}, {"a*b*c", "acb", false},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// TestCompareGuestReports: two measurements of the real Secure Boot guest
// (internal/testvm's first boot: a measure, then, after two attestation
// rounds and a new executable, the capture's report) differ where the
// guest changed in between (its IMA list grew, processes ran), and
// otherwise only in volatile fields.
func TestCompareGuestReports(t *testing.T) {
	a, err := os.ReadFile("testdata/guest-report.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/guest-report-2.json")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) == 0 {
		t.Fatal("two measurements a minute apart are identical: uptime should differ")
	}
	changed := func(p string) bool {
		return strings.HasPrefix(p, "ima.") || strings.HasPrefix(p, "processes.") ||
			p == `inputs["/sys/kernel/security/ima/binary_runtime_measurements"]` || p == `inputs["/proc/sys/kernel/ns_last_pid"]`
	}
	for _, d := range ds {
		switch {
		case d.Path == "kernel.uptime_s" && d.Volatile == "":
			t.Errorf("kernel.uptime_s not volatile")
		case d.Volatile == "" && !changed(d.Path):
			t.Errorf("%s differs: %s vs %s", d.Path, d.A, d.B)
		}
	}
	if ds, _ := Compare(a, a); len(ds) != 0 {
		t.Errorf("a report differs from itself: %v", ds)
	}
}

// FuzzCompare: any two inputs give diffs or an error, never a panic, and
// a document compared with itself has no diff.
func FuzzCompare(f *testing.F) {
	// The real guest's reports, cut to their kernel and taint sections
	// (the engine spends its time minimizing a 30 KB pair).
	cut := func(path string) []byte {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		var r map[string]json.RawMessage
		if err := json.Unmarshal(raw, &r); err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(map[string]json.RawMessage{"kernel": r["kernel"], "taint": r["taint"]})
		return b
	}
	f.Add(cut("testdata/guest-report.json"), cut("testdata/guest-report-2.json"))
	f.Add([]byte(`{"kernel":{"uptime_s":1}}`), []byte(`{"kernel":{"uptime_s":2},"x":[1,{"y":null}]}`))
	f.Add([]byte(`[]`), []byte(`{"a.b":{"":1}}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if _, err := Compare(a, b); err != nil {
			return
		}
		if ds, err := Compare(a, a); err != nil || len(ds) != 0 {
			t.Fatalf("a document differs from itself: %v %v", ds, err)
		}
	})
}
