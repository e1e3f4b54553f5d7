package measure

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/report"
)

// ErrMalformedProc reports a /proc or /sys file that does not have the
// kernel's format.
var ErrMalformedProc = errors.New("malformed")

// procModule is one line of /proc/modules:
// "name size refcount deps state address [(taint)]".
type procModule struct {
	Name  string
	Size  int64
	State string // Live, Loading, Unloading
	Taint string // letters, without parentheses or the + / - state mark
}

// maxProcLines bounds the lines parsed from one /proc file.
const maxProcLines = 1 << 20

// parseProcModules parses /proc/modules.
func parseProcModules(b []byte) ([]procModule, error) {
	var out []procModule
	for n := 1; len(b) > 0; n++ {
		if n > maxProcLines {
			return nil, fmt.Errorf("/proc/modules: more than %d lines: %w", maxProcLines, ErrMalformedProc)
		}
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		f := strings.Fields(string(line))
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return nil, fmt.Errorf("/proc/modules line %d: %d fields, want at least 6: %w", n, len(f), ErrMalformedProc)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("/proc/modules line %d: size %q: %w", n, f[1], ErrMalformedProc)
		}
		if !validModuleName(f[0]) {
			return nil, fmt.Errorf("/proc/modules line %d: name %q: %w", n, f[0], ErrMalformedProc)
		}
		m := procModule{Name: f[0], Size: size, State: f[4]}
		if len(f) >= 7 {
			t := f[6]
			if len(t) < 2 || t[0] != '(' || t[len(t)-1] != ')' {
				return nil, fmt.Errorf("/proc/modules line %d: taint %q: %w", n, t, ErrMalformedProc)
			}
			// The kernel prints the module's taint letters, then + while
			// it loads or - while it unloads (State says so too).
			m.Taint = strings.TrimRight(t[1:len(t)-1], "+-")
			if !report.IsModuleTaint(m.Taint) {
				return nil, fmt.Errorf("/proc/modules line %d: taint %q: not the kernel's module taint letters (%s, in order): %w", n, t, report.ModuleTaintOrder(), ErrMalformedProc)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// validModuleName accepts what the kernel accepts for a module name
// (MODULE_NAME_LEN 56, printable, no slash or white space).
func validModuleName(s string) bool {
	if s == "" || len(s) > 55 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '[' || c == ']' {
			return false
		}
	}
	return true
}

// parseKallsymsModules returns the module names tagged in /proc/kallsyms
// ("addr type symbol\t[module]"). Tags that are not modules (BPF programs,
// ftrace and kprobe trampolines: "[bpf]", "[__builtin__ftrace]") are left
// out.
func parseKallsymsModules(b []byte) (map[string]bool, error) {
	out := map[string]bool{}
	for n := 1; len(b) > 0; n++ {
		if n > 16*maxProcLines {
			return nil, fmt.Errorf("/proc/kallsyms: too many lines: %w", ErrMalformedProc)
		}
		nl := bytes.IndexByte(b, '\n')
		var line []byte
		if nl < 0 {
			line, b = b, nil
		} else {
			line, b = b[:nl], b[nl+1:]
		}
		if len(line) == 0 || line[len(line)-1] != ']' {
			continue
		}
		open := bytes.LastIndexByte(line, '[')
		if open < 0 {
			return nil, fmt.Errorf("/proc/kallsyms line %d: unbalanced module tag: %w", n, ErrMalformedProc)
		}
		name := line[open+1 : len(line)-1]
		if bytes.HasPrefix(name, []byte("__builtin")) || string(name) == "bpf" {
			continue
		}
		if !validModuleName(string(name)) {
			return nil, fmt.Errorf("/proc/kallsyms line %d: module tag %q: %w", n, name, ErrMalformedProc)
		}
		if !out[string(name)] {
			out[string(name)] = true
		}
	}
	return out, nil
}

// procStatus holds the fields of /proc/PID/status the agent uses.
type procStatus struct {
	Name      string
	Tgid      int
	PPid      int
	TracerPid int
}

// parseProcStatus parses /proc/PID/status ("Key:\tvalue" lines).
func parseProcStatus(b []byte) (procStatus, error) {
	var s procStatus
	seen := 0
	for n := 1; len(b) > 0 && n <= 4096; n++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		val := strings.TrimSpace(string(v))
		num := func() (int, error) {
			i, err := strconv.Atoi(val)
			if err != nil || i < 0 {
				return 0, fmt.Errorf("status %s %q: %w", k, val, ErrMalformedProc)
			}
			seen++
			return i, nil
		}
		var err error
		switch string(k) {
		case "Name":
			s.Name = val
		case "Tgid":
			s.Tgid, err = num()
		case "PPid":
			s.PPid, err = num()
		case "TracerPid":
			s.TracerPid, err = num()
		}
		if err != nil {
			return procStatus{}, err
		}
	}
	if seen < 3 {
		return procStatus{}, fmt.Errorf("status: Tgid, PPid or TracerPid missing: %w", ErrMalformedProc)
	}
	return s, nil
}

// environHas reports whether a NUL-separated environment (/proc/PID/environ)
// sets the variable key.
func environHas(env []byte, key string) bool {
	for len(env) > 0 {
		var kv []byte
		kv, env, _ = bytes.Cut(env, []byte{0})
		if k, _, ok := bytes.Cut(kv, []byte{'='}); ok && string(k) == key {
			return true
		}
	}
	return false
}

// modulesDep maps module names to paths relative to /lib/modules/RELEASE
// from modules.dep ("kernel/fs/foo.ko.xz: deps...") and modules.builtin
// ("kernel/fs/bar.ko"). Names are normalised as the kernel does ('-' → '_').
func parseModulesDep(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for n := 1; len(b) > 0; n++ {
		if n > maxProcLines {
			return nil, fmt.Errorf("modules.dep: too many lines: %w", ErrMalformedProc)
		}
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		p, _, _ := bytes.Cut(line, []byte{':'})
		path := strings.TrimSpace(string(p))
		if path == "" || strings.HasPrefix(path, "#") {
			continue
		}
		name := moduleNameFromPath(path)
		if name == "" {
			return nil, fmt.Errorf("modules.dep line %d: %q is not a module path: %w", n, path, ErrMalformedProc)
		}
		if _, dup := out[name]; !dup {
			out[name] = path
		}
	}
	return out, nil
}

// moduleNameFromPath returns the module name of "dir/foo-bar.ko.xz": foo_bar.
func moduleNameFromPath(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	if !strings.HasSuffix(base, ".ko") {
		return ""
	}
	return normModuleName(strings.TrimSuffix(base, ".ko"))
}

func normModuleName(s string) string { return strings.ReplaceAll(s, "-", "_") }
