package report

import (
	"slices"
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
