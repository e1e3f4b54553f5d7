# Vigil's default appraisal policy: the security levels of the product
# brief (docs/attestation-policy.md, docs/threat-model.md).
#
#   0 untrusted              invalid evidence, a contraindicated claim, or a
#                              report that contradicts an attested fact
#   1 software-rooted        valid evidence from a software key, runtime claims pass
#   2 hardware-rooted        valid TPM evidence (AK enrolled by credential activation)
#   3 measured and enforced  + a verified firmware log with a measured kernel,
#                              each boot image verified, Secure Boot on with a
#                              current dbx (all attested); sig_enforce,
#                              lockdown >= integrity, no unsigned, unknown or
#                              force-loaded module (asserted by the kernel)
#   4 hardened               + lockdown confidentiality, IMA verified against
#                              PCR 10 and this boot, no kernel debugging,
#                              every module allowed by a trusted signer, the
#                              attested boot binaries match the reference values
#
# Fail closed: every level rule requires the good value (a section with
# status "ok", a fact the verifier attested) and never only rejects a
# known-bad one. An absent or null section fails the level it gates.
#
# Every failing claim is a failure {claim, reason, level, detail,
# provenance}: level is the level it blocks, so the result is at most
# level-1; provenance says who vouches for the claim. The result is the
# highest level no failure blocks.
#
# input.attested holds what the verifier derived from TPM-signed data:
# boot (from the event log replayed to the quoted PCRs) and ima (from the
# IMA list replayed to PCR 10), each null when it did not verify.
# input.report is the host's own report (present only when
# input.evidence.valid is true), exactly the canonical encoding of Vigil's
# report type. The rules test the failing value with == where they can,
# so that OPA's rule index skips the rules that cannot fire.
package vigil.appraisal

result := {
	"level": level,
	"failures": failures,
	"trust_vector": trust_vector,
}

level := min({4} | {l | some f in failures; l := f.level - 1})

join(xs) := concat(", ", xs) if is_array(xs)

else := ""

# (The rules name input.evidence.valid, input.report and input.attested
# directly: OPA indexes them, where a helper rule would be evaluated as a
# virtual document in every rule.)

# ---------------------------------------------------------------- level 0
# Invalid evidence: one failure per reason code of the verification.

failures contains {"claim": "evidence.valid", "reason": r, "level": 1, "detail": "", "provenance": "attested"} if {
	input.evidence.valid == false
	some r in input.evidence.reasons
}

failures contains {"claim": "evidence.valid", "reason": "evidence-invalid", "level": 1, "detail": "the evidence did not verify", "provenance": "attested"} if {
	input.evidence.valid == false
	not input.evidence.reasons[0]
}

# Contraindicated claims the host reports about itself.

failures contains {"claim": "report.modules.hidden", "reason": "hidden-module", "level": 1, "detail": sprintf("%s: seen in %s, missing from %s", [m.name, join(m.seen_in), join(m.missing_from)]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.modules.hidden[0]
	some m in input.report.modules.hidden
}

failures contains {"claim": "report.modules.loaded", "reason": module_code_reason[r], "level": 1, "detail": sprintf("%s: %s", [m.name, join(m.reasons)]), "provenance": "asserted"} if {
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

failures contains {"claim": "report.processes.hidden", "reason": "hidden-process", "level": 1, "detail": sprintf("pid %d (%s)", [p.pid, p.name]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.processes.hidden[0]
	some p in input.report.processes.hidden
}

failures contains {"claim": "report.processes.critical", "reason": "critical-process", "level": 1, "detail": sprintf("%s: %s", [c.name, join(c.problems)]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.processes.critical[0]
	some c in input.report.processes.critical
	not c.ok == true
}

# The sections the contraindications read must have been measured.
failures contains {"claim": "report.modules.status", "reason": "measurement-error", "level": 1, "detail": object.get(input.report.modules, "error", "the module views could not be read"), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.modules.status == "error"
}

failures contains {"claim": "report.processes.status", "reason": "measurement-error", "level": 1, "detail": object.get(input.report.processes, "error", "the processes could not be read"), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.processes.status == "error"
}

# Revoked code ran: a boot application the firmware measured whose
# Authenticode hash is in the dbx the firmware measured (attested), or in
# the host's current dbx (asserted).
failures contains {"claim": "attested.boot.boot_applications", "reason": "revoked-boot-binary", "level": 1, "detail": sprintf("%s %s is in the measured dbx", [app.path, app.sha256]), "provenance": "attested"} if {
	input.evidence.valid == true
	some app in input.attested.boot.boot_applications
	app.sha256 in input.attested.boot.variables.dbx.hashes
}

failures contains {"claim": "report.measured_boot.boot_applications", "reason": "revoked-boot-binary", "level": 1, "detail": sprintf("%s %s is in the host's dbx", [app.path, app.digests.sha256]), "provenance": "asserted"} if {
	input.evidence.valid == true
	some app in input.report.measured_boot.boot_applications
	app.digests.sha256 in input.report.secure_boot.dbx.sha256
}

# Contradictions: the report disagrees with an attested fact. A host that
# lies about what the TPM attests is contraindicated.

failures contains {"claim": "report.secure_boot.enabled", "reason": "secure-boot-contradicted", "level": 1, "detail": sprintf("the report says %v, the verified event log %v", [input.report.secure_boot.enabled, input.attested.boot.secure_boot]), "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.secure_boot_measured == true
	input.report.secure_boot.status == "ok"
	input.report.secure_boot.enabled != input.attested.boot.secure_boot
}

# (Both sides are lowercase hex: the verifier's and the report decoder's.)
attested_app_digests := {a.sha256 | some a in input.attested.boot.boot_applications}

failures contains {"claim": "report.measured_boot.boot_applications", "reason": "boot-application-contradicted", "level": 1, "detail": sprintf("%s %s is not in the verified event log", [app.path, d]), "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.log_sha256
	input.report.measured_boot.status == "ok"
	some app in input.report.measured_boot.boot_applications
	d := object.get(app.digests, "sha256", "")
	not d in attested_app_digests
}

# The modules /proc/modules lists, when the report read it: a report
# without that list lists nothing, so every module IMA measured is
# unlisted (fail closed: a host cannot escape the attested list by saying
# /proc/modules was unavailable).
listed_module_names := {m.name | input.report.modules.status == "ok"; some m in input.report.modules.loaded}

failures contains {"claim": "attested.ima.modules", "reason": "ima-module-unlisted", "level": 1, "detail": sprintf("%s was measured by IMA at load and /proc/modules does not list it (the report's modules section is %v)", [m, object.get(input.report.modules, "status", "absent")]), "provenance": "attested"} if {
	input.evidence.valid == true
	some m in input.attested.ima.modules
	not m in listed_module_names
}

# A module that left every list still holds its memory: the module
# loader's allocations outnumber the modules listed.
failures contains {"claim": "report.modules.allocations", "reason": "hidden-module", "level": 1, "detail": sprintf("%d module allocations (vmallocinfo) for %d listed modules: %d unlisted, of %v bytes", [input.report.modules.allocations.count, input.report.modules.allocations.listed, input.report.modules.allocations.unlisted, input.report.modules.allocations.unlisted_sizes]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.modules.allocations.status == "ok"
	input.report.modules.allocations.unlisted > 0
}

failures contains {"claim": "report.modules.loaded", "reason": "module-taint-contradicted", "level": 1, "detail": sprintf("%s: the kernel tainted it unsigned (E), the report says its file is signed", [m.name]), "provenance": "asserted"} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	m.signature == "signed"
	contains(m.taint, "E")
}

# The command line grub measured (attested) against the running kernel's.
# The verifier reads its lockdown= and module.sig_enforce= parameters
# (attested.boot.cmdline_lockdown, .cmdline_sig_enforce).
failures contains {"claim": "report.kernel.cmdline", "reason": "cmdline-contradicted", "level": 1, "detail": sprintf("the kernel runs with %q, grub measured %q", [input.report.kernel.cmdline, input.attested.boot.kernel_cmdline]), "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.cmdline_measured == true
	input.report.kernel.status == "ok"
	trim_space(input.report.kernel.cmdline) != concat("", ["BOOT_IMAGE=", trim_space(input.attested.boot.kernel_cmdline)])
}

lockdown_rank := {"none": 0, "integrity": 1, "confidentiality": 2}

failures contains {"claim": "report.enforcement.lockdown", "reason": "lockdown-contradicted", "level": 1, "detail": sprintf("the measured command line sets lockdown=%s, the report says %v", [input.attested.boot.cmdline_lockdown, input.report.enforcement.lockdown]), "provenance": "attested"} if {
	input.evidence.valid == true
	m := lockdown_rank[input.attested.boot.cmdline_lockdown]
	input.report.enforcement.status == "ok"
	not lockdown_rank[input.report.enforcement.lockdown] >= m
}

failures contains {"claim": "report.enforcement.sig_enforce", "reason": "sig-enforce-contradicted", "level": 1, "detail": "the measured command line sets module.sig_enforce, the report says it is off", "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.cmdline_sig_enforce == true
	input.report.enforcement.status == "ok"
	input.report.enforcement.sig_enforce == false
}

# ---------------------------------------------------------------- level 2

# (Go caps software evidence at level 1 whatever a policy says; these rules
# name the reason.)
failures contains {"claim": "evidence.enclave", "reason": "software-enclave", "level": 2, "detail": "the report key is not held by a TPM", "provenance": "attested"} if {
	input.evidence.enclave == "software"
}

failures contains {"claim": "evidence.enclave", "reason": "software-enclave", "level": 2, "detail": "the agent is enrolled with a software key", "provenance": "attested"} if {
	input.agent.enclave == "software"
}

tpm_rooted if {
	input.evidence.enclave == "tpm"
	input.agent.enclave == "tpm"
}

# ---------------------------------------------------------------- level 3
# The boot, attested: the firmware event log replayed to the quoted PCRs.

failures contains {"claim": "evidence.event_log_verified", "reason": "event-log-not-verified", "level": 3, "detail": event_log_detail, "provenance": "attested"} if {
	input.evidence.valid == true
	not input.evidence.event_log_verified == true
}

event_log_detail := input.evidence.event_log_detail if input.evidence.event_log_detail != ""

else := "no firmware event log replayed to the quoted PCRs"

failures contains {"claim": "attested.boot.secure_boot", "reason": "secure-boot-off", "level": 3, "detail": secure_boot_detail, "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.log_sha256
	not input.attested.boot.secure_boot == true
}

secure_boot_detail := "the verified event log records Secure Boot off" if input.attested.boot.secure_boot_measured == true

else := "the verified event log does not measure the SecureBoot variable"

failures contains {"claim": "attested.boot.setup_mode", "reason": "secure-boot-setup-mode", "level": 3, "detail": "the firmware measured no platform key: it checks nothing", "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.log_sha256
	not input.attested.boot.setup_mode == false
}

# A current dbx, as the firmware measured it: at least
# reference.dbx.min_entries entries (1 when the reference sets none) and
# every required hash.

failures contains {"claim": "attested.boot.variables.dbx", "reason": "dbx-outdated", "level": 3, "detail": "the firmware measured no dbx", "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.log_sha256
	not input.attested.boot.variables.dbx.sha256
}

failures contains {"claim": "attested.boot.variables.dbx", "reason": "dbx-outdated", "level": 3, "detail": "the measured dbx is not a valid signature database", "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.variables.dbx.malformed == true
}

# (Placeholder entries, the SHA-256 of nothing as OVMF ships, revoke no
# image and do not count.)
failures contains {"claim": "attested.boot.variables.dbx", "reason": "dbx-outdated", "level": 3, "detail": sprintf("%d entries that revoke something, the reference requires at least %d", [n, m]), "provenance": "attested"} if {
	input.evidence.valid == true
	n := input.attested.boot.variables.dbx.entries - input.attested.boot.variables.dbx.placeholders
	m := object.get(input.reference, ["dbx", "min_entries"], 1)
	n < m
}

measured_dbx_hashes := {h | some h in input.attested.boot.variables.dbx.hashes}

failures contains {"claim": "attested.boot.variables.dbx", "reason": "dbx-outdated", "level": 3, "detail": sprintf("lacks %s", [h]), "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.variables.dbx.sha256
	input.reference.dbx.required_sha256[0]
	some h in input.reference.dbx.required_sha256
	not lower(h) in measured_dbx_hashes
}

# Revocations the reference requires the host to enforce by itself
# (reference.revocations.required, none by default): each must be held by
# a store of the host (input.revocations: the measured dbx, shim's
# MokListX, the kernel's .blacklist). One still pending (dbx and MokListX
# take effect at the next boot) fails level 3. With
# reference.revocations.require_attested, only the measured dbx
# (attested) and a MokListX whose measured digest matches (corroborated)
# count: the host's word that its keyring holds one does not.
failures contains {"claim": "revocations.pending", "reason": "revocation-pending", "level": 3, "detail": sprintf("%s:%s is in none of the host's stores yet (it can be held in %s)", [r.kind, r.value, concat(", ", r.targets)]), "provenance": "asserted"} if {
	input.evidence.valid == true
	some r in input.revocations.pending
	r.required
}

failures contains {"claim": "revocations.enforced", "reason": "revocation-pending", "level": 3, "detail": sprintf("%s:%s is held only where the host's word is all that vouches for it (%s)", [r.kind, r.value, concat(", ", [s.store | some s in r.at])]), "provenance": "asserted"} if {
	input.evidence.valid == true
	object.get(input.reference, ["revocations", "require_attested"], false) == true
	some r in input.revocations.enforced
	r.required
	not revocation_vouched(r)
}

revocation_vouched(r) if {
	some s in r.at
	s.provenance in {"attested", "corroborated"}
}

# The kernel ran as a measured boot application: a loader that starts a
# kernel without the firmware's LoadImage (or OVMF's -kernel fallback)
# leaves PCR 4 without it, and nobody verified it.
failures contains {"claim": "attested.boot.kernel", "reason": "kernel-unmeasured", "level": 3, "detail": "PCR 4 of the verified event log holds no kernel: it was started without being verified or measured", "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.log_sha256
	not input.attested.boot.kernel.sha256
}

# Each boot image was verified: the firmware or shim logged the authority
# that verified it, or its digest is a reference value.
image_authorities := {"db", "Shim", "MokList", "MokListRT", "vendor_db"}

boot_binaries := {lower(d) | some d in input.reference.boot_binaries}

failures contains {"claim": "attested.boot.boot_applications", "reason": "boot-binary-unverified", "level": 3, "detail": sprintf("%s %s: no authority verified it and it is no reference value", [app.path, app.sha256]), "provenance": "attested"} if {
	input.evidence.valid == true
	some app in input.attested.boot.boot_applications
	not app.authority in image_authorities
	not lower(app.sha256) in boot_binaries
}

# Without an attested boot, the host's own word still counts against it
# (never for it).
failures contains {"claim": "report.secure_boot.enabled", "reason": "secure-boot-off", "level": 3, "detail": "the host reports Secure Boot off", "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.attested.boot.log_sha256
	not input.report.secure_boot.enabled == true
}

failures contains {"claim": "report.secure_boot.dbx", "reason": "dbx-outdated", "level": 3, "detail": "the host reports no dbx", "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.attested.boot.log_sha256
	input.report.secure_boot.dbx == null
}

failures contains {"claim": "report.secure_boot.dbx", "reason": "dbx-outdated", "level": 3, "detail": sprintf("the host reports %d dbx entries, the reference requires at least %d", [n, m]), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.attested.boot.log_sha256
	n := input.report.secure_boot.dbx.entries
	m := object.get(input.reference, ["dbx", "min_entries"], 1)
	n < m
}

failures contains {"claim": "report.secure_boot.mok_sb_state", "reason": "shim-validation-disabled", "level": 3, "detail": "shim boots unsigned code", "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.secure_boot.mok_sb_state.validation_disabled == true
}

# Every MOK certificate is a key shim boots images by and, with
# MokListTrustedRT, the kernel loads modules by (.machine): each must be
# approved, by reference.mok_certificates (SHA-256 of the DER) or as the
# vendor certificate the verified log shows shim verified a boot image
# with (its Shim or vendor_db authority event).
mok_approved := {lower(h) | some h in input.reference.mok_certificates} | {a.sha256 | some a in input.attested.boot.authorities; a.name in {"Shim", "vendor_db"}}

failures contains {"claim": "report.secure_boot.mok", "reason": "mok-not-approved", "level": 3, "detail": sprintf("%s (sha256 %s): a machine owner key the policy does not approve", [c.subject, c.sha256]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.secure_boot.status == "ok"
	some c in input.report.secure_boot.mok.certificates
	not lower(c.sha256) in mok_approved
}

# Every boot file on the host must be one its own firmware and shim would
# run: judged against the host's db, MokListRT, dbx, MokListXRT and
# SbatLevelRT (boot_files[].platform, the agent's uefi-mode verdict).
failures contains {"claim": "report.secure_boot.boot_files", "reason": "boot-file-not-allowed", "level": 3, "detail": sprintf("%s: %s", [bf.path, join(bf.platform.reasons)]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.secure_boot.status == "ok"
	some bf in input.report.secure_boot.boot_files
	bf.platform
	not bf.platform.allowed == true
}

# The kernel's enforcement, asserted by the running kernel (corroborated
# where the measured command line sets it).
failures contains {"claim": "report.enforcement.status", "reason": "measurement-error", "level": 3, "detail": object.get(input.report.enforcement, "error", sprintf("the enforcement section is %s", [object.get(input.report.enforcement, "status", "absent")])), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.report.enforcement.status == "ok"
}

failures contains {"claim": "report.enforcement.sig_enforce", "reason": "sig-enforce-off", "level": 3, "detail": "the kernel loads unsigned modules", "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.enforcement.status == "ok"
	not input.report.enforcement.sig_enforce == true
}

failures contains {"claim": "report.enforcement.lockdown", "reason": "lockdown-below-integrity", "level": 3, "detail": sprintf("lockdown is %v", [input.report.enforcement.lockdown]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.enforcement.status == "ok"
	not input.report.enforcement.lockdown in {"integrity", "confidentiality"}
}

failures contains {"claim": "report.modules.status", "reason": "measurement-error", "level": 3, "detail": sprintf("the modules section is %v", [object.get(input.report.modules, "status", "absent")]), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.report.modules.status == "ok"
}

failures contains {"claim": "report.modules.loaded", "reason": "unsigned-module", "level": 3, "detail": m.name, "provenance": "asserted"} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	m.signature == "unsigned"
}

# A module whose file was not found, not readable or not judged is
# unknown, never unsigned; but it is not shown signed either.
failures contains {"claim": "report.modules.loaded", "reason": "module-unknown", "level": 3, "detail": sprintf("%s: its file was not judged (%s)", [m.name, join(m.reasons)]), "provenance": "asserted"} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	not m.signature in {"signed", "unsigned"}
}

failures contains {"claim": "report.modules.loaded", "reason": "force-loaded-module", "level": 3, "detail": m.name, "provenance": "asserted"} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	contains(m.taint, "F")
}

failures contains {"claim": "report.taint.status", "reason": "measurement-error", "level": 3, "detail": sprintf("the taint section is %v", [object.get(input.report.taint, "status", "absent")]), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.report.taint.status == "ok"
}

# Taint is never cleared: an unsigned (E) or forced (F) module loaded since
# boot shows there even when it was unloaded or hidden.
failures contains {"claim": "report.taint.flags", "reason": "unsigned-module", "level": 3, "detail": "kernel taint E", "provenance": "asserted"} if {
	input.evidence.valid == true
	"E" in input.report.taint.flags
}

failures contains {"claim": "report.taint.flags", "reason": "force-loaded-module", "level": 3, "detail": "kernel taint F", "provenance": "asserted"} if {
	input.evidence.valid == true
	"F" in input.report.taint.flags
}

# ---------------------------------------------------------------- level 4

# (Any other value than these two already fails level 3.)
failures contains {"claim": "report.enforcement.lockdown", "reason": "lockdown-below-confidentiality", "level": 4, "detail": "lockdown is integrity", "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.enforcement.status == "ok"
	input.report.enforcement.lockdown == "integrity"
}

failures contains {"claim": "report.ima.status", "reason": "ima-inactive", "level": 4, "detail": object.get(input.report.ima, "error", sprintf("the IMA section is %v", [object.get(input.report.ima, "status", "absent")])), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.report.ima.status == "ok"
}

failures contains {"claim": "evidence.ima_verified", "reason": "ima-not-verified", "level": 4, "detail": ima_detail, "provenance": "attested"} if {
	input.evidence.valid == true
	not input.evidence.ima_verified == true
}

ima_detail := sprintf("a new boot (%s): the IMA list restarts from its start next round", [input.evidence.ima_restarted]) if input.evidence.ima_restarted != ""

else := "no IMA list replayed to the quoted PCR 10"

failures contains {"claim": "attested.ima.boot_aggregate", "reason": "ima-boot-aggregate-mismatch", "level": 4, "detail": sprintf("boot_aggregate %s is not this boot's quoted PCRs 0-9", [input.attested.ima.boot_aggregate]), "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.ima.boot_aggregate
	not input.attested.ima.boot_aggregate_matches == true
}

# The process claims (hidden and critical processes) need a measured
# process table; without one they cannot pass at the top level.
failures contains {"claim": "report.processes.status", "reason": "measurement-unavailable", "level": 4, "detail": sprintf("the processes section is %v", [object.get(input.report.processes, "status", "absent")]), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.report.processes.status == "ok"
	not input.report.processes.status == "error"
}

failures contains {"claim": "report.debug.status", "reason": "measurement-error", "level": 4, "detail": object.get(input.report.debug, "error", sprintf("the debug section is %v", [object.get(input.report.debug, "status", "absent")])), "provenance": "asserted"} if {
	input.evidence.valid == true
	not input.report.debug.status == "ok"
}

failures contains {"claim": "report.debug.kernel_debugging", "reason": "kernel-debugging", "level": 4, "detail": join(input.report.debug.evidence), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.report.debug.status == "ok"
	not input.report.debug.kernel_debugging == false
}

failures contains {"claim": "report.modules.loaded", "reason": "module-not-allowed", "level": 4, "detail": sprintf("%s: %s", [m.name, join(m.reasons)]), "provenance": "asserted"} if {
	input.evidence.valid == true
	some m in input.report.modules.loaded
	not m.allowed == true
}

module_signers := {s | some s in input.reference.module_signers}

failures contains {"claim": "report.modules.loaded", "reason": "module-signer-not-trusted", "level": 4, "detail": sprintf("%s: %s", [m.name, m.signer]), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.reference.module_signers[0]
	some m in input.report.modules.loaded
	not m.signer in module_signers
}

code_policies := {s | some s in input.reference.code_policies}

failures contains {"claim": "report.code_policy", "reason": "code-policy-unknown", "level": 4, "detail": object.get(input.report, "code_policy", ""), "provenance": "asserted"} if {
	input.evidence.valid == true
	input.reference.code_policies[0]
	not object.get(input.report, "code_policy", "") in code_policies
}

failures contains {"claim": "reference.boot_binaries", "reason": "no-reference-values", "level": 4, "detail": "the policy has no boot binary reference values", "provenance": "attested"} if {
	input.evidence.valid == true
	not input.reference.boot_binaries[0]
}

failures contains {"claim": "attested.boot.boot_applications", "reason": "boot-binary-unknown", "level": 4, "detail": sprintf("%s %s", [app.path, app.sha256]), "provenance": "attested"} if {
	input.evidence.valid == true
	input.reference.boot_binaries[0]
	some app in input.attested.boot.boot_applications
	not lower(app.sha256) in boot_binaries
}

failures contains {"claim": "attested.boot.boot_applications", "reason": "boot-binaries-unmeasured", "level": 4, "detail": "the verified event log records no boot application", "provenance": "attested"} if {
	input.evidence.valid == true
	input.attested.boot.log_sha256
	not input.attested.boot.boot_applications[0]
}
