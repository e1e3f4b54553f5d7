package report

import "fmt"

// taintFlag is one bit of /proc/sys/kernel/tainted
// (Documentation/admin-guide/tainted-kernels.rst).
type taintFlag struct {
	letter string
	// module is true when a module load sets the bit and the module
	// carries the letter in /proc/modules.
	module bool
}

// taintFlags are the kernel's taint bits, by bit number.
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

// TaintLetters returns the letters of the set bits; unknown bits are
// reported as "bitN".
func TaintLetters(v uint64) []string {
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

// ModuleTaintLetters returns, in bit order, the letters of the set bits
// that a module load sets (and the module then carries in /proc/modules).
func ModuleTaintLetters(v uint64) []string {
	var out []string
	for bit, f := range taintFlags {
		if f.module && v&(1<<bit) != 0 {
			out = append(out, f.letter)
		}
	}
	return out
}

// IsModuleTaint reports whether s is what the kernel prints for one
// module's taint in /proc/modules: distinct module-taint letters in bit
// order (ModuleTaintOrder).
func IsModuleTaint(s string) bool { return moduleTaint.accepts(s) }

// ModuleTaintOrder is every letter a module may carry, in the order the
// kernel prints them (bit order).
func ModuleTaintOrder() string { return moduleTaintLetters }
