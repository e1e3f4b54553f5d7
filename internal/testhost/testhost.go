// Package testhost builds fixture trees of a Linux host's /proc, /sys,
// /lib/modules and /etc, in the kernel's formats, for the measurement
// tests: the committed script that generates every fixture (also runnable
// as `go run ./internal/testhost/mkhost`). A Host describes the machine;
// scenarios change one thing each (a module hidden from /proc/modules, a
// ptraced critical process...), and Write lays it out under a directory
// that hostfs.New reads like "/".
package testhost

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/eventlog/eventlogtest"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/hostfs"
)

// Module is a loaded kernel module and the views that show it.
type Module struct {
	Name  string
	Size  int64
	Taint string // letters shown in /proc/modules, e.g. "OE"
	State string // Live (default), Loading, Unloading
	// File is the module file under /lib/modules/RELEASE/kernel/extra;
	// nil means no file (and no modules.dep line).
	File []byte
	// Hide leaves the module out of the named views: "proc_modules",
	// "sysfs", "kallsyms", and with Host.KernelViews "ftrace", "btf" and
	// "vmallocinfo".
	Hide []string
}

// Process is a running process.
type Process struct {
	PID       int
	Comm      string
	Exe       string // target of /proc/PID/exe
	ExeData   []byte // the file at Exe (written under the tree)
	Deleted   bool   // exe link ends in " (deleted)"
	TracerPid int
	Environ   []string
	// Threads are extra thread IDs: /proc/TID exists (probe-able) with
	// Tgid = PID, but is not listed, as on Linux.
	Threads []int
}

// Host is a machine to lay out.
type Host struct {
	Release  string
	Version  string
	Cmdline  string
	BootID   string
	Hostname string
	Uptime   string
	Tainted  uint64
	// Lockdown is the /sys/kernel/security/lockdown line ("" = no file).
	Lockdown string
	// SigEnforce is /sys/module/module/parameters/sig_enforce ("" = none).
	SigEnforce string
	LSM        string
	// Sysctls are files under /proc/sys/kernel.
	Sysctls   map[string]string
	Modules   []Module
	Processes []Process
	// EFIVars are efivarfs variables, written with their 4-byte attribute
	// prefix; nil means a BIOS boot (no /sys/firmware/efi).
	EFIVars map[efi.VarID]efi.Variable
	// EventLog is the TCG firmware event log (binary_bios_measurements).
	EventLog []byte
	// Keys are the kernel's keys (/proc/keys); nil writes no /proc/keys.
	// With Keyctl, Source also answers keyctl's reads of their keyrings
	// (measure.KeyringReader), as the live host does for root; without
	// it the tree is a capture, which has none.
	Keys   []Key
	Keyctl bool
	// Files are other files, by host path.
	Files map[string][]byte
	// KernelViews writes the module views a 6.1 kernel has besides the
	// lists: tracefs available_filter_functions (two functions per
	// module, tagged [NAME]), /sys/kernel/btf (vmlinux and one file per
	// module) and /proc/vmallocinfo (each module's core region, caller
	// load_module, and a BPF program's).
	KernelViews bool
}

// EventLogPath is where the kernel exposes the firmware event log.
const EventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// Base returns a hardened, healthy host with no modules or processes.
func Base() *Host {
	return &Host{
		Release: "6.1.0-56-amd64",
		Version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-20)",
		// The command line grub measures in eventlogtest.Debian(), as the
		// kernel shows it.
		Cmdline:    "BOOT_IMAGE=" + eventlogtest.DebianCmdline,
		BootID:     "3f8c2f63-3f7e-4bb0-a0c8-6b1f1e7f8a11",
		Hostname:   "web-01",
		Uptime:     "86400.25 170000.10",
		Lockdown:   "none [integrity] confidentiality",
		SigEnforce: "Y",
		LSM:        "lockdown,capability,landlock,yama,apparmor,integrity",
		Sysctls: map[string]string{
			"modules_disabled": "0", "kexec_load_disabled": "1", "kptr_restrict": "1",
			"dmesg_restrict": "1", "perf_event_paranoid": "3", "unprivileged_bpf_disabled": "2",
			"yama/ptrace_scope": "1", "sysrq": "176", "pid_max": "4194304", "ns_last_pid": "1200",
		},
		Files: map[string][]byte{
			"/sys/module/apparmor/parameters/enabled": []byte("Y\n"),
			"/sys/kernel/security/apparmor/profiles":  []byte("/usr/sbin/sshd (enforce)\nnvidia_modprobe (complain)\n"),
		},
	}
}

// Write lays the host out under dir.
func (h *Host) Write(dir string) error {
	w := writer{dir: dir}
	w.text("/proc/sys/kernel/osrelease", h.Release)
	w.text("/proc/sys/kernel/version", h.Version)
	w.text("/proc/cmdline", h.Cmdline)
	w.text("/proc/sys/kernel/random/boot_id", h.BootID)
	w.text("/proc/sys/kernel/hostname", h.Hostname)
	w.text("/proc/uptime", h.Uptime)
	w.text("/proc/sys/kernel/tainted", strconv.FormatUint(h.Tainted, 10))
	w.mkdir("/sys/kernel/security")
	if h.Lockdown != "" {
		w.text("/sys/kernel/security/lockdown", h.Lockdown)
	}
	if h.LSM != "" {
		w.write("/sys/kernel/security/lsm", []byte(h.LSM)) // no newline, as the kernel
	}
	if h.SigEnforce != "" {
		w.text("/sys/module/module/parameters/sig_enforce", h.SigEnforce)
	}
	keys := make([]string, 0, len(h.Sysctls))
	for k := range h.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.text("/proc/sys/kernel/"+k, h.Sysctls[k])
	}
	h.writeModules(&w)
	h.writeProcesses(&w)
	if h.EFIVars != nil {
		w.mkdir(efi.EfivarsDir)
		ids := make([]efi.VarID, 0, len(h.EFIVars))
		for id := range h.EFIVars {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i].FileName() < ids[j].FileName() })
		for _, id := range ids {
			b, _ := h.EFIVars[id].MarshalBinary()
			w.write(id.Path(), b)
		}
	}
	if h.EventLog != nil {
		w.write(EventLogPath, h.EventLog)
	}
	if h.Keys != nil {
		w.write("/proc/keys", procKeys(h.Keys))
	}
	files := make([]string, 0, len(h.Files))
	for k := range h.Files {
		files = append(files, k)
	}
	sort.Strings(files)
	for _, k := range files {
		w.write(k, h.Files[k])
	}
	return w.err
}

func hidden(m Module, view string) bool {
	for _, v := range m.Hide {
		if v == view {
			return true
		}
	}
	return false
}

func (h *Host) writeModules(w *writer) {
	var procMods, kallsyms, dep bytes.Buffer
	// Built-in symbols first, as the kernel lists them.
	kallsyms.WriteString("ffffffff81000000 T _stext\nffffffff81000010 T startup_64\nffffffffc0000000 t bpf_prog_6deef7357e7b4530_sd_fw_egress\t[bpf]\nffffffffc0001000 t ftrace_trampoline\t[__builtin__ftrace]\n")
	w.mkdir("/sys/module")
	for i, m := range h.Modules {
		state := m.State
		if state == "" {
			state = "Live"
		}
		addr := 0xffffffffc0400000 + uint64(i)*0x10000
		if !hidden(m, "proc_modules") {
			fmt.Fprintf(&procMods, "%s %d 0 - %s 0x%016x", m.Name, m.Size, state, addr)
			if m.Taint != "" {
				fmt.Fprintf(&procMods, " (%s)", m.Taint)
			}
			procMods.WriteByte('\n')
		}
		if !hidden(m, "sysfs") {
			sys := "/sys/module/" + m.Name
			w.text(sys+"/initstate", strings.ToLower(map[string]string{"Live": "live", "Loading": "coming", "Unloading": "going"}[state]))
			w.text(sys+"/taint", m.Taint)
			w.text(sys+"/refcnt", "0")
		}
		if !hidden(m, "kallsyms") {
			for s, typ := range []string{"t", "T", "d"} {
				fmt.Fprintf(&kallsyms, "%016x %s %s_sym%d\t[%s]\n", addr+uint64(s)*0x40, typ, m.Name, s, m.Name)
			}
		}
		if m.File != nil {
			rel := "kernel/extra/" + strings.ReplaceAll(m.Name, "_", "-") + ".ko"
			w.write(path.Join("/lib/modules", h.Release, rel), m.File)
			fmt.Fprintf(&dep, "%s:\n", rel)
		}
	}
	// Built-in code with parameters has a sysfs directory without initstate.
	w.text("/sys/module/printk/parameters/time", "Y")
	w.write("/proc/modules", procMods.Bytes())
	w.write("/proc/kallsyms", kallsyms.Bytes())
	if h.KernelViews {
		var ftrace, vmalloc bytes.Buffer
		ftrace.WriteString("do_one_initcall\nstartup_64_setup_env\n")
		vmalloc.WriteString("0xffffffffc0000000-0xffffffffc0002000    8192 bpf_jit_binary_alloc+0x5b/0xf0 pages=1 vmalloc N0=1\n")
		for i, m := range h.Modules {
			if !hidden(m, "ftrace") {
				fmt.Fprintf(&ftrace, "%s_init_one [%s]\n%s_work [%s]\n", m.Name, m.Name, m.Name, m.Name)
			}
			if !hidden(m, "vmallocinfo") {
				size := (m.Size+4095)/4096*4096 + 4096
				start := 0xffffffffc0400000 + uint64(i)*0x10000
				fmt.Fprintf(&vmalloc, "0x%016x-0x%016x %7d load_module+0x8a3/0x1c10 pages=%d vmalloc N0=%d\n", start, start+uint64(size), size, size/4096-1, size/4096-1)
			}
		}
		w.write("/sys/kernel/tracing/available_filter_functions", ftrace.Bytes())
		w.text("/sys/kernel/btf/vmlinux", "")
		for _, m := range h.Modules {
			if !hidden(m, "btf") {
				w.text("/sys/kernel/btf/"+m.Name, "")
			}
		}
		w.write("/proc/vmallocinfo", vmalloc.Bytes())
	}
	w.write(path.Join("/lib/modules", h.Release, "modules.dep"), dep.Bytes())
	w.write(path.Join("/lib/modules", h.Release, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"))
}

func (h *Host) writeProcesses(w *writer) {
	w.mkdir("/proc")
	for _, p := range h.Processes {
		for _, id := range append([]int{p.PID}, p.Threads...) {
			dir := fmt.Sprintf("/proc/%d", id)
			w.text(dir+"/comm", p.Comm)
			w.write(dir+"/status", []byte(fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nNgid:\t0\nPid:\t%d\nPPid:\t1\nTracerPid:\t%d\nUid:\t0\t0\t0\t0\n",
				p.Comm, p.PID, id, p.TracerPid)))
			w.write(dir+"/environ", []byte(strings.Join(append(p.Environ, ""), "\x00")))
			target := p.Exe
			if p.Deleted {
				target += " (deleted)"
			}
			w.symlink(dir+"/exe", target)
		}
		if p.ExeData != nil && !p.Deleted {
			w.write(p.Exe, p.ExeData)
		}
	}
}

// WriteDir is Write into a fresh directory of tb's, failing tb on error.
func (h *Host) WriteDir(tb interface {
	TempDir() string
	Fatal(...any)
	Helper()
}) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := h.Write(dir); err != nil {
		tb.Fatal(err)
	}
	return dir
}

type writer struct {
	dir string
	err error
}

func (w *writer) host(p string) string { return filepath.Join(w.dir, filepath.FromSlash(p)) }

func (w *writer) mkdir(p string) {
	if w.err == nil {
		w.err = os.MkdirAll(w.host(p), 0o755)
	}
}

func (w *writer) write(p string, b []byte) {
	w.mkdir(path.Dir(p))
	if w.err == nil {
		w.err = os.WriteFile(w.host(p), b, 0o644)
	}
}

func (w *writer) text(p, s string) { w.write(p, []byte(s+"\n")) }

func (w *writer) symlink(p, target string) {
	w.mkdir(path.Dir(p))
	if w.err == nil {
		_ = os.Remove(w.host(p))
		w.err = os.Symlink(target, w.host(p))
	}
}

// HidePIDs wraps src as a rootkit that filters getdents would: /proc's
// listing omits the PIDs, but stat and open by PID still work.
func HidePIDs(src hostfs.Source, pids ...int) hostfs.Source {
	hide := map[string]bool{}
	for _, p := range pids {
		hide[strconv.Itoa(p)] = true
	}
	return &pidHider{Source: src, hide: hide}
}

type pidHider struct {
	hostfs.Source
	hide map[string]bool
}

func (h *pidHider) ReadDir(name string) ([]fs.DirEntry, error) {
	es, err := h.Source.ReadDir(name)
	if err != nil || path.Clean(name) != "/proc" {
		return es, err
	}
	out := es[:0:0]
	for _, e := range es {
		if !h.hide[e.Name()] {
			out = append(out, e)
		}
	}
	return out, nil
}

// Inputs passes the wrapped source's input digests through.
func (h *pidHider) Inputs() map[string]string {
	if in, ok := h.Source.(interface{ Inputs() map[string]string }); ok {
		return in.Inputs()
	}
	return nil
}

// Source reads the tree written by Write as Linux shows it: threads'
// /proc/TID directories answer by PID but are not listed.
func (h *Host) Source(dir string) hostfs.Source {
	var threads []int
	for _, p := range h.Processes {
		threads = append(threads, p.Threads...)
	}
	var src hostfs.Source = hostfs.New(dir)
	if len(threads) > 0 {
		src = HidePIDs(src, threads...)
	}
	if h.Keyctl {
		src = withKeyrings(src, h.Keys)
	}
	return src
}

// Exists passes probes through: hiding from getdents does not hide from
// stat.
func (h *pidHider) Exists(dir, name string) bool {
	if p, ok := h.Source.(hostfs.Prober); ok {
		return p.Exists(dir, name)
	}
	_, err := h.Source.Lstat(dir + "/" + name)
	return err == nil
}
