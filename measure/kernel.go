package measure

import (
	"context"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/hostfs"
)

func (m *Measurer) collectKernel(_ context.Context, src hostfs.Source) Kernel {
	var k Kernel
	rel, err := readLine(src, "/proc/sys/kernel/osrelease")
	k.Section = statusOf(err)
	k.Release = rel
	k.Version, _ = readLine(src, "/proc/sys/kernel/version")
	k.Cmdline, _ = readLine(src, "/proc/cmdline")
	k.BootID, _ = readLine(src, "/proc/sys/kernel/random/boot_id")
	k.Hostname, _ = readLine(src, "/proc/sys/kernel/hostname")
	if up, err := readLine(src, "/proc/uptime"); err == nil {
		f := strings.Fields(up)
		if len(f) > 0 {
			s, _, _ := strings.Cut(f[0], ".")
			k.UptimeS, _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return k
}

// readLine returns a small file's content without surrounding white space.
func readLine(src hostfs.Source, name string) (string, error) {
	b, err := src.ReadFile(name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readInt reads a file holding one integer; nil when absent or unparsable.
func readInt(src hostfs.Source, name string) *int64 {
	s, err := readLine(src, name)
	if err != nil {
		return nil
	}
	v, err := strconv.ParseInt(strings.Fields(s + " 0")[0], 10, 64)
	if err != nil {
		return nil
	}
	return &v
}

// cmdlineParams splits a kernel command line into parameters as the
// kernel does: white space separates, double quotes group. Parameters
// after a lone "--" go to init and are not the kernel's.
func cmdlineParams(cmdline string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	flush := func() {
		if have {
			out = append(out, cur.String())
		}
		cur.Reset()
		have = false
	}
	for _, r := range cmdline {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	flush()
	for i, p := range out {
		if p == "--" {
			return out[:i]
		}
	}
	return out
}

// cmdlineValue returns the last value of key on the command line (the
// kernel lets a later parameter override an earlier one). Dashes and
// underscores in the key are equivalent, as for the kernel.
func cmdlineValue(cmdline, key string) (string, bool) {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	key = norm(key)
	val, found := "", false
	for _, p := range cmdlineParams(cmdline) {
		k, v, _ := strings.Cut(p, "=")
		if norm(k) == key {
			val, found = v, true
		}
	}
	return val, found
}
