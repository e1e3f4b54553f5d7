package measure

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/vigil-attest/vigil/hostfs"
)

// The views of a live kernel that still show a module after it removed
// itself from the modules list and from sysfs (on a real 6.1 kernel,
// list_del also takes it out of /proc/kallsyms): ftrace's list of
// traceable functions keeps the module's functions, and the module
// loader's allocation stays in vmallocinfo.

// ftraceFiles are where tracefs lists the traceable functions: its own
// mount point, then the one under debugfs.
var ftraceFiles = []string{
	"/sys/kernel/tracing/available_filter_functions",
	"/sys/kernel/debug/tracing/available_filter_functions",
}

// readFtraceModules returns the modules with traceable functions, or
// false when no tracefs could be read (not mounted, or refused under
// lockdown=confidentiality).
func readFtraceModules(src hostfs.Source) (map[string]bool, bool) {
	for _, f := range ftraceFiles {
		raw, err := src.ReadFile(f)
		if err != nil {
			continue
		}
		names, err := parseFtraceModules(raw)
		if err != nil {
			return nil, false
		}
		return names, true
	}
	return nil, false
}

// parseFtraceModules returns the module names of available_filter_functions
// lines ("function [module]", ftrace's t_show with %ps; a function of the
// core kernel has no tag). Lines with a tag that is no module name are
// malformed.
func parseFtraceModules(b []byte) (map[string]bool, error) {
	out := map[string]bool{}
	for n := 1; len(b) > 0; n++ {
		if n > 4*maxProcLines {
			return nil, fmt.Errorf("available_filter_functions: too many lines: %w", ErrMalformedProc)
		}
		var line []byte
		if nl := bytes.IndexByte(b, '\n'); nl < 0 {
			line, b = b, nil
		} else {
			line, b = b[:nl], b[nl+1:]
		}
		if len(line) == 0 || line[len(line)-1] != ']' {
			continue
		}
		open := bytes.LastIndexByte(line, '[')
		if open <= 0 || line[open-1] != ' ' {
			return nil, fmt.Errorf("available_filter_functions line %d: no \"function [module]\": %w", n, ErrMalformedProc)
		}
		name := string(line[open+1 : len(line)-1])
		if !validModuleName(name) {
			return nil, fmt.Errorf("available_filter_functions line %d: module tag %q: %w", n, name, ErrMalformedProc)
		}
		out[name] = true
	}
	return out, nil
}

// moduleAllocation is one vmallocinfo region the module loader allocated.
type moduleAllocation struct {
	Size   int64
	Caller string
}

// loaderCallers are the functions whose vmalloc regions are modules'
// memory: on x86 module_alloc's caller is move_module, inlined into
// load_module on Debian's 6.1 (vmallocinfo shows the return address, the
// caller of module_alloc, by function name). BPF programs, kprobes'
// instruction slots and ftrace trampolines also come from module_alloc,
// but their callers are bpf_jit_binary_alloc, alloc_insn_page and
// alloc_tramp.
var loaderCallers = []string{"load_module", "move_module", "module_alloc"}

// parseVmallocModules returns the module loader's regions of
// /proc/vmallocinfo ("0xSTART-0xEND SIZE CALLER+0xOFF/0xLEN pages=N
// vmalloc …"; mm/vmalloc.c s_show). Lines of other callers are skipped;
// a line whose start is not that shape is malformed.
func parseVmallocModules(b []byte) ([]moduleAllocation, error) {
	var out []moduleAllocation
	for n := 1; len(b) > 0; n++ {
		if n > maxProcLines {
			return nil, fmt.Errorf("/proc/vmallocinfo: more than %d lines: %w", maxProcLines, ErrMalformedProc)
		}
		var line []byte
		if nl := bytes.IndexByte(b, '\n'); nl < 0 {
			line, b = b, nil
		} else {
			line, b = b[:nl], b[nl+1:]
		}
		if len(line) == 0 {
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("0x")) || bytes.IndexByte(f[0], '-') < 0 {
			return nil, fmt.Errorf("/proc/vmallocinfo line %d: no address range: %w", n, ErrMalformedProc)
		}
		size, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil || size <= 0 {
			return nil, fmt.Errorf("/proc/vmallocinfo line %d: size %q: %w", n, f[1], ErrMalformedProc)
		}
		if len(f) < 3 {
			continue // an area without caller (unpurged)
		}
		caller := f[2]
		if i := bytes.IndexByte(caller, '+'); i >= 0 {
			caller = caller[:i]
		}
		if slices.Contains(loaderCallers, string(caller)) {
			out = append(out, moduleAllocation{Size: size, Caller: string(caller)})
		}
	}
	return out, nil
}

// pageSize is the allocation granule of vmalloc on the architectures
// Vigil runs on; each region has one guard page more.
const pageSize = 4096

// unlistedAllocations matches the loader's regions with the listed
// modules' sizes (/proc/modules shows a module's core size; its region is
// that, page-aligned, plus the guard page) and returns the sizes of the
// regions no listed module accounts for, largest first. When the sizes do
// not match one to one (init regions not yet freed, another kernel's
// layout), the surplus by count is what is reported: the largest regions
// beyond the listed count.
func unlistedAllocations(allocs []moduleAllocation, listed []int64) []int64 {
	free := map[int64]int{}
	for _, a := range allocs {
		free[a.Size]++
	}
	for _, s := range listed {
		r := (s+pageSize-1)/pageSize*pageSize + pageSize
		if free[r] > 0 {
			free[r]--
		}
	}
	var rest []int64
	for s, n := range free {
		for range n {
			rest = append(rest, s)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i] > rest[j] })
	surplus := len(allocs) - len(listed)
	if surplus <= 0 {
		return []int64{}
	}
	if len(rest) > surplus {
		rest = rest[:surplus]
	}
	return rest
}
