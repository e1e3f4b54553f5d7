package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/eventlog/eventlogtest"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testtpm"
)

// TestPolicyTestSoftware: vigil policy test on software evidence made by
// vigil agent evidence: level 1 under the default policy, the exit code
// follows --min-level, and a custom policy directory, a wrong nonce and a
// broken policy behave as documented.
func TestPolicyTestSoftware(t *testing.T) {
	dir := testhost.Base().WriteDir(t)
	work := t.TempDir()
	key := filepath.Join(work, "agent.key")
	code, ev, errs := vigil(t, "agent", "evidence", "--soft", key, "--nonce", nonceHex, "--root", dir, "--no-verify")
	if code != 0 {
		t.Fatalf("agent evidence: exit %d: %s", code, errs)
	}
	evFile := filepath.Join(work, "evidence.json")
	os.WriteFile(evFile, []byte(ev), 0o644)

	code, out, errs := vigil(t, "policy", "test", evFile)
	if code != 0 || !strings.Contains(out, "level 1 (software-rooted), status warning") ||
		!strings.Contains(out, "level 2  software-enclave  evidence.enclave") || !strings.Contains(errs, "own nonce") {
		t.Errorf("default policy: exit %d\n%s%s", code, out, errs)
	}
	if code, _, _ := vigil(t, "policy", "test", "--min-level", "2", evFile); code != 1 {
		t.Errorf("--min-level 2: exit %d, want 1", code)
	}
	code, js, _ := vigil(t, "policy", "test", "--nonce", nonceHex, "-o", "json", evFile)
	var o appraise.Outcome
	if err := json.Unmarshal([]byte(js), &o); err != nil || code != 0 || o.Level != 1 || o.Status != "warning" ||
		o.PolicyID != "default" || o.TrustVector["instance-identity"] != 2 || len(o.Failures) == 0 {
		t.Errorf("json: exit %d, %v\n%s", code, err, js)
	}
	code, out, _ = vigil(t, "policy", "test", "--nonce", "ffeeddccbbaa99887766554433221100", evFile)
	if code != 1 || !strings.Contains(out, "level 0 (untrusted)") || !strings.Contains(out, "nonce-mismatch") {
		t.Errorf("wrong nonce: exit %d\n%s", code, out)
	}

	pol := filepath.Join(work, "strict")
	os.Mkdir(pol, 0o755)
	os.WriteFile(filepath.Join(pol, "p.rego"), []byte(`package vigil.appraisal

result := {"level": 0, "failures": [{"claim": "report.kernel.hostname", "reason": "host-banned", "level": 1, "detail": input.report.kernel.hostname}], "trust_vector": {}} if input.evidence.valid

result := {"level": 0, "failures": [], "trust_vector": {}} if not input.evidence.valid
`), 0o644)
	os.WriteFile(filepath.Join(pol, "data.json"), []byte(`{"version": "strict-7"}`), 0o644)
	code, out, _ = vigil(t, "policy", "test", "--policy", pol, "--min-level", "0", evFile)
	if code != 0 || !strings.Contains(out, "level 0 (untrusted)") || !strings.Contains(out, "host-banned") ||
		!strings.Contains(out, "(web-01)") || !strings.Contains(out, "policy strict sha256:") || !strings.Contains(out, "content strict-7") {
		t.Errorf("custom policy: exit %d\n%s", code, out)
	}

	broken := filepath.Join(work, "broken")
	os.Mkdir(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "p.rego"), []byte("package vigil.appraisal\nresult := {"), 0o644)
	notEvidence := filepath.Join(work, "not-evidence.json")
	os.WriteFile(notEvidence, []byte(`{"version":"vigil.evidence.v1","surprise":1}`), 0o644)
	for _, args := range [][]string{
		{"policy", "test", "--policy", broken, evFile},
		{"policy", "test", "--policy", filepath.Join(work, "missing"), evFile},
		{"policy", "test", filepath.Join(work, "missing.json")},
		{"policy", "test", notEvidence},
		{"policy", "test", "--nonce", "zz", evFile},
		{"policy", "test", "--min-level", "5", evFile},
		{"policy", "test", "-o", "yaml", evFile},
		{"policy", "test", "--enrolled-ak", filepath.Join(work, "missing.pem"), evFile},
		{"policy", "test"},
	} {
		if code, _, _ := vigil(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := vigil(t, "policy", "test", "--help"); code != 0 || !strings.Contains(out, "Usage:") {
		t.Errorf("--help: exit %d", code)
	}
}

// TestPolicyTestTPM: TPM evidence from swtpm with a played real boot:
// level 2 on the fixture host (Secure Boot off), the same with its AK
// given as --enrolled-ak, and level 0 (ak-mismatch) with another TPM's.
func TestPolicyTestTPM(t *testing.T) {
	sw := testtpm.Start(t)
	work := t.TempDir()
	code, keys, errs := vigil(t, "agent", "keys", "--tpm", sw.URI, "--output", "json")
	if code != 0 {
		t.Fatalf("agent keys: exit %d: %s", code, errs)
	}
	var k struct {
		AK string `json:"ak"`
	}
	json.Unmarshal([]byte(keys), &k)
	akFile := filepath.Join(work, "ak.pem")
	os.WriteFile(akFile, []byte(k.AK), 0o644)

	boot := eventlogtest.Debian()
	logBytes, err := boot.Log(), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	host := testhost.Base()
	host.EventLog = logBytes
	list := imatest.Boot(50, boot.BootPCRs())
	host.Files[testhost.IMAListPath] = list
	dir := host.WriteDir(t)
	playBoot(t, sw.URI, logBytes, list)
	code, ev, errs := vigil(t, "agent", "evidence", "--tpm", sw.URI, "--nonce", nonceHex, "--root", dir, "--no-verify")
	if code != 0 {
		t.Fatalf("agent evidence: exit %d: %s", code, errs)
	}
	evFile := filepath.Join(work, "evidence.json")
	os.WriteFile(evFile, []byte(ev), 0o644)

	for _, args := range [][]string{
		{"policy", "test", evFile},
		{"policy", "test", "--enrolled-ak", akFile, "--nonce", nonceHex, evFile},
	} {
		code, out, errs := vigil(t, args...)
		// Secure Boot is the verified event log's (on), not the host's
		// (no EFI variables).
		if code != 0 || !strings.Contains(out, "level 3 (measured-and-enforced), status affirming") ||
			!strings.Contains(out, "evidence valid (tpm), event log verified true, IMA verified true") ||
			strings.Contains(out, "secure-boot-off") || !strings.Contains(out, "hardware=2") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
	other := testtpm.StartWith(t, testtpm.Options{Fresh: true})
	_, otherKeys, _ := vigil(t, "agent", "keys", "--tpm", other.URI, "--output", "json")
	json.Unmarshal([]byte(otherKeys), &k)
	otherAK := filepath.Join(work, "other-ak.pem")
	os.WriteFile(otherAK, []byte(k.AK), 0o644)
	code, out, _ := vigil(t, "policy", "test", "--enrolled-ak", otherAK, evFile)
	if code != 1 || !strings.Contains(out, "level 0 (untrusted)") || !strings.Contains(out, "ak-mismatch") {
		t.Errorf("foreign AK: exit %d\n%s", code, out)
	}
}
