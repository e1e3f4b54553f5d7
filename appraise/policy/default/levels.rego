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

failure(claim, reason, lvl, detail) := {"claim": claim, "reason": reason, "level": lvl, "detail": detail}

join(xs) := concat(", ", xs) if is_array(xs)

else := ""


# ---------------------------------------------------------------- level 0
# Invalid evidence: one failure per reason code of the verification.

failures contains failure("evidence.valid", r, 1, "") if {
	input.evidence.valid == false
	some r in input.evidence.reasons
}

failures contains failure("evidence.valid", "evidence-invalid", 1, "") if {
	input.evidence.valid == false
	not input.evidence.reasons[0]
}

# Contraindicated claims.

failures contains failure("report.modules.hidden", "hidden-module", 1, sprintf("%s: seen in %s, missing from %s", [m.name, join(m.seen_in), join(m.missing_from)])) if {
	input.evidence.valid == true
	some m in input.report.modules.hidden
}

failures contains failure("report.modules.loaded", module_code_reason[r], 1, sprintf("%s: %s", [m.name, join(m.reasons)])) if {
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

dbx_hashes := {h | some h in input.report.secure_boot.dbx.sha256}

# A boot application the firmware started whose Authenticode hash is in the
# current dbx: revoked code ran.
failures contains failure("report.measured_boot.boot_applications", "revoked-boot-binary", 1, sprintf("%s %s", [app.path, app.digests.sha256])) if {
	input.evidence.valid == true
	some app in input.report.measured_boot.boot_applications
	app.digests.sha256 in dbx_hashes
}

failures contains failure("report.processes.hidden", "hidden-process", 1, sprintf("pid %d (%s)", [p.pid, p.name])) if {
	input.evidence.valid == true
	some p in input.report.processes.hidden
}

failures contains failure("report.processes.critical", "critical-process", 1, sprintf("%s: %s", [c.name, join(c.problems)])) if {
	input.evidence.valid == true
	some c in input.report.processes.critical
	c.ok == false
}

# The sections the contraindications read must have been measured.
failures contains failure("report.modules.status", "measurement-error", 1, object.get(input.report.modules, "error", "")) if {
	input.evidence.valid == true
	input.report.modules.status == "error"
}

failures contains failure("report.processes.status", "measurement-error", 1, object.get(input.report.processes, "error", "")) if {
	input.evidence.valid == true
	input.report.processes.status == "error"
}

# ---------------------------------------------------------------- level 2

failures contains failure("evidence.enclave", "software-enclave", 2, "the report key is not held by a TPM") if {
	not tpm_rooted
}

tpm_rooted if {
	input.evidence.enclave == "tpm"
	input.agent.enclave == "tpm"
}

# ---------------------------------------------------------------- level 3

failures contains failure("evidence.event_log_verified", "event-log-not-verified", 3, "no firmware event log replayed to the quoted PCRs") if {
	input.evidence.valid == true
	input.evidence.event_log_verified == false
}

failures contains failure("report.secure_boot.status", "measurement-error", 3, object.get(input.report.secure_boot, "error", "")) if {
	input.evidence.valid == true
	input.report.secure_boot.status == "error"
}

failures contains failure("report.secure_boot.enabled", "secure-boot-off", 3, "") if {
	input.evidence.valid == true
	input.report.secure_boot.enabled == false
}

failures contains failure("report.secure_boot.setup_mode", "secure-boot-setup-mode", 3, "no platform key: the firmware checks nothing") if {
	input.evidence.valid == true
	input.report.secure_boot.setup_mode == true
}

failures contains failure("report.secure_boot.mok_sb_state", "shim-validation-disabled", 3, "shim boots unsigned code") if {
	input.evidence.valid == true
	input.report.secure_boot.mok_sb_state.validation_disabled == true
}

# dbx_min is the reference's minimum dbx size (1 when it sets none).
dbx_min := n if {
	n := input.reference.dbx.min_entries
} else := 1

failures contains failure("report.secure_boot.dbx", "dbx-outdated", 3, sprintf("%d entries, the reference requires at least %d", [n, dbx_min])) if {
	input.evidence.valid == true
	n := dbx_entries
	n < dbx_min
}

dbx_entries := n if {
	n := input.report.secure_boot.dbx.entries
} else := 0

failures contains failure("report.secure_boot.dbx", "dbx-outdated", 3, sprintf("lacks %s", [h])) if {
	input.evidence.valid == true
	some h in input.reference.dbx.required_sha256
	not lower(h) in dbx_hashes
}

failures contains failure("report.enforcement.status", "measurement-error", 3, object.get(input.report.enforcement, "error", "")) if {
	input.evidence.valid == true
	input.report.enforcement.status == "error"
}

failures contains failure("report.enforcement.status", "measurement-error", 3, object.get(input.report.enforcement, "error", "")) if {
	input.evidence.valid == true
	input.report.enforcement.status == "unavailable"
}

failures contains failure("report.enforcement.sig_enforce", "sig-enforce-off", 3, "the kernel loads unsigned modules") if {
	input.evidence.valid == true
	input.report.enforcement.sig_enforce == false
}

failures contains failure("report.enforcement.lockdown", "lockdown-below-integrity", 3, sprintf("lockdown is %s", [input.report.enforcement.lockdown])) if {
	input.evidence.valid == true
	not input.report.enforcement.lockdown in {"integrity", "confidentiality"}
}

failures contains failure("report.modules.loaded", "unsigned-module", 3, m.name) if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	m.signed == false
}

failures contains failure("report.modules.loaded", "force-loaded-module", 3, m.name) if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	contains(m.taint, "F")
}

# Taint is never cleared: an unsigned (E) or forced (F) module loaded since
# boot shows there even when it was unloaded or hidden.
failures contains failure("report.taint.flags", "unsigned-module", 3, "kernel taint E") if {
	input.evidence.valid == true
	"E" in input.report.taint.flags
}

failures contains failure("report.taint.flags", "force-loaded-module", 3, "kernel taint F") if {
	input.evidence.valid == true
	"F" in input.report.taint.flags
}

# ---------------------------------------------------------------- level 4

failures contains failure("report.enforcement.lockdown", "lockdown-below-confidentiality", 4, "lockdown is integrity") if {
	input.evidence.valid == true
	input.report.enforcement.lockdown == "integrity"
}

failures contains failure("report.ima.status", "ima-inactive", 4, object.get(input.report.ima, "error", "")) if {
	input.evidence.valid == true
	input.report.ima.status == "error"
}

failures contains failure("report.ima.status", "ima-inactive", 4, "IMA is off") if {
	input.evidence.valid == true
	input.report.ima.status == "unavailable"
}

failures contains failure("evidence.ima_verified", "ima-not-verified", 4, "the IMA list does not replay to the quoted PCR 10") if {
	input.evidence.valid == true
	input.evidence.ima_verified == false
	input.report.ima.status == "ok"
}

failures contains failure("report.debug.kernel_debugging", "kernel-debugging", 4, join(input.report.debug.evidence)) if {
	input.evidence.valid == true
	input.report.debug.kernel_debugging == true
}

failures contains failure("report.debug.status", "measurement-error", 4, object.get(input.report.debug, "error", "")) if {
	input.evidence.valid == true
	input.report.debug.status == "error"
}

failures contains failure("report.modules.loaded", "module-not-allowed", 4, sprintf("%s: %s", [m.name, join(m.reasons)])) if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	m.allowed == false
}

module_signers := {s | some s in input.reference.module_signers}

failures contains failure("report.modules.loaded", "module-signer-not-trusted", 4, sprintf("%s: %s", [m.name, m.signer])) if {
	input.evidence.valid == true
	input.reference.module_signers[0]
	some m in input.report.modules.loaded
	not m.signer in module_signers
}

code_policies := {s | some s in input.reference.code_policies}

failures contains failure("report.code_policy", "code-policy-unknown", 4, object.get(input.report, "code_policy", "")) if {
	input.evidence.valid == true
	input.reference.code_policies[0]
	not object.get(input.report, "code_policy", "") in code_policies
}

boot_binaries := {lower(d) | some d in input.reference.boot_binaries}

failures contains failure("reference.boot_binaries", "no-reference-values", 4, "the policy has no boot binary reference values") if {
	input.evidence.valid == true
	not input.reference.boot_binaries[0]
}

failures contains failure("report.measured_boot.boot_applications", "boot-binary-unknown", 4, sprintf("%s %s", [app.path, d])) if {
	input.evidence.valid == true
	input.reference.boot_binaries[0]
	some app in input.report.measured_boot.boot_applications
	d := object.get(app.digests, "sha256", "")
	not d in boot_binaries
}

failures contains failure("report.measured_boot.boot_applications", "boot-binaries-unmeasured", 4, "the event log records no boot application") if {
	input.evidence.valid == true
	not input.report.measured_boot.boot_applications[0]
}

# The boot applications are the host's claims; they are attested only when
# the log they come from replays to the quoted PCRs: every boot PCR (0-9) the
# report's log replays must equal the quoted one.
failures contains failure("report.measured_boot.pcrs", "measured-boot-not-attested", 4, sprintf("PCR %s", [i])) if {
	input.evidence.valid == true
	some i, v in object.get(input.report.measured_boot, ["pcrs", "sha256"], {})
	boot_pcrs[i]
	v != object.get(input.evidence, ["pcrs", "sha256", i], "")
}

boot_pcrs := {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
