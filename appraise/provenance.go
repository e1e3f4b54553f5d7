package appraise

import (
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/measure"
)

// Provenance tiers (docs/threat-model.md).
const (
	ProvenanceAttested     = string(evidence.ProvenanceAttested)
	ProvenanceCorroborated = string(evidence.ProvenanceCorroborated)
	ProvenanceAsserted     = string(evidence.ProvenanceAsserted)
)

// ProvenanceClaims are the claims Provenance names.
var ProvenanceClaims = []string{"secure_boot", "dbx", "boot_binaries", "kernel_cmdline", "sig_enforce", "lockdown", "modules", "ima", "taint", "processes", "debug"}

// provenanceOf says, for each claim the levels rest on, who vouches for
// it: a property of what the verifier proved, not a policy's judgement.
// The policy reads it as input.provenance, and its result may override
// an entry.
//
//   - secure_boot, dbx, boot_binaries, kernel_cmdline: attested when the
//     event log verified, asserted otherwise;
//   - ima: attested when the IMA list verified;
//   - sig_enforce: corroborated when the measured command line sets
//     module.sig_enforce and the kernel reports it on;
//   - lockdown: corroborated when the highest lockdown= on the measured
//     command line is the one the kernel reports;
//   - modules: corroborated when IMA measured every loaded module at load;
//   - taint, processes, debug: asserted.
func provenanceOf(res *evidence.Result) map[string]string {
	p := make(map[string]string, len(ProvenanceClaims))
	for _, c := range ProvenanceClaims {
		p[c] = ProvenanceAsserted
	}
	boot, ima, rep := res.Attested.Boot, res.Attested.IMA, res.Report
	if boot != nil {
		p["secure_boot"], p["dbx"], p["boot_binaries"], p["kernel_cmdline"] = ProvenanceAttested, ProvenanceAttested, ProvenanceAttested, ProvenanceAttested
	}
	if res.IMAVerified {
		p["ima"] = ProvenanceAttested
	}
	if rep == nil {
		return p
	}
	if boot != nil {
		e := rep.Enforcement
		if e.Status == measure.StatusOK && boot.CmdlineSigEnforce && e.SigEnforce {
			p["sig_enforce"] = ProvenanceCorroborated
		}
		if e.Status == measure.StatusOK && boot.CmdlineLockdown != "" && e.Lockdown == boot.CmdlineLockdown {
			p["lockdown"] = ProvenanceCorroborated
		}
	}
	if ima != nil && rep.Modules.Status == measure.StatusOK && len(rep.Modules.Loaded) > 0 {
		measured := make(map[string]bool, len(ima.Modules))
		for _, m := range ima.Modules {
			measured[m] = true
		}
		all := true
		for _, m := range rep.Modules.Loaded {
			all = all && measured[m.Name]
		}
		if all {
			p["modules"] = ProvenanceCorroborated
		}
	}
	return p
}
