package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/eventlog/eventlogtest"

	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

// playBoot makes swtpm's PCRs what a measured boot of this host would
// leave: a real firmware event log into PCRs 0–9, and the IMA list's
// SHA-256 template hashes into PCR 10.
func playBoot(t *testing.T, uri string, eventLog, imaList []byte) {
	t.Helper()
	ctx := context.Background()
	e, err := tpm.Open(ctx, uri, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testtpm.ExtendEventLog(t, e, eventLog)
	testtpm.ExtendIMA(t, e, imaList)
}

// TestTPMEvidenceEndToEnd: vigil agent keys and agent evidence against a
// real swtpm holding a played measured boot, verified offline by vigil
// evidence verify; replays and a foreign AK are rejected.
func TestTPMEvidenceEndToEnd(t *testing.T) {
	sw := testtpm.Start(t)
	code, out, errs := vigil(t, "agent", "keys", "--tpm", sw.URI, "--output", "json")
	if code != 0 {
		t.Fatalf("agent keys: exit %d: %s", code, errs)
	}
	var keys struct{ EK, AK, ReportKey, EKCertificate string }
	if err := json.Unmarshal([]byte(strings.NewReplacer(`"report_key"`, `"ReportKey"`, `"ek_certificate"`, `"EKCertificate"`).Replace(out)), &keys); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(keys.AK, "PUBLIC KEY") || !strings.Contains(keys.EKCertificate, "CERTIFICATE") {
		t.Fatalf("keys %s", out)
	}
	// Idempotent: the same keys on the second run.
	if _, again, _ := vigil(t, "agent", "keys", "--tpm", sw.URI, "--output", "json"); again != out {
		t.Errorf("agent keys changed between runs:\n%s\n%s", out, again)
	}
	work := t.TempDir()
	// The EK certificate chains to swtpm-localca's CAs, and not to another CA.
	cas := filepath.Join(work, "ek-cas.pem")
	var pemCAs []byte
	for _, c := range append(sw.Roots, sw.Intermediates...) {
		pemCAs = append(pemCAs, testpki.CertPEMOf(c)...)
	}
	os.WriteFile(cas, pemCAs, 0o644)
	if code, text, errs := vigil(t, "agent", "keys", "--tpm", sw.URI, "--ek-roots", cas); code != 0 || !strings.Contains(text, "EK certificate chains to") {
		t.Errorf("ek-roots: exit %d %s %s", code, text, errs)
	}
	wrong := filepath.Join(work, "wrong.pem")
	os.WriteFile(wrong, testpki.NewRoot(testpki.Options{}).CertPEM(), 0o644)
	if code, text, _ := vigil(t, "agent", "keys", "--tpm", sw.URI, "--ek-roots", wrong); code != 1 || !strings.Contains(text, "NOT verified") {
		t.Errorf("wrong ek-roots: exit %d %s", code, text)
	}
	akFile := filepath.Join(work, "ak.pem")
	os.WriteFile(akFile, []byte(keys.AK), 0o644)

	boot := eventlogtest.Debian()
	logBytes, err := boot.Log(), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	host := testhost.Base()
	host.EventLog = logBytes
	imaList := imatest.Boot(200, boot.BootPCRs())
	host.Files[testhost.IMAListPath] = imaList
	dir := host.WriteDir(t)
	playBoot(t, sw.URI, logBytes, imaList)

	code, evJSON, errs := vigil(t, "agent", "evidence", "--tpm", sw.URI, "--nonce", nonceHex, "--root", dir, "--no-verify", "--with-ek")
	if code != 0 {
		t.Fatalf("agent evidence: exit %d: %s", code, errs)
	}
	var ev evidence.Evidence
	if err := json.Unmarshal([]byte(evJSON), &ev); err != nil || ev.EK == nil || len(ev.EKCert) == 0 || ev.Quote == nil {
		t.Fatalf("evidence lacks ek, ek_cert or quote (%v)", err)
	}
	evFile := filepath.Join(work, "evidence.json")
	os.WriteFile(evFile, []byte(evJSON), 0o644)
	if len(evJSON) > 1<<20 {
		t.Errorf("evidence of %d bytes", len(evJSON))
	}
	code, res, errs := vigil(t, "evidence", "verify", "--ak", akFile, "--nonce", nonceHex, "--output", "json", evFile)
	var r evidence.Result
	if err := json.Unmarshal([]byte(res), &r); err != nil {
		t.Fatalf("%v: %s %s", err, res, errs)
	}
	if code != 0 || !r.Valid || r.Enclave != "tpm" || !r.EventLogVerified || !r.IMAVerified {
		t.Fatalf("verify: exit %d, %s", code, res)
	}

	// Without logs, evidence stays small (the 64 KiB bound).
	code, small, errs := vigil(t, "agent", "evidence", "--tpm", sw.URI, "--nonce", nonceHex, "--root", dir, "--no-verify", "--no-logs")
	if code != 0 || len(small) >= 64<<10 {
		t.Errorf("evidence without logs: exit %d, %d bytes (%s)", code, len(small), errs)
	}
	t.Logf("evidence: %d bytes with logs and EK, %d without logs", len(evJSON), len(small))

	// The same evidence for another challenge: a replay.
	code, text, _ := vigil(t, "evidence", "verify", "--ak", akFile, "--nonce", "ffeeddccbbaa99887766554433221100", evFile)
	if code != 1 || !strings.Contains(text, "nonce-mismatch") {
		t.Errorf("replayed nonce: exit %d %s", code, text)
	}
	// Another TPM's AK enrolled for this agent.
	other := testtpm.StartWith(t, testtpm.Options{Fresh: true})
	_, otherKeys, _ := vigil(t, "agent", "keys", "--tpm", other.URI, "--output", "json")
	var ok2 struct{ AK string }
	json.Unmarshal([]byte(otherKeys), &ok2)
	otherAK := filepath.Join(work, "other-ak.pem")
	os.WriteFile(otherAK, []byte(ok2.AK), 0o644)
	code, text, _ = vigil(t, "evidence", "verify", "--ak", otherAK, "--nonce", nonceHex, evFile)
	if code != 1 || !strings.Contains(text, "ak-mismatch") {
		t.Errorf("foreign AK: exit %d %s", code, text)
	}
	// No AK at all.
	code, text, _ = vigil(t, "evidence", "verify", "--nonce", nonceHex, evFile)
	if code != 1 || !strings.Contains(text, "ak-unknown") {
		t.Errorf("no AK: exit %d %s", code, text)
	}
}
