package testvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/verdict"
)

// attestInit is /init of the attesting guest: modules, the share, eth0
// on the restricted user network (10.0.2.100 is the host's service,
// nothing else is reachable), then the stock agent enrolls, activates
// its credential with the guest TPM and attests once.
const attestInit = initPrologue + `ip addr add 10.0.2.15/24 dev eth0 || echo VIGIL-NO-NET
ip link set eth0 up || echo VIGIL-NO-NET
mkdir -p /tmp/vigil
/bin/vigil agent run --server "$(cat /mnt/server)" --tpm /dev/tpmrm0 --report-ca /mnt/ca.pem --kernel /mnt/vmlinuz \
	--state-dir /tmp/vigil --once -o json >/mnt/attest.json 2>/mnt/attest.err
echo $? >/mnt/attest.rc
cp /sys/kernel/security/tpm0/binary_bios_measurements /mnt/binary_bios_measurements
dmesg >/mnt/dmesg
sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// level4Reasons are the failures a stock Debian kernel booted with
// lockdown=integrity and no reference values is expected to have: each
// caps the result below level 4 only.
var level4Reasons = map[string]bool{
	"lockdown-below-confidentiality": true,
	"no-reference-values":            true,
}

// TestRealAttest boots the real signed chain and lets the guest's stock
// agent attest over the network to a service on the host, with the
// guest's swtpm EK chaining to the swtpm-localca roots the service
// trusts. The result must be level 3 (measured and enforced): Secure
// Boot, the event log verified against the quoted PCRs, lockdown and
// signature enforcement, with only level-4 findings.
func TestRealAttest(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boot: about 60 s under TCG")
	}
	p := Require(t)
	t0 := time.Now()
	work := t.TempDir()
	share := filepath.Join(work, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	vigil, err := os.ReadFile(Vigil(t))
	if err != nil {
		t.Fatal(err)
	}
	tpm := testtpm.Start(t)
	tpm.Stop()
	svc := testserver.Start(t, testserver.Options{EKRoots: tpm.Roots, EKIntermediates: tpm.Intermediates, Policies: vmPolicy(t, p)})
	u, err := url.Parse(svc.URL)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := ForwardTo(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	guestAddr := fwd.Guest
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(share, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("server", []byte("http://"+guestAddr+"\n"))
	// The booted kernel, as /boot/vmlinuz-RELEASE on an installed host:
	// its built-in keys sign the modules.
	kernel, err := os.ReadFile(p.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	write("vmlinuz", kernel)
	write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svc.CA.Raw}))

	initrd := filepath.Join(work, "initrd.img")
	err = BuildInitramfs(p, Initramfs{
		Init:    attestInit,
		Modules: []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p", "e1000"},
		Files:   []File{{Path: "bin/vigil", Mode: 0o755, Data: vigil}},
	}, initrd)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(work, "disk.img")
	if err := BuildDisk(context.Background(), p, ESP{GrubCfg: grubCfg, Initrd: initrd}, disk); err != nil {
		t.Fatal(err)
	}
	t.Logf("images built in %s", time.Since(t0).Round(100*time.Millisecond))

	res, err := Run(context.Background(), p, Boot{
		Disk: disk, TPMState: tpm.StateDir, Share: share, Timeout: 110 * time.Second,
		Forwards: []Forward{fwd},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot: %s from power-on to power-off", res.Elapsed.Round(100*time.Millisecond))
	if keep := os.Getenv("VIGIL_TESTVM_KEEP"); keep != "" {
		os.WriteFile(filepath.Join(share, "serial.log"), []byte(res.Serial), 0o644)
		if out, err := exec.Command("cp", "-r", share, keep).CombinedOutput(); err != nil {
			t.Logf("keep: %v: %s", err, out)
		}
	}
	if !strings.Contains(res.Serial, "VIGIL-INIT-DONE") {
		t.Fatalf("the guest's /init did not finish; serial tail:\n%s", lastLines(res.Serial, 30))
	}
	for _, bad := range []string{"VIGIL-INSMOD-FAILED", "VIGIL-NO-SHARE", "VIGIL-NO-NET"} {
		if i := strings.Index(res.Serial, bad); i >= 0 {
			t.Errorf("guest: %s", lastLines(res.Serial[:min(len(res.Serial), i+200)], 3))
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(share, name))
		if err != nil {
			t.Fatalf("guest output: %v", err)
		}
		return string(b)
	}
	rc := strings.TrimSpace(read("attest.rc"))
	var out struct {
		AgentID    string            `json:"agent_id"`
		Enrollment string            `json:"enrollment"`
		Level      int               `json:"level"`
		Status     string            `json:"status"`
		Token      string            `json:"token"`
		Failures   []verdict.Failure `json:"failures"`
		Code       string            `json:"code"`
		Detail     string            `json:"detail"`
	}
	if err := json.Unmarshal([]byte(read("attest.json")), &out); err != nil {
		t.Fatalf("vigil agent run --once exited %s, output %q: %v; stderr: %s", rc, read("attest.json"), err, read("attest.err"))
	}
	for _, f := range out.Failures {
		t.Logf("failure: level %d %s %s (%s): %s", f.Level, f.Reason, f.Claim, f.Provenance, f.Detail)
	}
	if rc != "0" {
		t.Fatalf("vigil agent run --once exited %s: enrollment %s code %s %s; stderr: %s", rc, out.Enrollment, out.Code, out.Detail, read("attest.err"))
	}
	t.Logf("agent %s: enrollment %s, level %d, status %s", out.AgentID, out.Enrollment, out.Level, out.Status)
	if out.Enrollment != "approved" || !strings.HasPrefix(out.AgentID, "tpm-") {
		t.Errorf("agent %q enrollment %q, want an approved TPM agent", out.AgentID, out.Enrollment)
	}
	if out.Level != 3 {
		t.Errorf("level %d (%s), want 3 (measured-and-enforced)", out.Level, out.Status)
	}
	for _, f := range out.Failures {
		if f.Level < 4 || !level4Reasons[f.Reason] {
			t.Errorf("failure below level 4 or unexpected: level %d %s %s: %s", f.Level, f.Reason, f.Claim, f.Detail)
		}
	}

	// The session report verifies against the service CA and says the same.
	v, err := ear.Verify(out.Token, svc.CAPool, time.Now())
	if err != nil {
		t.Fatalf("session report: %v", err)
	}
	if v.Claims.AgentID != out.AgentID || v.Claims.Level != out.Level || v.Claims.EKSHA256 == "" {
		t.Errorf("session report: agent %q level %d ek %q; output: agent %q level %d", v.Claims.AgentID, v.Claims.Level, v.Claims.EKSHA256, out.AgentID, out.Level)
	}
	// The stored result: the event log was verified against the quote.
	rs, err := svc.Store.Results(t.Context(), out.AgentID, 10)
	if err != nil || len(rs) != 1 {
		t.Fatalf("stored results: %d, %v", len(rs), err)
	}
	var stored []verdict.Failure
	if err := json.Unmarshal(rs[0].Failures, &stored); err != nil {
		t.Fatalf("stored failures: %v", err)
	}
	if rs[0].Level != out.Level || rs[0].Token != out.Token {
		t.Errorf("stored result level %d, token same %v; output level %d", rs[0].Level, rs[0].Token == out.Token, out.Level)
	}
	for _, f := range stored {
		if f.Reason == "event-log-not-verified" {
			t.Errorf("stored result: %s: %s", f.Reason, f.Detail)
		}
	}
	t.Logf("total %s", time.Since(t0).Round(100*time.Millisecond))
}

// vmPolicy is the default attestation policy with the reference values an
// operator of this VM gives it (docs/real-hosts.md):
//   - Debian's shim copies its vendor certificate, the Debian Secure Boot
//     CA, into MokListRT and logs grub's verification under the authority
//     name "MokListRT" (not "Shim", as older shims do), so the policy cannot
//     tell it from an enrolled MOK: it is listed in mok_certificates;
//   - OVMF_VARS_4M.ms.fd ships a placeholder dbx (the SHA-256 of nothing),
//     which revokes nothing: this VM has no dbx update to require, so
//     min_entries is 0.
func vmPolicy(t *testing.T, parts Parts) *appraise.Policies {
	t.Helper()
	return vmPolicyRef(t, parts, nil)
}

// vmPolicyRef is vmPolicy with bootBinaries (Authenticode SHA-256, hex)
// as reference.boot_binaries.
func vmPolicyRef(t *testing.T, parts Parts, bootBinaries []string) *appraise.Policies {
	t.Helper()
	ca := testpki.EmbeddedCert(t, parts.Shim, "Debian Secure Boot CA")
	sum := sha256.Sum256(ca.Raw)
	dir := filepath.Join(t.TempDir(), "vm-policy")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"levels.rego", "trust.rego"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "appraise", "policy", "default", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	boot, err := json.Marshal(append([]string{}, bootBinaries...))
	if err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf(`{"version": "vm-1", "reference": {"dbx": {"min_entries": 0, "required_sha256": []}, "boot_binaries": %s, "mok_certificates": [%q], "module_signers": [], "code_policies": []}}`, boot, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := appraise.LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
