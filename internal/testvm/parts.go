// Package testvm boots a real guest for the real-host tests: Debian's
// signed boot chain (shim → grub → the signed linux-image) under OVMF
// Secure Boot with Microsoft's keys enrolled, with a provisioned swtpm as
// the guest's TPM, in qemu (TCG: /dev/kvm on the build machines cannot run
// OVMF guests). The guest is a busybox initramfs holding a static vigil;
// its /init is the test's script, and it talks to the host through a 9p
// share and the serial console.
//
// Nothing is installed from the signed chain: the EFI binaries and the
// kernel come from scripts/fetch-artifacts.sh (apt-get download +
// dpkg-deb -x into .cache/artifacts); the firmware, qemu and the image
// tools from `make deps`. When a part is missing the test skips with the
// reason, except under CI=true, where it fails.
//
// The recipe and its traps are in docs/real-hosts.md.
package testvm

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/artifacts"
)

// Parts are the host files a boot is built from.
type Parts struct {
	QEMU     string // qemu-system-x86_64
	OVMFCode string // OVMF_CODE_4M.secboot.fd: Secure Boot firmware, read-only pflash
	OVMFVars string // OVMF_VARS_4M.ms.fd: variables with Microsoft's keys enrolled (copied per boot)
	Swtpm    string
	Busybox  string // busybox-static's /bin/busybox
	Socat    string // relays the guest's network forwards (Boot.Forwards)

	Shim string // shimx64.efi.signed
	Grub string // grubx64.efi.signed
	MM   string // mmx64.efi.signed (MokManager)

	Vmlinuz    string // the signed Debian kernel
	ModulesDir string // its /lib/modules/<release>
	Release    string // uname -r of that kernel
}

// tools are the commands the image build runs.
var tools = []string{"mkfs.vfat", "mmd", "mcopy", "sgdisk", "dd", "swtpm", "tpm2_eventlog"}

// Require returns the parts, or skips the test (fails under CI=true)
// naming what is missing.
func Require(tb testing.TB) Parts {
	tb.Helper()
	p, missing := find(tb)
	if len(missing) > 0 {
		msg := "testvm: missing " + strings.Join(missing, ", ") + " (run `make deps artifacts`)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return p
}

func find(tb testing.TB) (Parts, []string) {
	var missing []string
	look := func(names ...string) string {
		for _, n := range names {
			if filepath.IsAbs(n) {
				if _, err := os.Stat(n); err == nil {
					return n
				}
				continue
			}
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		missing = append(missing, names[0])
		return ""
	}
	p := Parts{
		QEMU:     look("qemu-system-x86_64"),
		OVMFCode: look("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
		OVMFVars: look("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
		Swtpm:    look("swtpm"),
		Busybox:  look("/bin/busybox", "/usr/bin/busybox"),
		Socat:    look("socat"),
	}
	for _, t := range tools {
		look(t)
	}
	dir := os.Getenv("VIGIL_ARTIFACTS")
	if dir == "" {
		// artifacts.Dir fails the test when the artifacts are absent;
		// check for the stamp first so that a missing cache skips.
		dir = artifactsDefault()
	}
	if _, err := os.Stat(filepath.Join(dir, "STAMP")); err != nil {
		missing = append(missing, "the artifacts in "+dir+" (scripts/fetch-artifacts.sh)")
		return p, missing
	}
	p.Shim = look(artifacts.EFI(tb, "shimx64.efi.signed"))
	p.Grub = look(artifacts.EFI(tb, "grubx64.efi.signed"))
	p.MM = look(artifacts.EFI(tb, "mmx64.efi.signed"))
	p.Vmlinuz = look(artifacts.Vmlinuz(tb))
	p.ModulesDir = artifacts.ModulesDir(tb)
	p.Release = filepath.Base(p.ModulesDir)
	// busybox must be the static one: the initramfs has no libc.
	if p.Busybox != "" {
		if !static(p.Busybox) {
			missing = append(missing, "busybox-static ("+p.Busybox+" is dynamic)")
		}
	}
	return p, missing
}

// artifactsDefault is internal/artifacts' default directory.
func artifactsDefault() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".cache", "artifacts")
}

// static reports whether the ELF file at path has no program interpreter.
func static(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
