package testvm

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/report"
)

// revokeInit is /init of the revocation guests: it installs the
// MOK-signed vp_rev as a module of the running release (in modules.dep,
// so that the agent judges its file), loads it with finit_module, then
// measures and attests once per line of /mnt/rounds ("NAME" or
// "NAME POLICY": the agent's --policy from the share), all rounds one
// agent with one state directory.
const revokeInit = initPrologue + `ip addr add 10.0.2.15/24 dev eth0 || echo VIGIL-NO-NET
ip link set eth0 up || echo VIGIL-NO-NET
rel=$(uname -r)
mkdir -p /lib/modules/$rel/extra
cp /mnt/vp_rev.ko /lib/modules/$rel/extra/vp_rev.ko
echo "extra/vp_rev.ko:" >>/lib/modules/$rel/modules.dep
/bin/finit /lib/modules/$rel/extra/vp_rev.ko >/mnt/finit.out
mkdir -p /tmp/vigil
while read name policy; do
	popt=""
	[ -n "$policy" ] && popt="--policy /mnt/$policy"
	/bin/vigil agent run --server "$(cat /mnt/server)" --tpm /dev/tpmrm0 --report-ca /mnt/ca.pem --kernel /mnt/vmlinuz \
		--state-dir /tmp/vigil $popt --once -o json >/mnt/$name.json 2>/mnt/$name.err
done </mnt/rounds
/bin/vigil agent measure --kernel /mnt/vmlinuz -o json >/mnt/report.json 2>/mnt/measure.err
cat /proc/keys >/mnt/keys
cp /proc/modules /mnt/proc_modules
dmesg >/mnt/dmesg
sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// TestRealRevocation closes seed 000's loop on a real kernel. A module
// signed by the enrolled MOK is loaded and allowed; revoking the MOK and
// denying the module's file in the code-integrity policy makes the very
// next round level 0 (revoked-module): the revocation takes effect at once
// wherever Vigil judges. `vigil policy export --to mokx` then gives the
// next-boot revocation, filed as a MokXNew request and accepted in
// MokManager; at the next boot the kernel itself refuses the module by its
// file hash, the MokListX is in the report and in the measured log (PCR
// 14), and the certificate entry is shown to do nothing for modules on
// this kernel (docs/real-hosts.md).
func TestRealRevocation(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boots: the MOK enrollment (once per run), a boot, the MokListX request (two boots), a boot")
	}
	p := Require(t)
	mt := RequireModuleTools(t, p)
	t0 := time.Now()
	ctx := context.Background()
	work := t.TempDir()
	mok := EnrolledMOK(t, p)
	vigilPath := Vigil(t)
	vigil, err := os.ReadFile(vigilPath)
	if err != nil {
		t.Fatal(err)
	}
	finit := BuildFinit(ctx, t)
	_, file, _, _ := runtime.Caller(0)
	probe, err := os.ReadFile(filepath.Join(filepath.Dir(file), "testdata", "oracle", "probe.c"))
	if err != nil {
		t.Fatal(err)
	}
	kos, err := mt.BuildModules(ctx, filepath.Join(work, "build"), map[string][]byte{"vp_rev.c": probe})
	if err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(work, "vp_rev.ko")
	if err := mt.Sign(ctx, "sha256", mok.KeyPEM, mok.CertPEM, kos["vp_rev"], signed); err != nil {
		t.Fatal(err)
	}
	tbs := sha256.Sum256(mok.Key.Cert.RawTBSCertificate)
	fileSum := sha256.Sum256(mustReadBytes(t, signed))
	// The two responses to a bad driver: the module's file blocked by its
	// hash (the detection signature) and its signer revoked.
	revoke := fmt.Sprintf("name: revoke the test MOK\ndeny:\n  sha256: [%x]\nrevocations:\n  - tbs_sha256: %x\n    reason: keyCompromise\n    comment: the Atsiv publisher kept its key\n    certificate: |\n%s",
		fileSum, tbs, indent(string(mok.Key.CertPEM()), "      "))

	initrd := filepath.Join(work, "initrd.img")
	err = BuildInitramfs(p, Initramfs{
		Init:    revokeInit,
		Modules: []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p", "e1000"},
		Files:   []File{{Path: "bin/vigil", Mode: 0o755, Data: vigil}, {Path: "bin/finit", Mode: 0o755, Data: finit}},
	}, initrd)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(work, "disk.img")
	if err := BuildDisk(ctx, p, ESP{GrubCfg: grubCfg, Initrd: initrd}, disk); err != nil {
		t.Fatal(err)
	}
	tpm := testtpm.Start(t)
	tpm.Stop()
	boot := func(name string, vars string, rounds string) guestFiles {
		t.Helper()
		share := filepath.Join(work, name)
		if err := os.Mkdir(share, 0o755); err != nil {
			t.Fatal(err)
		}
		_, fwd := guestService(t, p, tpm, share, testserver.Options{Policies: vmPolicy(t, p)})
		for n, b := range map[string][]byte{"vp_rev.ko": mustReadBytes(t, signed), "revoke.yaml": []byte(revoke), "rounds": []byte(rounds)} {
			if err := os.WriteFile(filepath.Join(share, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		runGuest(t, p, Boot{Disk: disk, Vars: vars, TPMState: tpm.StateDir, Share: share, Timeout: 180 * time.Second, Forwards: []Forward{fwd}},
			name, "VIGIL-INSMOD-FAILED", "VIGIL-NO-SHARE", "VIGIL-NO-NET")
		return guestFiles{t, share}
	}
	round := func(g guestFiles, name string) attestOutput {
		t.Helper()
		var out attestOutput
		if err := json.Unmarshal([]byte(g.read(name+".json")), &out); err != nil {
			t.Fatalf("%s: %q: %v; stderr: %s", name, g.read(name+".json"), err, g.read(name+".err"))
		}
		for _, f := range out.Failures {
			t.Logf("%s: failure: level %d %s %s (%s): %s", name, f.Level, f.Reason, f.Claim, f.Provenance, f.Detail)
		}
		return out
	}
	has := func(out attestOutput, reason, detail string) bool {
		for _, f := range out.Failures {
			if f.Reason == reason && f.Level == 1 && strings.Contains(f.Detail, detail) {
				return true
			}
		}
		return false
	}

	// Boot 1: the module loads; allowed, then revoked at once.
	g := boot("boot1", mok.CopyVars(t), "before\nrevoked revoke.yaml\n")
	if got := strings.TrimSpace(g.read("finit.out")); got != "accepted 0" {
		t.Fatalf("boot 1: finit_module of the MOK-signed module: %q", got)
	}
	before, after := round(g, "before"), round(g, "revoked")
	if before.Level == 0 || has(before, "revoked-module", "vp_rev") {
		t.Errorf("round before the revocation: level %d, want above 0 without revoked-module", before.Level)
	}
	// The attacker-enrolled MOK: the test's key went in through MokManager
	// like any enrolled key, and the service's policy does not list it in
	// mok_certificates, so the host is capped at level 2 with
	// mok-not-approved (a level-3 failure), whatever else it passes.
	mokFailure := false
	for _, f := range before.Failures {
		mokFailure = mokFailure || (f.Reason == "mok-not-approved" && f.Level == 3)
	}
	if before.Level > 2 || !mokFailure {
		t.Errorf("round with an unapproved enrolled MOK: level %d, want at most 2 with 3:mok-not-approved", before.Level)
	}
	if after.Level != 0 || !has(after, "revoked-module", "vp_rev") {
		t.Errorf("round after the revocation: level %d, want 0 with revoked-module for vp_rev", after.Level)
	}

	// The next-boot revocation: MokListX from the same policy.
	pol := filepath.Join(work, "revoke.yaml")
	os.WriteFile(pol, []byte(revoke), 0o644)
	esl := filepath.Join(work, "mokx.esl")
	if b, err := exec.Command(vigilPath, "policy", "export", "--policy", pol, "--to", "mokx", "-o", "json", esl).CombinedOutput(); err != nil {
		t.Fatalf("vigil policy export --to mokx: %v: %s", err, b)
	} else {
		t.Logf("export: %s", strings.TrimSpace(string(b)))
	}
	lists, err := os.ReadFile(esl)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := efi.ParseSignatureLists(lists)
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]int{}
	for _, e := range efi.Entries(parsed) {
		byType[efi.TypeName(e.Type)]++
	}
	if byType["x509"] != 1 || byType["sha256"] != 1 || len(byType) != 2 {
		t.Fatalf("the exported MokListX holds %v, want the revoked certificate and the module's file hash", byType)
	}
	vars := mok.CopyVars(t)
	d, err := ApplyMokRequest(ctx, t, p, vars, MokRequest{Name: "MokXNew", Lists: lists, Password: "vigiltest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MokListX request applied in %s (two boots)", d.Round(100*time.Millisecond))

	// Boot 2: shim hands the kernel the MokListX (measured in PCR 14),
	// and the kernel refuses the module by its file hash: Debian's
	// kernel loads MokListXRT's SHA-256 entries into .blacklist and
	// checks a module's whole file against them (kernel/module/signing.c
	// mod_is_hash_blacklisted, from its db-mok-keyring patches). The
	// certificate entry does nothing there: X.509 entries go to the
	// revocation list of CONFIG_SYSTEM_REVOCATION_LIST, which this kernel
	// is built without, so the MOK stays in .machine.
	if v := kernelConfig(t, p, "CONFIG_SYSTEM_REVOCATION_LIST"); v != "" {
		t.Fatalf("this kernel has CONFIG_SYSTEM_REVOCATION_LIST=%s: the expectations below are for one without", v)
	}
	g = boot("boot2", vars, "next revoke.yaml\n")
	if got := strings.TrimSpace(g.read("finit.out")); got != "rejected 129 Key was rejected by service" {
		t.Errorf("boot 2: finit_module %q, want rejected 129 (EKEYREJECTED: its file hash is blacklisted)", got)
	}
	if dm := g.read("dmesg"); !strings.Contains(dm, fmt.Sprintf("Module hash %x is blacklisted", fileSum)) {
		t.Errorf("boot 2: dmesg lacks \"Module hash %x is blacklisted\"", fileSum)
	}
	if strings.Contains(g.read("proc_modules"), "vp_rev ") {
		t.Errorf("boot 2: vp_rev is loaded")
	}
	keys := g.read("keys")
	if !strings.Contains(keys, fmt.Sprintf("bin:%x", fileSum)) {
		t.Errorf("boot 2: .blacklist lacks bin:%x", fileSum)
	}
	if !strings.Contains(keys, "Vigil Test Module Signing MOK") {
		t.Errorf("boot 2: the MOK left .machine (the kernel was expected to ignore MokListX certificates)")
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(g.read("report.json")), &rep); err != nil {
		t.Fatalf("boot 2 report: %v; %s", err, g.read("measure.err"))
	}
	// MokListXRT is shim's vendor dbx (Debian's shim: 114 hashes) and
	// MokListX.
	mx := rep.SecureBoot.MOKX
	if mx == nil || mx.ByType["x509"] != 1 || len(mx.Certificates) != 1 || mx.Certificates[0].Subject != "CN=Vigil Test Module Signing MOK,O=Vigil Test" ||
		!slices.Contains(mx.SHA256, fmt.Sprintf("%x", fileSum)) {
		t.Fatalf("boot 2 report: secure_boot.mokx = %+v, want the exported certificate and file hash", mx)
	}
	measured := false
	for _, e := range rep.MeasuredBoot.ShimEvents {
		if e.PCR == 14 && e.Name == "MokListX" {
			// The list the kernel read is the list shim measured.
			measured = e.Digest == mx.Digest
		}
	}
	if !measured {
		t.Errorf("boot 2: no MokListX event in PCR 14 with MokListXRT's digest %s (shim events %+v)", mx.Digest, rep.MeasuredBoot.ShimEvents)
	}
	// The revoked module does not run, so no revoked-module; but IMA
	// measured the refused load (kernel_read_file, before the signature
	// check), and the appraisal cannot tell a refused load from a module
	// that hid itself: ima-module-unlisted, level 0.
	next := round(g, "next")
	if has(next, "revoked-module", "vp_rev") || !has(next, "ima-module-unlisted", "vp_rev") || next.Level != 0 {
		t.Errorf("boot 2: level %d, want 0 by ima-module-unlisted (the refused load) and no revoked-module", next.Level)
	}
	t.Logf("total %s", time.Since(t0).Round(100*time.Millisecond))
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

func mustReadBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
