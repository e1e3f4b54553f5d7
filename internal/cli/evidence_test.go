package cli_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/testhost"
)

const nonceHex = "00112233445566778899aabbccddeeff"

// TestSoftwareEvidenceRoundTrip: agent evidence --soft on a fixture host,
// verified offline; a wrong nonce and a changed report are rejected with
// their reasons.
func TestSoftwareEvidenceRoundTrip(t *testing.T) {
	dir := testhost.Base().WriteDir(t)
	key := filepath.Join(t.TempDir(), "agent.key")
	code, out, errs := vigil(t, "agent", "evidence", "--soft", key, "--nonce", nonceHex, "--root", dir, "--no-verify")
	if code != 0 {
		t.Fatalf("agent evidence: exit %d: %s", code, errs)
	}
	evFile := filepath.Join(t.TempDir(), "evidence.json")
	os.WriteFile(evFile, []byte(out), 0o644)
	var ev evidence.Evidence
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.Enclave != "software" || ev.Quote != nil || ev.AK != nil {
		t.Fatalf("evidence %+v (%v)", ev, err)
	}
	code, res, errs := vigil(t, "evidence", "verify", "--nonce", nonceHex, "--output", "json", evFile)
	if code != 0 {
		t.Fatalf("verify: exit %d %s %s", code, res, errs)
	}
	var r evidence.Result
	if err := json.Unmarshal([]byte(res), &r); err != nil || !r.Valid || r.Enclave != "software" {
		t.Fatalf("result %s (%v)", res, err)
	}

	code, text, _ := vigil(t, "evidence", "verify", "--nonce", "ffeeddccbbaa99887766554433221100", evFile)
	if code != 1 || !strings.Contains(text, "nonce-mismatch") {
		t.Errorf("wrong nonce: exit %d %s", code, text)
	}
	// A report changed after signing.
	var raw map[string]any
	json.Unmarshal([]byte(out), &raw)
	rep, _ := base64.StdEncoding.DecodeString(raw["report"].(string))
	rep = []byte(strings.Replace(string(rep), `"hostname":"web-01"`, `"hostname":"web-02"`, 1))
	raw["report"] = base64.StdEncoding.EncodeToString(rep)
	b, _ := json.Marshal(raw)
	os.WriteFile(evFile, b, 0o644)
	code, text, _ = vigil(t, "evidence", "verify", "--nonce", nonceHex, evFile)
	if code != 1 || !strings.Contains(text, "bad-report-signature") {
		t.Errorf("changed report: exit %d %s", code, text)
	}
	for _, args := range [][]string{
		{"agent", "evidence", "--soft", key, "--nonce", "zz", "--root", dir},
		{"agent", "evidence", "--nonce", nonceHex, "--root", dir},
		{"agent", "evidence", "--soft", key, "--tpm", "unix:///nope", "--nonce", nonceHex},
		{"agent", "evidence", "--soft", key, "--nonce", nonceHex, "--pcrs", "sha256:0-99"},
		{"evidence", "verify", "--nonce", nonceHex, filepath.Join(dir, "missing.json")},
	} {
		if code, _, _ := vigil(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
