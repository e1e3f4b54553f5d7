# Vigil's default appraisal policy: the security levels of the product
# brief (docs/policy.md, "Attestation policy").
#
#   0 untrusted              invalid evidence, or a contraindicated claim
#   1 software-rooted        valid evidence from a software key, runtime claims pass
#   2 hardware-rooted        valid TPM evidence (AK enrolled by credential activation)
#   3 measured and enforced  + verified boot log, Secure Boot with a current dbx,
#                              sig_enforce, lockdown >= integrity, no unsigned or
#                              force-loaded module
#   4 hardened               + lockdown confidentiality, IMA verified, no kernel
#                              debugging, every module allowed by a trusted signer,
#                              boot binaries match the reference values
#
# Every failing claim is a failure {claim, reason, level, detail}: level is
# the level it blocks, so the result is at most level-1. The result is the
# highest level no failure blocks.
#
# input.report is present only when input.evidence.valid is true, and is
# then exactly the canonical encoding of Vigil's report type: every claim
# is present with its type (a missing list is null). The rules test the
# failing value with == where they can, so that OPA's rule index skips the
# rules that cannot fire and evaluation stays cheap.
package vigil.appraisal

result := {
	"level": level,
	"failures": failures,
	"trust_vector": trust_vector,
}

level := min({4} | {l | some f in failures; l := f.level - 1})

join(xs) := concat(", ", xs) if is_array(xs)

else := ""


# ---------------------------------------------------------------- level 0
# Invalid evidence: one failure per reason code of the verification.

failures contains {"claim": "evidence.valid", "reason": r, "level": 1, "detail": ""} if {
	input.evidence.valid == false
	some r in input.evidence.reasons
}

failures contains {"claim": "evidence.valid", "reason": "evidence-invalid", "level": 1, "detail": ""} if {
	input.evidence.valid == false
	not input.evidence.reasons[0]
}

# Contraindicated claims.

failures contains {"claim": "report.modules.hidden", "reason": "hidden-module", "level": 1, "detail": sprintf("%s: seen in %s, missing from %s", [m.name, join(m.seen_in), join(m.missing_from)])} if {
	input.evidence.valid == true
	input.report.modules.hidden[0]
	some m in input.report.modules.hidden
}

failures contains {"claim": "report.modules.loaded", "reason": module_code_reason[r], "level": 1, "detail": sprintf("%s: %s", [m.name, join(m.reasons)])} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	some r in m.reasons
	module_code_reason[r]
}

# Code-integrity reason codes that contraindicate a loaded module.
module_code_reason := {
	"revoked": "revoked-module",
	"blocklisted-hash": "blocklisted-module",
	"blocklisted-signer": "blocklisted-module",
}

# A boot application the firmware started whose Authenticode hash is in the
# current dbx: revoked code ran.
failures contains {"claim": "report.measured_boot.boot_applications", "reason": "revoked-boot-binary", "level": 1, "detail": sprintf("%s %s", [app.path, app.digests.sha256])} if {
	input.evidence.valid == true
	some app in input.report.measured_boot.boot_applications
	app.digests.sha256 in input.report.secure_boot.dbx.sha256
}

failures contains {"claim": "report.processes.hidden", "reason": "hidden-process", "level": 1, "detail": sprintf("pid %d (%s)", [p.pid, p.name])} if {
	input.evidence.valid == true
	input.report.processes.hidden[0]
	some p in input.report.processes.hidden
}

failures contains {"claim": "report.processes.critical", "reason": "critical-process", "level": 1, "detail": sprintf("%s: %s", [c.name, join(c.problems)])} if {
	input.evidence.valid == true
	input.report.processes.critical[0]
	some c in input.report.processes.critical
	c.ok == false
}

# The sections the contraindications read must have been measured.
failures contains {"claim": "report.modules.status", "reason": "measurement-error", "level": 1, "detail": object.get(input.report.modules, "error", "")} if {
	input.evidence.valid == true
	input.report.modules.status == "error"
}

failures contains {"claim": "report.processes.status", "reason": "measurement-error", "level": 1, "detail": object.get(input.report.processes, "error", "")} if {
	input.evidence.valid == true
	input.report.processes.status == "error"
}

# ---------------------------------------------------------------- level 2

# (Go caps software evidence at level 1 whatever a policy says; these rules
# name the reason.)
failures contains {"claim": "evidence.enclave", "reason": "software-enclave", "level": 2, "detail": "the report key is not held by a TPM"} if {
	input.evidence.enclave == "software"
}

failures contains {"claim": "evidence.enclave", "reason": "software-enclave", "level": 2, "detail": "the agent is enrolled with a software key"} if {
	input.agent.enclave == "software"
}

tpm_rooted if {
	input.evidence.enclave == "tpm"
	input.agent.enclave == "tpm"
}

# ---------------------------------------------------------------- level 3

failures contains {"claim": "evidence.event_log_verified", "reason": "event-log-not-verified", "level": 3, "detail": "no firmware event log replayed to the quoted PCRs"} if {
	input.evidence.valid == true
	input.evidence.event_log_verified == false
}

failures contains {"claim": "report.secure_boot.status", "reason": "measurement-error", "level": 3, "detail": object.get(input.report.secure_boot, "error", "")} if {
	input.evidence.valid == true
	input.report.secure_boot.status == "error"
}

failures contains {"claim": "report.secure_boot.enabled", "reason": "secure-boot-off", "level": 3, "detail": ""} if {
	input.evidence.valid == true
	input.report.secure_boot.enabled == false
}

failures contains {"claim": "report.secure_boot.setup_mode", "reason": "secure-boot-setup-mode", "level": 3, "detail": "no platform key: the firmware checks nothing"} if {
	input.evidence.valid == true
	input.report.secure_boot.setup_mode == true
}

failures contains {"claim": "report.secure_boot.mok_sb_state", "reason": "shim-validation-disabled", "level": 3, "detail": "shim boots unsigned code"} if {
	input.evidence.valid == true
	input.report.secure_boot.mok_sb_state.validation_disabled == true
}

failures contains {"claim": "report.secure_boot.dbx", "reason": "dbx-outdated", "level": 3, "detail": "no dbx"} if {
	input.evidence.valid == true
	input.report.secure_boot.dbx == null
}

# A current dbx has at least reference.dbx.min_entries entries (1 when the
# reference sets none).
failures contains {"claim": "report.secure_boot.dbx", "reason": "dbx-outdated", "level": 3, "detail": sprintf("%d entries, the reference requires at least %d", [n, m])} if {
	input.evidence.valid == true
	n := input.report.secure_boot.dbx.entries
	m := object.get(input.reference, ["dbx", "min_entries"], 1)
	n < m
}

failures contains {"claim": "report.secure_boot.dbx", "reason": "dbx-outdated", "level": 3, "detail": sprintf("lacks %s", [h])} if {
	input.evidence.valid == true
	input.reference.dbx.required_sha256[0]
	some h in input.reference.dbx.required_sha256
	not lower(h) in input.report.secure_boot.dbx.sha256
}

failures contains {"claim": "report.enforcement.status", "reason": "measurement-error", "level": 3, "detail": object.get(input.report.enforcement, "error", "")} if {
	input.evidence.valid == true
	input.report.enforcement.status == "error"
}

failures contains {"claim": "report.enforcement.status", "reason": "measurement-error", "level": 3, "detail": object.get(input.report.enforcement, "error", "")} if {
	input.evidence.valid == true
	input.report.enforcement.status == "unavailable"
}

failures contains {"claim": "report.enforcement.sig_enforce", "reason": "sig-enforce-off", "level": 3, "detail": "the kernel loads unsigned modules"} if {
	input.evidence.valid == true
	input.report.enforcement.sig_enforce == false
}

failures contains {"claim": "report.enforcement.lockdown", "reason": "lockdown-below-integrity", "level": 3, "detail": sprintf("lockdown is %s", [input.report.enforcement.lockdown])} if {
	input.evidence.valid == true
	not input.report.enforcement.lockdown in {"integrity", "confidentiality"}
}

failures contains {"claim": "report.modules.loaded", "reason": "unsigned-module", "level": 3, "detail": m.name} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	m.signed == false
}

failures contains {"claim": "report.modules.loaded", "reason": "force-loaded-module", "level": 3, "detail": m.name} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	contains(m.taint, "F")
}

# Taint is never cleared: an unsigned (E) or forced (F) module loaded since
# boot shows there even when it was unloaded or hidden.
failures contains {"claim": "report.taint.flags", "reason": "unsigned-module", "level": 3, "detail": "kernel taint E"} if {
	input.evidence.valid == true
	"E" in input.report.taint.flags
}

failures contains {"claim": "report.taint.flags", "reason": "force-loaded-module", "level": 3, "detail": "kernel taint F"} if {
	input.evidence.valid == true
	"F" in input.report.taint.flags
}

# ---------------------------------------------------------------- level 4

failures contains {"claim": "report.enforcement.lockdown", "reason": "lockdown-below-confidentiality", "level": 4, "detail": "lockdown is integrity"} if {
	input.evidence.valid == true
	input.report.enforcement.lockdown == "integrity"
}

failures contains {"claim": "report.ima.status", "reason": "ima-inactive", "level": 4, "detail": object.get(input.report.ima, "error", "")} if {
	input.evidence.valid == true
	input.report.ima.status == "error"
}

failures contains {"claim": "report.ima.status", "reason": "ima-inactive", "level": 4, "detail": "IMA is off"} if {
	input.evidence.valid == true
	input.report.ima.status == "unavailable"
}

failures contains {"claim": "evidence.ima_verified", "reason": "ima-not-verified", "level": 4, "detail": "the IMA list does not replay to the quoted PCR 10"} if {
	input.evidence.valid == true
	input.evidence.ima_verified == false
	input.report.ima.status == "ok"
}

failures contains {"claim": "report.debug.kernel_debugging", "reason": "kernel-debugging", "level": 4, "detail": join(input.report.debug.evidence)} if {
	input.evidence.valid == true
	input.report.debug.kernel_debugging == true
}

failures contains {"claim": "report.debug.status", "reason": "measurement-error", "level": 4, "detail": object.get(input.report.debug, "error", "")} if {
	input.evidence.valid == true
	input.report.debug.status == "error"
}

failures contains {"claim": "report.modules.loaded", "reason": "module-not-allowed", "level": 4, "detail": sprintf("%s: %s", [m.name, join(m.reasons)])} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	m.allowed == false
}

module_signers := {s | some s in input.reference.module_signers}

failures contains {"claim": "report.modules.loaded", "reason": "module-signer-not-trusted", "level": 4, "detail": sprintf("%s: %s", [m.name, m.signer])} if {
	input.evidence.valid == true
	input.reference.module_signers[0]
	some m in input.report.modules.loaded
	not m.signer in module_signers
}

code_policies := {s | some s in input.reference.code_policies}

failures contains {"claim": "report.code_policy", "reason": "code-policy-unknown", "level": 4, "detail": object.get(input.report, "code_policy", "")} if {
	input.evidence.valid == true
	input.reference.code_policies[0]
	not object.get(input.report, "code_policy", "") in code_policies
}

boot_binaries := {lower(d) | some d in input.reference.boot_binaries}

failures contains {"claim": "reference.boot_binaries", "reason": "no-reference-values", "level": 4, "detail": "the policy has no boot binary reference values"} if {
	input.evidence.valid == true
	not input.reference.boot_binaries[0]
}

failures contains {"claim": "report.measured_boot.boot_applications", "reason": "boot-binary-unknown", "level": 4, "detail": sprintf("%s %s", [app.path, d])} if {
	input.evidence.valid == true
	input.reference.boot_binaries[0]
	some app in input.report.measured_boot.boot_applications
	d := object.get(app.digests, "sha256", "")
	not d in boot_binaries
}

failures contains {"claim": "report.measured_boot.boot_applications", "reason": "boot-binaries-unmeasured", "level": 4, "detail": "the event log records no boot application"} if {
	input.evidence.valid == true
	not input.report.measured_boot.boot_applications[0]
}

# The boot applications are the host's claims; they are attested only when
# the log they come from replays to the quoted PCRs: every boot PCR (0-9) the
# report's log replays must equal the quoted one.
failures contains {"claim": "report.measured_boot.pcrs", "reason": "measured-boot-not-attested", "level": 4, "detail": "the report's event log replays to other boot PCRs than the quoted ones"} if {
	input.evidence.valid == true
	logged := input.report.measured_boot.pcrs.sha256
	is_object(logged)
	not object.subset(object.get(input.evidence, ["pcrs", "sha256"], {}), object.filter(logged, boot_pcrs))
}

boot_pcrs := {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
