package measure

import (
	"context"
	"fmt"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/report"
)

func (m *Measurer) collectTaint(_ context.Context, src hostfs.Source, mods *Modules) Taint {
	t := Taint{Flags: []string{}, Unexplained: []string{}}
	s, err := readLine(src, "/proc/sys/kernel/tainted")
	if err != nil {
		t.Section = statusOf(err)
		return t
	}
	var v uint64
	if _, err := fmt.Sscanf(s, "%d", &v); err != nil || fmt.Sprint(v) != s {
		t.Section = Section{Status: StatusError, Error: fmt.Sprintf("/proc/sys/kernel/tainted: %q is not a number: %v", s, ErrMalformedProc)}
		return t
	}
	t.Section = Section{Status: StatusOK}
	t.Value = v
	t.Flags = report.TaintLetters(v)
	// Letters carried by visible modules: /proc/modules, and
	// /sys/module/*/taint (which also covers modules missing from
	// /proc/modules, so that a module hidden from one list but visible in
	// sysfs still explains its taint).
	carried := map[string]bool{}
	for _, lm := range mods.Loaded {
		for _, r := range lm.Taint {
			carried[string(r)] = true
		}
	}
	if es, err := src.ReadDir("/sys/module"); err == nil {
		for _, e := range es {
			if lt, err := readLine(src, "/sys/module/"+e.Name()+"/taint"); err == nil {
				for _, r := range lt {
					carried[string(r)] = true
				}
			}
		}
	}
	for _, l := range report.ModuleTaintLetters(v) {
		if !carried[l] {
			t.Unexplained = append(t.Unexplained, l)
		}
	}
	return t
}
