package measure

import (
	"context"
	"fmt"

	"github.com/vigil-attest/vigil/hostfs"
)

// Taint is the kernel's taint state and the part no visible module
// explains.
type Taint struct {
	Section
	Value uint64 `json:"value"`
	// Flags are the kernel's letters for the set bits, in bit order.
	Flags []string `json:"flags"`
	// Unexplained are module-attributable letters set in the kernel's
	// taint that no visible module carries: E (unsigned module) set while
	// every listed module is signed hints at hidden code.
	Unexplained []string `json:"unexplained"`
}

// taintFlag is one bit of /proc/sys/kernel/tainted
// (Documentation/admin-guide/tainted-kernels.rst).
type taintFlag struct {
	letter string
	// module is true when a module load sets the bit and the module
	// carries the letter in /proc/modules.
	module bool
}

var taintFlags = [...]taintFlag{
	0:  {"P", true},  // proprietary module
	1:  {"F", true},  // module force-loaded
	2:  {"S", false}, // SMP with CPUs not designed for it / out of spec
	3:  {"R", false}, // module force-unloaded
	4:  {"M", false}, // machine check
	5:  {"B", false}, // bad page
	6:  {"U", false}, // taint requested by user space
	7:  {"D", false}, // kernel died (oops, BUG)
	8:  {"A", false}, // ACPI table overridden
	9:  {"W", false}, // warning
	10: {"C", true},  // staging driver
	11: {"I", false}, // platform firmware bug workaround
	12: {"O", true},  // out-of-tree module
	13: {"E", true},  // unsigned module
	14: {"L", false}, // soft lockup
	15: {"K", true},  // live patch
	16: {"X", true},  // auxiliary (distribution-defined)
	17: {"T", true},  // struct randomisation plugin mismatch
	18: {"N", true},  // in-kernel test
	19: {"J", false}, // fwctl user space
}

// taintLetters returns the letters of the set bits; unknown bits are
// reported as "bitN".
func taintLetters(v uint64) []string {
	out := []string{}
	for bit := 0; bit < 64; bit++ {
		if v&(1<<bit) == 0 {
			continue
		}
		if bit < len(taintFlags) {
			out = append(out, taintFlags[bit].letter)
		} else {
			out = append(out, fmt.Sprintf("bit%d", bit))
		}
	}
	return out
}

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
	t.Flags = taintLetters(v)
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
	for bit, f := range taintFlags {
		if f.module && v&(1<<bit) != 0 && !carried[f.letter] {
			t.Unexplained = append(t.Unexplained, f.letter)
		}
	}
	return t
}
