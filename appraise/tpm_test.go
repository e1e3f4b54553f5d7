package appraise_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/eventlog/eventlogtest"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/tpm"
)

// debianDBX is the number of dbx entries of eventlogtest.Debian().
const debianDBX = 3

func openTPM(tb testing.TB, sw *testtpm.TPM) *tpm.Enclave {
	tb.Helper()
	e, err := tpm.Open(context.Background(), sw.URI, tpm.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

func tpmAgent(e *tpm.Enclave) appraise.Agent {
	pub, ak := e.AKPublic()
	return appraise.Agent{ID: "tpm-01", Enclave: string(enclave.TPM), AK: ak, AKPublic: pub}
}

// bootedTPM is a swtpm holding a played measured boot: the event log of
// Debian's signed shim, grub and kernel under Secure Boot, extended as the
// firmware does, and an IMA list of 120 entries bound to that boot (its
// boot_aggregate) in PCR 10.
func bootedTPM(t *testing.T) (*tpm.Enclave, []byte, []byte) {
	t.Helper()
	_, e, log, list := firmwareBoot(t, eventlogtest.Debian(), 120)
	return e, log, list
}

// firmwareBoot starts a swtpm and plays boot b into it as firmware would,
// then an IMA list of n entries bound to that boot, followed by one
// load-time measurement per module path.
func firmwareBoot(t testing.TB, b eventlogtest.Boot, n int, modules ...string) (*testtpm.TPM, *tpm.Enclave, []byte, []byte) {
	t.Helper()
	sw := testtpm.Start(t)
	e := openTPM(t, sw)
	log, list := playBoot(t, e, b, n, modules...)
	return sw, e, log, list
}

// playBoot extends boot b and its IMA list into a TPM just reset.
func playBoot(t testing.TB, e *tpm.Enclave, b eventlogtest.Boot, n int, modules ...string) ([]byte, []byte) {
	t.Helper()
	log := b.Log()
	testtpm.ExtendEventLog(t, e, log)
	list := imatest.Boot(n, bootPCRs(b), modules...)
	testtpm.ExtendIMA(t, e, list)
	return log, list
}

// bootPCRs are the SHA-256 PCRs 0–9 boot b leaves.
func bootPCRs(b eventlogtest.Boot) [10][32]byte {
	var out [10][32]byte
	pcrs := b.PCRs()
	for i := range out {
		out[i] = pcrs[i]
	}
	return out
}

// TestTPM: TPM evidence from swtpm, of fixture trees measured with the
// code-integrity engine, judged by the default policy.
func TestTPM(t *testing.T) {
	e, log, list := bootedTPM(t)
	a := defaultAppraiser(t)
	cases := []struct {
		name    string
		mutate  func(h *testhost.Host)
		noLogs  bool
		level   int
		reasons map[string]int
		absent  []string
	}{
		{name: "no event log", noLogs: true, level: 2,
			reasons: map[string]int{"event-log-not-verified": 3},
			absent:  []string{"software-enclave", "lockdown-below-integrity"}},
		{name: "event log, Secure Boot, sig_enforce, lockdown integrity", level: 3,
			reasons: map[string]int{"lockdown-below-confidentiality": 4, "no-reference-values": 4},
			absent:  []string{"event-log-not-verified", "ima-not-verified", "ima-inactive", "measured-boot-not-attested", "software-enclave"}},
		// The measured command line sets lockdown=integrity: a kernel
		// that shows none contradicts it.
		{name: "lockdown none", level: 0,
			mutate:  func(h *testhost.Host) { h.Lockdown = "[none] integrity confidentiality" },
			reasons: map[string]int{"lockdown-below-integrity": 3, "lockdown-contradicted": 1}},
		{name: "hidden module", level: 0,
			mutate: func(h *testhost.Host) {
				h.Modules = append(h.Modules, testhost.Module{Name: "reptile", Size: 8192, Hide: []string{"proc_modules", "sysfs"}})
			},
			reasons: map[string]int{"hidden-module": 1}},
		{name: "force-loaded module", level: 2,
			mutate: func(h *testhost.Host) {
				h.Tainted = 1 << 1 // F
				h.Modules = append(h.Modules, testhost.Module{Name: "forced", Size: 4096, Taint: "F", File: signedModule(t, "forced")})
			},
			reasons: map[string]int{"force-loaded-module": 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := healthyHost(t)
			h.EventLog = log
			h.Files[testhost.IMAListPath] = list
			if c.mutate != nil {
				c.mutate(h)
			}
			bo := evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, h, engine(t, ""))}
			if !c.noLogs {
				bo.EventLog, bo.IMALog = log, list
			}
			ev := build(t, e, bo)
			out := appraiseOK(t, a, &appraise.Request{Agent: tpmAgent(e), Nonce: nonce, Evidence: ev})
			if out.Level != c.level || out.Status != appraise.StatusOf(c.level) {
				t.Errorf("level %d %s, want %d; failures:\n%s", out.Level, out.Status, c.level, failureSet(out))
			}
			for r, l := range c.reasons {
				if !hasFailure(out, r, l) {
					t.Errorf("no failure %s at level %d; failures:\n%s", r, l, failureSet(out))
				}
			}
			// No log is said as such, never as a log that replayed empty.
			for _, f := range out.Failures {
				if c.noLogs && f.Reason == "event-log-not-verified" && !strings.Contains(f.Detail, "has no firmware event log") {
					t.Errorf("event-log-not-verified detail %q: want it to say the evidence has no log", f.Detail)
				}
			}
			for _, r := range c.absent {
				for _, f := range out.Failures {
					if f.Reason == r {
						t.Errorf("unexpected failure %+v", f)
					}
				}
			}
			tv := out.TrustVector
			if tv["instance-identity"] != int(ear.TrustworthyInstanceClaim) || tv["hardware"] != int(ear.GenuineHardwareClaim) ||
				tv["storage-opaque"] != int(ear.HwKeysEncryptedSecretsClaim) {
				t.Errorf("trust vector %v", tv)
			}
			switch {
			case c.name == "hidden module":
				if tv["executables"] != int(ear.ContraindicatedRuntimeClaim) {
					t.Errorf("executables %d", tv["executables"])
				}
			case c.level == 3:
				if tv["executables"] != int(ear.ApprovedBootClaim) || tv["configuration"] != int(ear.NoConfigVulnsClaim) {
					t.Errorf("level 3 trust vector %v", tv)
				}
			}
			if c.name == "lockdown none" && tv["configuration"] != int(ear.UnsafeConfigClaim)+64 {
				t.Errorf("lockdown none: configuration %d", tv["configuration"])
			}
		})
	}

	t.Run("rejected", func(t *testing.T) {
		h := healthyHost(t)
		report := measureHost(t, h, engine(t, ""))
		ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report})
		other := openTPM(t, testtpm.StartWith(t, testtpm.Options{Fresh: true}))
		for _, c := range []struct {
			name   string
			req    appraise.Request
			reason string
		}{
			{"wrong nonce", appraise.Request{Agent: tpmAgent(e), Nonce: otherNonce, Evidence: ev}, "nonce-mismatch"},
			{"another TPM's AK enrolled", appraise.Request{Agent: tpmAgent(other), Nonce: nonce, Evidence: ev}, "ak-mismatch"},
			{"no AK enrolled", appraise.Request{Agent: appraise.Agent{ID: "x", Enclave: "tpm"}, Nonce: nonce, Evidence: ev}, "ak-unknown"},
			{"TPM agent downgraded to software evidence", appraise.Request{Agent: tpmAgent(e), Nonce: nonce,
				Evidence: build(t, newSoft(t), evidence.BuildOptions{Nonce: nonce, Report: report})}, "enclave-mismatch"},
			{"TPM evidence for a software agent", appraise.Request{Agent: softAgent(newSoft(t)), Nonce: nonce, Evidence: ev}, "enclave-mismatch"},
		} {
			t.Run(c.name, func(t *testing.T) {
				out := appraiseOK(t, a, &c.req)
				if out.Level != 0 || !hasFailure(out, c.reason, 1) || out.State != nil {
					t.Fatalf("level %d, state %q, failures:\n%s", out.Level, out.State, failureSet(out))
				}
			})
		}
	})
}

// TestTPMLevel4: the hardened host — lockdown confidentiality, IMA
// verified, no debugging, modules allowed — reaches level 4 once the
// policy holds the boot binaries' reference values, and not before.
func TestTPMLevel4(t *testing.T) {
	e, log, list := bootedTPM(t)
	h := healthyHost(t)
	h.Lockdown = "none integrity [confidentiality]"
	h.EventLog = log
	h.Files[testhost.IMAListPath] = list
	report := measureHost(t, h, engine(t, ""))
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report, EventLog: log, IMALog: list})
	req := &appraise.Request{Agent: tpmAgent(e), Nonce: nonce, Evidence: ev}

	out := appraiseOK(t, defaultAppraiser(t), req)
	if out.Level != 3 || !hasFailure(out, "no-reference-values", 4) || len(out.Failures) != 1 {
		t.Fatalf("without reference values: level %d\n%s", out.Level, failureSet(out))
	}

	var r measure.Report
	if err := json.Unmarshal(report, &r); err != nil {
		t.Fatal(err)
	}
	var boot []string
	for _, app := range r.MeasuredBoot.BootApplications {
		boot = append(boot, app.Digests["sha256"])
	}
	policyWith := func(t *testing.T, boot []string) *appraise.Appraiser {
		files := map[string]string{}
		for _, n := range []string{"levels.rego", "trust.rego"} {
			b, err := os.ReadFile(filepath.Join("policy", "default", n))
			if err != nil {
				t.Fatal(err)
			}
			files[n] = string(b)
		}
		data, _ := json.Marshal(map[string]any{"version": "test-4", "reference": map[string]any{
			"boot_binaries": boot, "dbx": map[string]any{"min_entries": debianDBX}}})
		files["data.json"] = string(data)
		p, err := appraise.LoadDir(context.Background(), writePolicy(t, "hardened", files))
		if err != nil {
			t.Fatal(err)
		}
		return appraise.New(p, appraise.Options{})
	}
	out = appraiseOK(t, policyWith(t, boot), req)
	if out.Level != 4 || len(out.Failures) != 0 || out.Status != "affirming" || out.ContentVersion != "test-4" {
		t.Fatalf("hardened: level %d %s\n%s", out.Level, out.ContentVersion, failureSet(out))
	}
	if tv := out.TrustVector; tv["executables"] != int(ear.ApprovedRuntimeClaim) || tv["configuration"] != int(ear.ApprovedConfigClaim) {
		t.Errorf("level 4 trust vector %v", tv)
	}
	// One boot binary the reference does not know.
	out = appraiseOK(t, policyWith(t, boot[1:]), req)
	if out.Level != 3 || !hasFailure(out, "boot-binary-unknown", 4) {
		t.Fatalf("unknown boot binary: level %d\n%s", out.Level, failureSet(out))
	}
	// Kernel debugging on, as the measured command line says.
	kgdb := eventlogtest.Debian()
	kgdb.KernelCmdline += " kgdboc=ttyS0"
	_, e2, log2, list2 := firmwareBoot(t, kgdb, 120)
	h.Cmdline = "BOOT_IMAGE=" + kgdb.KernelCmdline
	h.EventLog = log2
	h.Files[testhost.IMAListPath] = list2
	dbg := build(t, e2, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, h, engine(t, "")), EventLog: log2, IMALog: list2})
	out = appraiseOK(t, policyWith(t, boot), &appraise.Request{Agent: tpmAgent(e2), Nonce: nonce, Evidence: dbg})
	if out.Level != 3 || !hasFailure(out, "kernel-debugging", 4) {
		t.Fatalf("kgdb: level %d\n%s", out.Level, failureSet(out))
	}
}

// TestIncremental: the IMA list and the event log are sent once; later
// rounds send only the new IMA entries and no event log. A reboot (other
// boot PCRs) without a log is not verified; a list from offset 0 is
// replayed whole.
func TestIncremental(t *testing.T) {
	ctx := context.Background()
	sw := testtpm.Start(t)
	e := openTPM(t, sw)
	debian := eventlogtest.Debian()
	log := debian.Log()
	testtpm.ExtendEventLog(t, e, log)
	full := imatest.Boot(150, bootPCRs(debian))
	first := imatest.Boot(100, bootPCRs(debian))
	if !bytes.HasPrefix(full, first) {
		t.Fatal("imatest lists are not prefixes of each other")
	}
	testtpm.ExtendIMA(t, e, first)
	h := healthyHost(t)
	h.EventLog = log
	report := measureHost(t, h, engine(t, ""))
	a := defaultAppraiser(t)
	agent := tpmAgent(e)

	// Round 1: whole logs.
	out := appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce,
		Evidence: build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report, EventLog: log, IMALog: first})})
	if out.Level != 3 || !out.Verification.EventLogVerified || !out.Verification.IMAVerified {
		t.Fatalf("round 1: level %d\n%s", out.Level, failureSet(out))
	}
	off := appraise.IMAOffset(out.State)
	if off != int64(len(first)) {
		t.Fatalf("IMA offset %d, want %d", off, len(first))
	}
	if got := appraise.EventLogSHA256(out.State); got != sha256hex(log) {
		t.Fatalf("event log digest in the state %q, want %s", got, sha256hex(log))
	}
	state := out.State

	// Round 2: 50 new entries, no event log.
	testtpm.ExtendIMA(t, e, full[off:])
	ev := build(t, e, evidence.BuildOptions{Nonce: otherNonce, Report: report, IMALog: full[off:], IMAOffset: off})
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: otherNonce, Evidence: ev, State: state})
	if out.Level != 3 || !out.Verification.EventLogVerified || !out.Verification.IMAVerified {
		t.Fatalf("round 2: level %d\n%s", out.Level, failureSet(out))
	}
	if got := appraise.IMAOffset(out.State); got != int64(len(full)) {
		t.Fatalf("round 2 IMA offset %d, want %d", got, len(full))
	}
	// The same increment without the state: the offset does not fit.
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: otherNonce, Evidence: ev})
	if out.Level != 0 || !hasFailure(out, "ima-offset-mismatch", 1) {
		t.Fatalf("increment without state: level %d\n%s", out.Level, failureSet(out))
	}
	// Without the state, no event log: not verified.
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce,
		Evidence: build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report})})
	if out.Level != 2 || !hasFailure(out, "event-log-not-verified", 3) {
		t.Fatalf("no log, no state: level %d\n%s", out.Level, failureSet(out))
	}
	state2 := appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: otherNonce, Evidence: ev, State: state}).State

	// Round 3: nothing new — neither log sent, both reused.
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce, State: state2,
		Evidence: build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report})})
	if out.Level != 3 || !out.Verification.EventLogVerified || !out.Verification.IMAVerified {
		t.Fatalf("round 3: level %d\n%s", out.Level, failureSet(out))
	}

	// Reboot: PCRs back to zero, and another boot chain (a second log).
	sw.Restart()
	e2 := openTPM(t, sw)
	// Another kernel: another boot chain.
	otherBoot := eventlogtest.Debian()
	otherBoot.Apps[2].SHA256 = bytes.Repeat([]byte{0x61}, 32)
	other := otherBoot.Log()
	testtpm.ExtendEventLog(t, e2, other)
	first = imatest.Boot(100, bootPCRs(otherBoot))
	testtpm.ExtendIMA(t, e2, first)
	h2 := healthyHost(t)
	h2.EventLog = other
	report2 := measureHost(t, h2, engine(t, ""))
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce, State: state2,
		Evidence: build(t, e2, evidence.BuildOptions{Nonce: nonce, Report: report2, IMALog: first})})
	if out.Level != 2 || out.Verification.EventLogVerified || !hasFailure(out, "event-log-not-verified", 3) {
		t.Fatalf("reboot without a log: level %d\n%s", out.Level, failureSet(out))
	}
	if !out.Verification.IMAVerified || appraise.IMAOffset(out.State) != int64(len(first)) {
		t.Fatalf("IMA list from 0 after reboot not replayed whole: %v", out.Verification)
	}
	// The new boot's log: verified again, and remembered.
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce, State: out.State,
		Evidence: build(t, e2, evidence.BuildOptions{Nonce: nonce, Report: report2, EventLog: other})})
	if out.Level != 3 || !out.Verification.EventLogVerified {
		t.Fatalf("reboot with its log: level %d\n%s", out.Level, failureSet(out))
	}
	// The old boot's log no longer replays to the quoted PCRs.
	out = appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce, State: state2,
		Evidence: build(t, e2, evidence.BuildOptions{Nonce: nonce, Report: report2, EventLog: log})})
	if out.Level != 0 || !hasFailure(out, "event-log-mismatch", 1) {
		t.Fatalf("old log after reboot: level %d\n%s", out.Level, failureSet(out))
	}

	// Reuse is visible to the policy as input.evidence.event_log_reused.
	dir := writePolicy(t, "reuse", map[string]string{"p.rego": `package vigil.appraisal

result := {"level": 2, "failures": [], "trust_vector": {}} if input.evidence.event_log_reused == true

result := {"level": 1, "failures": [], "trust_vector": {}} if not input.evidence.event_log_reused
`})
	p, err := appraise.LoadDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	ra := appraise.New(p, appraise.Options{})
	st := appraiseOK(t, ra, &appraise.Request{Agent: agent, Nonce: nonce,
		Evidence: build(t, e2, evidence.BuildOptions{Nonce: nonce, Report: report2, EventLog: other})}).State
	if !strings.Contains(string(st), `"boot"`) {
		t.Fatalf("state %s", st)
	}
	out = appraiseOK(t, ra, &appraise.Request{Agent: agent, Nonce: nonce, State: st,
		Evidence: build(t, e2, evidence.BuildOptions{Nonce: nonce, Report: report2})})
	if out.Level != 2 {
		t.Fatalf("event_log_reused not set: level %d", out.Level)
	}
}
