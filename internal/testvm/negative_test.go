package testvm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/report"
)

// negativeInit is a negative boot's /init after the network: one round,
// the report, and whether the kernel exposes a firmware event log.
const negativeInit = `O=/mnt/n
mkdir -p $O
ATTEST
/bin/vigil agent measure --kernel /mnt/vmlinuz --cache-dir /mnt/state/cache -o json >$O/report.json 2>$O/measure.err
if [ -e /sys/kernel/security/tpm0/binary_bios_measurements ]; then echo present; else echo absent; fi >$O/eventlog
cat /sys/kernel/security/lockdown >$O/lockdown
dmesg >$O/dmesg
`

func negative(out string) string {
	return strings.ReplaceAll(negativeInit, "ATTEST", attestOnce(out))
}

// wantResult asserts a round's level and its failures' "LEVEL:reason"
// codes, exactly (the order aside).
func wantResult(t *testing.T, name string, out onceResult, level int, want ...string) {
	t.Helper()
	got := reasons(out.Failures)
	slices.Sort(got)
	got = slices.Compact(got)
	slices.Sort(want)
	if out.Enrollment != "approved" || out.Level != level || !slices.Equal(got, want) {
		t.Errorf("%s: enrollment %s, level %d, failures %v; want approved, level %d, %v", name, out.Enrollment, out.Level, got, level, want)
	}
}

// TestRealSecureBootOff boots the same disk with OVMF's firmware without
// Secure Boot (OVMF_CODE_4M.fd with the plain OVMF_VARS_4M.fd). Debian's
// grub then starts the kernel without the EFI stub's handover of the TCG
// log, so the guest has no binary_bios_measurements although the PCRs
// were extended: the report says so (measured_boot unavailable, naming
// the missing file, never an empty ok log), the service appraises no
// event log, and the level is 2.
func TestRealSecureBootOff(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boot")
	}
	p := Require(t)
	plain := p
	plain.OVMFCode, plain.OVMFVars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	for _, f := range []string{plain.OVMFCode, plain.OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("ovmf: %v", err)
		}
	}
	r := newRig(t, p, vmPolicy(t, p))
	r.warmKernelKeys()
	r.boot("sb-off", guestSpec{Init: negative("n/attest"), Parts: &plain}, true)
	if got := strings.TrimSpace(r.read("n/eventlog")); got != "absent" {
		t.Errorf("binary_bios_measurements is %s in the guest, want absent (Secure Boot off, no EFI stub)", got)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(r.read("n/report.json")), &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	mb := rep.MeasuredBoot
	if mb.Status != report.StatusUnavailable || !strings.Contains(mb.Error, "binary_bios_measurements") || mb.Events != 0 {
		t.Errorf("report measured_boot: status %s, error %q, %d events; want unavailable, naming binary_bios_measurements", mb.Status, mb.Error, mb.Events)
	}
	if rep.SecureBoot.Enabled {
		t.Errorf("report secure_boot.enabled is true with Secure Boot off")
	}
	if rec := r.rec.attests(); len(rec) != 1 || rec[0].HasLog {
		t.Errorf("attestations %d, event log sent %v; want one, without a log", len(rec), len(rec) == 1 && rec[0].HasLog)
	}
	out := r.once("n/attest")
	t.Logf("lockdown %s", strings.TrimSpace(r.read("n/lockdown")))
	wantResult(t, "sb-off", out, sbOffLevel, sbOffReasons...)
	for _, f := range out.Failures {
		if f.Reason == "event-log-not-verified" && !strings.Contains(f.Detail, "has no firmware event log") {
			t.Errorf("event-log-not-verified detail %q", f.Detail)
		}
	}
}

// The Secure Boot off result: the host's own word (asserted) that Secure
// Boot, lockdown and module signature enforcement are off (lockdown none
// fails level 3, so lockdown-below-confidentiality does not apply), and
// no event log to attest the boot.
var (
	sbOffLevel   = 2
	sbOffReasons = []string{"3:event-log-not-verified", "3:secure-boot-off", "3:lockdown-below-integrity", "3:sig-enforce-off", "4:no-reference-values"}
)

// TestRealUnsignedKernel starts an unsigned copy of the kernel (its
// signature removed with osslsigncode) with qemu -kernel under Secure
// Boot: OVMF's fallback loader neither verifies nor measures it, so the
// verified event log has no kernel in PCR 4 and the level is 2 with
// kernel-unmeasured.
func TestRealUnsignedKernel(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boot")
	}
	p := Require(t)
	r := newRig(t, p, vmPolicy(t, p))
	r.warmKernelKeys()
	unsigned := filepath.Join(r.work, "vmlinuz-unsigned")
	if out, err := exec.Command("osslsigncode", "remove-signature", "-in", p.Vmlinuz, "-out", unsigned).CombinedOutput(); err != nil {
		t.Fatalf("osslsigncode remove-signature: %v: %s", err, out)
	}
	if out, _ := exec.Command("sbverify", "--list", unsigned).CombinedOutput(); !bytes.Contains(out, []byte("No signature table present")) {
		t.Fatalf("the copy still has a signature: %s", out)
	}
	r.boot("unsigned-kernel", guestSpec{Init: negative("n/attest"), Wrap: func(initrd string, b *Boot) {
		b.Kernel, b.Initrd = unsigned, initrd
		b.Append = `console=ttyS0 panic=-1 rootfstype=ramfs ima_policy=tcb|critical_data`
	}}, true)
	var rep report.Report
	if err := json.Unmarshal([]byte(r.read("n/report.json")), &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	kernel := authenticodeSHA256(t, unsigned)
	for _, a := range rep.MeasuredBoot.BootApplications {
		if a.Digests["sha256"] == kernel {
			t.Errorf("the unsigned kernel %s is in the log's boot applications", kernel)
		}
	}
	if rep.MeasuredBoot.Status != report.StatusOK || len(rep.MeasuredBoot.BootApplications) != 0 {
		t.Errorf("measured_boot: status %s, %d boot applications; want the firmware's log, without any", rep.MeasuredBoot.Status, len(rep.MeasuredBoot.BootApplications))
	}
	if !rep.SecureBoot.Enabled || rep.Enforcement.Lockdown != "integrity" {
		t.Errorf("the unsigned kernel reports Secure Boot %v, lockdown %s; want on and integrity (as it does: the kernel cannot tell)", rep.SecureBoot.Enabled, rep.Enforcement.Lockdown)
	}
	out := r.once("n/attest")
	wantResult(t, "unsigned-kernel", out, unsignedLevel, unsignedReasons...)
}

// The unsigned kernel's result: the verified log has no kernel in PCR 4,
// nor any boot application at all (no shim, no grub ran), although the
// kernel itself reports Secure Boot on and lockdown integrity.
var (
	unsignedLevel   = 2
	unsignedReasons = []string{"3:kernel-unmeasured", "4:boot-binaries-unmeasured", "4:lockdown-below-confidentiality", "4:no-reference-values"}
)

// efiCertSHA256 is EFI_CERT_SHA256_GUID in its on-disk byte order.
var efiCertSHA256 = []byte{0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28}

// revokeInVars writes a copy of OVMF's variable store whose dbx revokes
// the image with Authenticode SHA-256 sum. The Microsoft store's dbx is
// one EFI_CERT_SHA256 signature list holding the placeholder (the SHA-256
// of nothing); its hash is overwritten in place, so the store's layout,
// sizes and headers are unchanged (edk2 keeps no checksum over variable
// data; authentication happens at SetVariable, not when the store is
// read).
func revokeInVars(t *testing.T, src, dst string, sum []byte) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	empty := sha256.Sum256(nil)
	i := bytes.Index(b, empty[:])
	if i < 0 || bytes.Count(b, empty[:]) != 1 {
		t.Fatalf("%s: %d placeholder dbx entries, want exactly 1", src, bytes.Count(b, empty[:]))
	}
	// The list: SignatureType, ListSize 76, HeaderSize 0, SignatureSize
	// 48, then the owner GUID and the hash.
	esl := i - 16 - 28
	if esl < 0 || !bytes.Equal(b[esl:esl+16], efiCertSHA256) || binary.LittleEndian.Uint32(b[esl+16:]) != 76 || binary.LittleEndian.Uint32(b[esl+24:]) != 48 {
		t.Fatalf("%s: the placeholder is not the one entry of an EFI_CERT_SHA256 list", src)
	}
	copy(b[i:], sum)
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRealDbxRevokesGrub boots with a dbx that revokes the booted grub's
// Authenticode hash: shim (which checks the firmware's dbx before it
// starts grub) refuses it, the guest never reaches /init, and the boot
// ends at the timeout with shim's refusal on the serial console.
func TestRealDbxRevokesGrub(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boot")
	}
	p := Require(t)
	r := newRig(t, p, vmPolicy(t, p))
	grub, err := hex.DecodeString(authenticodeSHA256(t, p.Grub))
	if err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(r.work, "vars-dbx-grub.fd")
	revokeInVars(t, p.OVMFVars, vars, grub)
	res, err := r.boot("dbx-grub", guestSpec{Init: "echo VIGIL-BOOTED\n", NoNet: true,
		Boot: Boot{Vars: vars, Timeout: 150 * time.Second, StopOn: dbxRefusal}}, false)
	if res == nil {
		t.Fatalf("no boot: %v", err)
	}
	if err != nil || !res.Stopped {
		t.Errorf("Run = %v, stopped at shim's refusal %v; serial tail:\n%s", err, res.Stopped, lastLines(res.Serial, 12))
	}
	if strings.Contains(res.Serial, "VIGIL-INIT-START") || strings.Contains(res.Serial, "Linux version") {
		t.Fatalf("the guest booted a kernel with grub revoked in dbx; serial tail:\n%s", lastLines(res.Serial, 20))
	}
	// The firmware started shim (from the disk's removable-media path),
	// and shim refused grub.
	if !strings.Contains(res.Serial, `BdsDxe: starting Boot0001 "UEFI Misc Device"`) || !strings.Contains(res.Serial, dbxRefusal) {
		t.Errorf("the serial console lacks the firmware starting shim or shim's %q", dbxRefusal)
	}
	t.Logf("shim refused the revoked grub after %s", res.Elapsed.Round(100*time.Millisecond))
}

// dbxRefusal is what shim shows (its error dialog, on the serial console)
// when the image it verifies is in dbx.
const dbxRefusal = "Verification failed: (0x1A) Security Violation"
