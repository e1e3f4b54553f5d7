package measure

import (
	"os"
	"slices"
	"testing"
)

// seedProc adds this machine's own files when it has them, and fixture
// lines in the kernel's formats.
func seedProc(f *testing.F, live string, fixtures ...string) {
	if b, err := os.ReadFile(live); err == nil {
		if len(b) > 1<<20 {
			b = b[:1<<20]
		}
		f.Add(b)
	}
	for _, s := range fixtures {
		f.Add([]byte(s))
	}
}

func FuzzProcModules(f *testing.F) {
	seedProc(f, "/proc/modules",
		"nvidia_uvm 1777664 0 - Live 0x0000000000000000 (POE)\nnvidia 56823808 95 nvidia_modeset, Live 0x0000000000000000 (POE)\n",
		"ext4 1040384 1 - Live 0xffffffffc0a00000\nmbcache 16384 1 ext4, Loading 0xffffffffc09f0000\n",
		"x 1 0 - Live 0x0 (\n", "")
	f.Fuzz(func(t *testing.T, b []byte) {
		mods, err := parseProcModules(b)
		if err != nil {
			return
		}
		for _, m := range mods {
			if !validModuleName(m.Name) || m.Size < 0 {
				t.Fatalf("accepted %+v", m)
			}
		}
	})
}

func FuzzKallsyms(f *testing.F) {
	seedProc(f, "/proc/kallsyms",
		"ffffffff81000000 T _stext\nffffffffc0400000 t ext4_fill_super\t[ext4]\nffffffffc0000000 t bpf_prog_x\t[bpf]\n",
		"0000000000000000 t x\t[\n", "a]\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := parseKallsymsModules(b)
		if err != nil {
			return
		}
		for n := range names {
			if !validModuleName(n) {
				t.Fatalf("accepted module %q", n)
			}
		}
	})
}

func FuzzProcStatus(f *testing.F) {
	seedProc(f, "/proc/self/status",
		"Name:\tsshd\nTgid:\t812\nPid:\t812\nPPid:\t1\nTracerPid:\t0\n",
		"Name:\tx\nTgid:\t-1\nPPid:\t1\nTracerPid:\t0\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseProcStatus(b)
		if err == nil && (s.Tgid < 0 || s.PPid < 0 || s.TracerPid < 0) {
			t.Fatalf("accepted %+v", s)
		}
	})
}

func FuzzModulesDep(f *testing.F) {
	f.Add([]byte("kernel/fs/ext4/ext4.ko.xz: kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz\nkernel/fs/mbcache.ko.xz:\n"))
	f.Add([]byte("updates/dkms/nvidia-uvm.ko.zst: updates/dkms/nvidia.ko.zst\n"))
	f.Add([]byte("notamodule: x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseModulesDep(b)
		if err != nil {
			return
		}
		for name, p := range m {
			if moduleNameFromPath(p) != name {
				t.Fatalf("%q → %q", p, name)
			}
		}
	})
}

func FuzzCmdline(f *testing.F) {
	seedProc(f, "/proc/cmdline", `BOOT_IMAGE=/vmlinuz root=/dev/sda1 dyndbg="file foo.c +p" -- init args`, `"unterminated`)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range cmdlineParams(string(b)) {
			if p == "--" {
				t.Fatal("init arguments returned")
			}
		}
		cmdlineValue(string(b), "module.sig_enforce")
	})
}

// seedGuest adds a file a real Debian 6.1 guest wrote
// (testdata/guest, captured by internal/testvm's TestRealAtsiv with
// VIGIL_TESTVM_SEEDS=1).
func seedGuest(f *testing.F, name string) {
	b, err := os.ReadFile("testdata/guest/" + name)
	if err != nil {
		f.Fatalf("seed: %v", err)
	}
	f.Add(b)
}

func FuzzFtraceModules(f *testing.F) {
	seedGuest(f, "available_filter_functions")
	seedProc(f, "/sys/kernel/tracing/available_filter_functions",
		"do_one_initcall\natsiv_payload [atsiv_list]\nfoo [bar\n", "x []\n", "[a]\n", "f  [a]\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := parseFtraceModules(b)
		if err != nil {
			return
		}
		for n := range names {
			if !validModuleName(n) {
				t.Fatalf("accepted module %q", n)
			}
		}
	})
}

func FuzzVmallocModules(f *testing.F) {
	seedGuest(f, "vmallocinfo")
	seedProc(f, "/proc/vmallocinfo",
		"0xffffffffc0000000-0xffffffffc0005000   20480 load_module+0x8a3/0x1c10 pages=4 vmalloc N0=4\n",
		"0xffffffffc0005000-0xffffffffc0007000    8192 bpf_jit_binary_alloc+0x5b/0xf0 pages=1 vmalloc\n0x0-0x1 1\n",
		"0x1 -1 load_module\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		allocs, err := parseVmallocModules(b)
		if err != nil {
			return
		}
		var sizes []int64
		for _, a := range allocs {
			if a.Size <= 0 {
				t.Fatalf("accepted %+v", a)
			}
			sizes = append(sizes, a.Size)
		}
		// Matching against any listing never reports more than the
		// surplus, nor a size that is not an allocation's.
		un := unlistedAllocations(allocs, sizes[:len(sizes)/2])
		if len(un) > len(allocs)-len(sizes)/2 {
			t.Fatalf("%d unlisted of %d allocations, %d listed", len(un), len(allocs), len(sizes)/2)
		}
		for _, s := range un {
			if !slices.Contains(sizes, s) {
				t.Fatalf("unlisted size %d is no allocation's", s)
			}
		}
	})
}
