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
package vigil.appraisal

result := {
	"level": level,
	"failures": failures,
	"trust_vector": trust_vector,
}

level := min({4} | {l | some f in failures; l := f.level - 1})

failure(claim, reason, lvl, detail) := {"claim": claim, "reason": reason, "level": lvl, "detail": detail}

# valid: the evidence verified, so the report's claims are the host's.
valid if {
	input.evidence.valid == true
	is_object(input.report)
}

report := input.report

ref := object.get(input, "reference", {})

join(xs) := concat(", ", xs) if is_array(xs)

else := ""

# arr is x when it is an array, else [] (a claim the report left null).
arr(x) := x if is_array(x)

else := []

# ---------------------------------------------------------------- level 0
# Invalid evidence: one failure per reason code of the verification.

failures contains failure("evidence.valid", r, 1, "") if {
	not input.evidence.valid == true
	some r in input.evidence.reasons
}

failures contains failure("evidence.valid", "evidence-invalid", 1, "") if {
	not input.evidence.valid == true
	count(arr(object.get(input.evidence, "reasons", []))) == 0
}

failures contains failure("report", "report-missing", 1, "") if {
	input.evidence.valid == true
	not is_object(input.report)
}

# Contraindicated claims.

failures contains failure("report.modules.hidden", "hidden-module", 1, sprintf("%s: seen in %s, missing from %s", [m.name, join(m.seen_in), join(m.missing_from)])) if {
	valid
	some m in report.modules.hidden
}

revoked_codes := {"revoked"}

blocklisted_codes := {"blocklisted-hash", "blocklisted-signer"}

failures contains failure("report.modules.loaded", "revoked-module", 1, sprintf("%s: %s", [m.name, join(m.reasons)])) if {
	valid
	some m in report.modules.loaded
	some r in m.reasons
	r in revoked_codes
}

failures contains failure("report.modules.loaded", "blocklisted-module", 1, sprintf("%s: %s", [m.name, join(m.reasons)])) if {
	valid
	some m in report.modules.loaded
	some r in m.reasons
	r in blocklisted_codes
}

dbx_hashes := {h | some h in report.secure_boot.dbx.sha256}

# A boot application the firmware started whose Authenticode hash is in the
# current dbx: revoked code ran.
failures contains failure("report.measured_boot.boot_applications", "revoked-boot-binary", 1, sprintf("%s %s", [app.path, app.digests.sha256])) if {
	valid
	some app in report.measured_boot.boot_applications
	app.digests.sha256 in dbx_hashes
}

failures contains failure("report.processes.hidden", "hidden-process", 1, sprintf("pid %d (%s)", [p.pid, p.name])) if {
	valid
	some p in report.processes.hidden
}

failures contains failure("report.processes.critical", "critical-process", 1, sprintf("%s: %s", [c.name, join(c.problems)])) if {
	valid
	some c in report.processes.critical
	not c.ok == true
}

# The sections the contraindications read must have been measured.
failures contains failure(sprintf("report.%s.status", [s]), "measurement-error", 1, object.get(report[s], "error", "")) if {
	valid
	some s in ["modules", "processes"]
	not report[s].status in {"ok", "unavailable"}
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
	valid
	not input.evidence.event_log_verified == true
}

sb := report.secure_boot

failures contains failure("report.secure_boot.status", "measurement-error", 3, object.get(sb, "error", "")) if {
	valid
	sb.status == "error"
}

failures contains failure("report.secure_boot.enabled", "secure-boot-off", 3, "") if {
	valid
	not sb.enabled == true
}

failures contains failure("report.secure_boot.setup_mode", "secure-boot-setup-mode", 3, "no platform key: the firmware checks nothing") if {
	valid
	sb.setup_mode == true
}

failures contains failure("report.secure_boot.mok_sb_state", "shim-validation-disabled", 3, "shim boots unsigned code") if {
	valid
	sb.mok_sb_state.validation_disabled == true
}

dbx_min := object.get(ref, ["dbx", "min_entries"], 1)

failures contains failure("report.secure_boot.dbx", "dbx-outdated", 3, sprintf("%d entries, the reference requires at least %d", [n, dbx_min])) if {
	valid
	n := object.get(sb, ["dbx", "entries"], 0)
	n < dbx_min
}

failures contains failure("report.secure_boot.dbx", "dbx-outdated", 3, sprintf("lacks %s", [h])) if {
	valid
	some h in object.get(ref, ["dbx", "required_sha256"], [])
	not lower(h) in dbx_hashes
}

enforcement := report.enforcement

failures contains failure("report.enforcement.status", "measurement-error", 3, object.get(enforcement, "error", "")) if {
	valid
	enforcement.status != "ok"
}

failures contains failure("report.enforcement.sig_enforce", "sig-enforce-off", 3, "the kernel loads unsigned modules") if {
	valid
	not enforcement.sig_enforce == true
}

failures contains failure("report.enforcement.lockdown", "lockdown-below-integrity", 3, sprintf("lockdown is %s", [object.get(enforcement, "lockdown", "")])) if {
	valid
	not enforcement.lockdown in {"integrity", "confidentiality"}
}

failures contains failure("report.modules.loaded", "unsigned-module", 3, m.name) if {
	valid
	some m in report.modules.loaded
	not m.signed == true
}

failures contains failure("report.modules.loaded", "force-loaded-module", 3, m.name) if {
	valid
	some m in report.modules.loaded
	contains(m.taint, "F")
}

# Taint is never cleared: an unsigned (E) or forced (F) module loaded since
# boot shows there even when it was unloaded or hidden.
failures contains failure("report.taint.flags", taint_reason[f], 3, sprintf("kernel taint %s", [f])) if {
	valid
	some f in report.taint.flags
	taint_reason[f]
}

taint_reason := {"E": "unsigned-module", "F": "force-loaded-module"}

# ---------------------------------------------------------------- level 4

failures contains failure("report.enforcement.lockdown", "lockdown-below-confidentiality", 4, "lockdown is integrity") if {
	valid
	enforcement.lockdown == "integrity"
}

failures contains failure("report.ima.status", "ima-inactive", 4, object.get(report.ima, "error", report.ima.status)) if {
	valid
	report.ima.status != "ok"
}

failures contains failure("evidence.ima_verified", "ima-not-verified", 4, "the IMA list does not replay to the quoted PCR 10") if {
	valid
	report.ima.status == "ok"
	not input.evidence.ima_verified == true
}

failures contains failure("report.debug.kernel_debugging", "kernel-debugging", 4, join(report.debug.evidence)) if {
	valid
	report.debug.kernel_debugging == true
}

failures contains failure("report.debug.status", "measurement-error", 4, object.get(report.debug, "error", "")) if {
	valid
	report.debug.status != "ok"
}

module_signers := {s | some s in object.get(ref, "module_signers", [])}

failures contains failure("report.modules.loaded", "module-not-allowed", 4, sprintf("%s: %s", [m.name, join(m.reasons)])) if {
	valid
	some m in report.modules.loaded
	not m.allowed == true
}

failures contains failure("report.modules.loaded", "module-signer-not-trusted", 4, sprintf("%s: %s", [m.name, m.signer])) if {
	valid
	count(module_signers) > 0
	some m in report.modules.loaded
	not m.signer in module_signers
}

code_policies := {s | some s in object.get(ref, "code_policies", [])}

failures contains failure("report.code_policy", "code-policy-unknown", 4, object.get(report, "code_policy", "")) if {
	valid
	count(code_policies) > 0
	not object.get(report, "code_policy", "") in code_policies
}

boot_binaries := {lower(d) | some d in object.get(ref, "boot_binaries", [])}

failures contains failure("reference.boot_binaries", "no-reference-values", 4, "the policy has no boot binary reference values") if {
	valid
	count(boot_binaries) == 0
}

failures contains failure("report.measured_boot.boot_applications", "boot-binary-unknown", 4, sprintf("%s %s", [app.path, object.get(app.digests, "sha256", "")])) if {
	valid
	count(boot_binaries) > 0
	some app in report.measured_boot.boot_applications
	not object.get(app.digests, "sha256", "") in boot_binaries
}

failures contains failure("report.measured_boot.boot_applications", "boot-binaries-unmeasured", 4, "the event log records no boot application") if {
	valid
	count(arr(object.get(report.measured_boot, "boot_applications", []))) == 0
}

# The boot applications are the host's claims; they are attested only when
# the log they come from replays to the quoted PCRs: every boot PCR (0-9) the
# report's log replays must equal the quoted one.
failures contains failure("report.measured_boot.pcrs", "measured-boot-not-attested", 4, sprintf("PCR %s", [i])) if {
	valid
	some i, v in object.get(report.measured_boot, ["pcrs", "sha256"], {})
	i in boot_pcrs
	v != object.get(input.evidence, ["pcrs", "sha256", i], "")
}

boot_pcrs := {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
