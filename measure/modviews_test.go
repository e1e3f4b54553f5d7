package measure

import (
	"os"
	"slices"
	"testing"
)

// TestModuleViewsRealGuest parses what a real Debian 6.1 guest showed with
// the two Atsiv modules loaded and hidden (testdata/guest, captured by
// internal/testvm TestRealAtsiv): ftrace still tags their functions, and
// the loader's allocations outnumber /proc/modules by exactly their two
// regions (16 KiB modules: 20480 bytes with the guard page).
func TestModuleViewsRealGuest(t *testing.T) {
	read := func(n string) []byte {
		b, err := os.ReadFile("testdata/guest/" + n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	names, err := parseFtraceModules(read("available_filter_functions"))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := parseProcModules(read("proc_modules"))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, m := range mods {
		if !names[m.Name] {
			t.Errorf("listed module %s has no function in ftrace", m.Name)
		}
		sizes = append(sizes, m.Size)
	}
	for _, h := range []string{"atsiv_list", "atsiv_kobj"} {
		if !names[h] || slices.ContainsFunc(mods, func(m procModule) bool { return m.Name == h }) {
			t.Errorf("%s: in ftrace %v, want in ftrace and not in /proc/modules", h, names[h])
		}
	}
	allocs, err := parseVmallocModules(read("vmallocinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(allocs) != len(mods)+2 {
		t.Fatalf("%d loader allocations, %d modules listed; want 2 more", len(allocs), len(mods))
	}
	for _, a := range allocs {
		if a.Caller != "load_module" {
			t.Errorf("caller %q", a.Caller)
		}
	}
	if got := unlistedAllocations(allocs, sizes); !slices.Equal(got, []int64{20480, 20480}) {
		t.Errorf("unlisted sizes %v, want [20480 20480]", got)
	}
}

func TestParseModuleViewsMalformed(t *testing.T) {
	for _, in := range []string{"x[a]\n", "f [a b]\n", "f [" + string(make([]byte, 60)) + "]\n"} {
		if _, err := parseFtraceModules([]byte(in)); err == nil {
			t.Errorf("ftrace %q accepted", in)
		}
	}
	for _, in := range []string{"garbage\n", "0x1-0x2 -5 load_module+0x1/0x2\n", "0x1-0x2 x load_module\n", "0x1 4096 load_module\n"} {
		if _, err := parseVmallocModules([]byte(in)); err == nil {
			t.Errorf("vmallocinfo %q accepted", in)
		}
	}
}
