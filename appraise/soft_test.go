package appraise_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/veraison/ear"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/testhost"
)

// TestSoftware: software evidence of real fixture trees, measured with
// the code-integrity engine, judged by the default policy.
func TestSoftware(t *testing.T) {
	revokeLeaf := fmt.Sprintf("revocations:\n  - tbs_sha256: %x\n", sha256Raw(pki.Leaf.Cert.RawTBSCertificate))
	cases := []struct {
		name    string
		mutate  func(h *testhost.Host)
		policy  string // code-integrity policy of the agent
		level   int
		reasons map[string]int // failure reason → level that must be present
		absent  []string       // failure reasons that must not be present
	}{
		{name: "healthy", level: 1,
			reasons: map[string]int{"software-enclave": 2, "event-log-not-verified": 3},
			absent:  []string{"sig-enforce-off", "lockdown-below-integrity", "secure-boot-off", "unsigned-module", "dbx-outdated"}},
		{name: "hidden module", level: 0,
			mutate: func(h *testhost.Host) {
				h.Modules = append(h.Modules, testhost.Module{Name: "diamorphine", Size: 8192, Hide: []string{"proc_modules"}})
			},
			reasons: map[string]int{"hidden-module": 1}},
		{name: "revoked module signer", level: 0, policy: revokeLeaf,
			reasons: map[string]int{"revoked-module": 1, "module-not-allowed": 4}},
		{name: "block-listed module", level: 0,
			mutate: func(h *testhost.Host) {
				h.Modules = append(h.Modules, testhost.Module{Name: "evil", Size: 4096, File: signedModule(t, "evil")})
			},
			policy:  "deny:\n  sha256: [" + sha256hex(signedModule(t, "evil")) + "]\n",
			reasons: map[string]int{"blocklisted-module": 1}},
		{name: "lockdown none", level: 1,
			mutate:  func(h *testhost.Host) { h.Lockdown = "[none] integrity confidentiality" },
			reasons: map[string]int{"lockdown-below-integrity": 3},
			absent:  []string{"lockdown-below-confidentiality"}},
		{name: "unsigned module, sig_enforce off", level: 1,
			mutate: func(h *testhost.Host) {
				h.SigEnforce = "N"
				h.Cmdline = "BOOT_IMAGE=/boot/vmlinuz ro"
				h.Modules = append(h.Modules, testhost.Module{Name: "out_of_tree", Size: 4096, Taint: "OE", File: []byte("\x7fELF unsigned")})
			},
			reasons: map[string]int{"sig-enforce-off": 3, "unsigned-module": 3, "module-not-allowed": 4}},
		{name: "secure boot off", level: 1,
			mutate: func(h *testhost.Host) {
				if err := h.SetSecureBoot(false, nil, 0); err != nil {
					t.Fatal(err)
				}
			},
			reasons: map[string]int{"secure-boot-off": 3, "dbx-outdated": 3}},
	}
	a := defaultAppraiser(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := healthyHost(t)
			if c.mutate != nil {
				c.mutate(h)
			}
			e := newSoft(t)
			ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, h, engine(t, c.policy))})
			out := appraiseOK(t, a, &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev})
			if out.Level != c.level {
				t.Errorf("level %d, want %d; failures:\n%s", out.Level, c.level, failureSet(out))
			}
			for r, l := range c.reasons {
				if !hasFailure(out, r, l) {
					t.Errorf("no failure %s at level %d; failures:\n%s", r, l, failureSet(out))
				}
			}
			for _, r := range c.absent {
				for _, f := range out.Failures {
					if f.Reason == r {
						t.Errorf("unexpected failure %+v", f)
					}
				}
			}
			if out.Status != appraise.StatusOf(c.level) || !out.Verification.Valid || out.ReportKey == nil || out.State == nil {
				t.Errorf("status %s, verification %+v", out.Status, out.Verification)
			}
			if out.TrustVector["instance-identity"] != int(ear.TrustworthyInstanceClaim) ||
				out.TrustVector["storage-opaque"] != int(ear.SwKeysEncryptedSecretsClaim) {
				t.Errorf("trust vector %v", out.TrustVector)
			}
			if _, ok := out.TrustVector["hardware"]; ok {
				t.Errorf("software evidence with a hardware claim: %v", out.TrustVector)
			}
			if c.level == 0 && out.TrustVector["executables"] != int(ear.ContraindicatedRuntimeClaim) {
				t.Errorf("contraindicated, executables %d", out.TrustVector["executables"])
			}
			if out.PolicyID != appraise.DefaultID || out.PolicyDigest == "" || out.ContentVersion == "" {
				t.Errorf("policy %q %q %q", out.PolicyID, out.PolicyDigest, out.ContentVersion)
			}
		})
	}
}

// TestSoftwareRejected: invalid software evidence is level 0 with the
// reason code, and never updates the replay state.
func TestSoftwareRejected(t *testing.T) {
	a := defaultAppraiser(t)
	e := newSoft(t)
	report := measureHost(t, healthyHost(t), engine(t, ""))
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report})
	relabelled := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: report})
	relabelled.Enclave = "tpm"
	cases := []struct {
		name   string
		req    appraise.Request
		reason string
	}{
		{"wrong nonce", appraise.Request{Agent: softAgent(e), Nonce: otherNonce, Evidence: ev}, "nonce-mismatch"},
		{"another software key", appraise.Request{Agent: softAgent(newSoft(t)), Nonce: nonce, Evidence: ev}, string(appraise.ReportKeyUnknown)},
		{"no enrolled report key", appraise.Request{Agent: appraise.Agent{ID: "x", Enclave: "software"}, Nonce: nonce, Evidence: ev}, string(appraise.ReportKeyUnknown)},
		{"software key claiming a TPM", appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: relabelled}, "enclave-mismatch"},
		{"software evidence for a TPM agent", appraise.Request{Agent: appraise.Agent{ID: "x", Enclave: "tpm"}, Nonce: nonce, Evidence: ev}, "enclave-mismatch"},
		{"no evidence", appraise.Request{Agent: softAgent(e), Nonce: nonce}, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := appraiseOK(t, a, &c.req)
			if out.Level != 0 || out.Status != "contraindicated" || !hasFailure(out, c.reason, 1) {
				t.Fatalf("level %d %s, failures:\n%s", out.Level, out.Status, failureSet(out))
			}
			if out.State != nil || out.ReportKey != nil || out.Verification.Valid {
				t.Errorf("invalid evidence yields state %q, report key %v", out.State, out.ReportKey)
			}
			if tv := out.TrustVector["instance-identity"]; tv < int(ear.UntrustworthyInstanceClaim) {
				t.Errorf("instance-identity %d", tv)
			}
		})
	}
	if _, err := a.Appraise(context.Background(), &appraise.Request{Agent: appraise.Agent{ID: "x"}, Nonce: nonce, Evidence: ev}); err == nil {
		t.Error("an agent with no enrolled enclave kind appraised")
	}
}
