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

// TestRealRevocation closes the loop of seed 000 on a real kernel. A
// module signed by the enrolled MOK is loaded and allowed; revoking the
// MOK in the code-integrity policy makes the very next round level 0
// (revoked-module): the revocation takes effect at once wherever Vigil
// judges. `vigil policy export --to mokx` then gives the next-boot
// revocation; filed as a MokXNew request and accepted in MokManager, it
// is in MokListX, and at the next boot the kernel itself refuses the
// module (its signer is on the .blacklist keyring), which the report
// and the TPM-attested log show.
func TestRealRevocation(t *testing.T) {
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
	revoke := fmt.Sprintf("name: revoke the test MOK\nrevocations:\n  - tbs_sha256: %x\n    reason: keyCompromise\n    comment: the Atsiv publisher kept its key\n    certificate: |\n%s",
		tbs, indent(string(mok.Key.CertPEM()), "      "))

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
		res, err := Run(ctx, p, Boot{Disk: disk, Vars: vars, TPMState: tpm.StateDir, Share: share, Timeout: 180 * time.Second, Forwards: []Forward{fwd}})
		keep(t, share, res)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s from power-on to power-off", name, res.Elapsed.Round(100*time.Millisecond))
		if !strings.Contains(res.Serial, "VIGIL-INIT-DONE") || strings.Contains(res.Serial, "VIGIL-NO-NET") {
			t.Fatalf("%s: the guest's /init did not finish; serial tail:\n%s", name, lastLines(res.Serial, 30))
		}
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
	if byType["x509"] != 1 || byType["x509_sha256"] != 1 {
		t.Fatalf("the exported MokListX holds %v, want the certificate (shim) and its TBS hash (the kernel)", byType)
	}
	vars := mok.CopyVars(t)
	d, err := ApplyMokRequest(ctx, t, p, vars, MokRequest{Name: "MokXNew", Lists: lists, Password: "vigiltest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MokListX request applied in %s (two boots)", d.Round(100*time.Millisecond))

	// Boot 2: the kernel refuses the module by itself.
	g = boot("boot2", vars, "next revoke.yaml\n")
	if got := strings.TrimSpace(g.read("finit.out")); !strings.HasPrefix(got, "rejected 126 ") {
		t.Errorf("boot 2: finit_module %q, want rejected 126 (ENOKEY: its signer is not in any keyring)", got)
	}
	if strings.Contains(g.read("proc_modules"), "vp_rev ") {
		t.Errorf("boot 2: vp_rev is loaded")
	}
	keys := g.read("keys")
	if strings.Contains(keys, "Vigil Test Module Signing MOK") {
		t.Errorf("boot 2: the revoked MOK is still in a keyring")
	}
	if !strings.Contains(keys, fmt.Sprintf("tbs:%x", tbs)) {
		t.Errorf("boot 2: the .blacklist keyring lacks tbs:%x", tbs)
	}
	if dm := g.read("dmesg"); !strings.Contains(dm, "blacklisted") {
		t.Errorf("boot 2: dmesg does not say the MOK certificate is blacklisted")
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(g.read("report.json")), &rep); err != nil {
		t.Fatalf("boot 2 report: %v; %s", err, g.read("measure.err"))
	}
	mx := rep.SecureBoot.MOKX
	if mx == nil || mx.ByType["x509_sha256"] != 1 || mx.ByType["x509"] != 1 {
		t.Fatalf("boot 2 report: secure_boot.mokx = %+v, want the exported list", mx)
	}
	// shim measured the MokListX it handed the kernel into PCR 14, in the
	// log the TPM quoted.
	measured := false
	for _, e := range rep.MeasuredBoot.ShimEvents {
		if e.PCR == 14 && e.Name == "MokListX" {
			measured = true
			t.Logf("boot 2: PCR 14 MokListX event %s, MokListXRT digest %s", e.Digest, mx.Digest)
		}
	}
	if !measured {
		t.Errorf("boot 2: no MokListX event in PCR 14 (shim events %+v)", rep.MeasuredBoot.ShimEvents)
	}
	next := round(g, "next")
	if next.Level == 0 || has(next, "revoked-module", "vp_rev") {
		t.Errorf("boot 2: level %d, want above 0: the revoked module no longer loads", next.Level)
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


