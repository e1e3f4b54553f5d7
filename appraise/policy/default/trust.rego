# The AR4SI trust vector (draft-ietf-rats-ar4si), with the values
# github.com/veraison/ear names. 0 is "no claim": Go leaves it out.
package vigil.appraisal

# instance-identity: 2 recognized, 97 not recognized (unknown or foreign
# keys), 99 cryptographic validation failed. The other claims are made for
# valid evidence only.
trust_vector := {"instance-identity": 97} if {
	input.evidence.valid == false
	some r in input.evidence.reasons
	unknown_key_reasons[r]
} else := {"instance-identity": 99} if {
	input.evidence.valid == false
} else := {
	"instance-identity": 2,
	"hardware": key_claims[0],
	"storage-opaque": key_claims[1],
	"executables": executables,
	"configuration": configuration,
}

unknown_key_reasons := {"ak-unknown", "ak-mismatch", "report-key-unknown", "enclave-mismatch"}

# hardware: 2 genuine (a TPM whose AK was enrolled by credential
# activation); storage-opaque: the report key is a hardware key (2) or a
# software key (32).
key_claims := [2, 2] if tpm_rooted else := [0, 32]

failure_reasons := {f.reason | some f in failures}

# executables: 96 contraindicated, 33 unrecognized modules, 2 every module
# allowed and the boot binaries match the reference, 3 a verified Secure
# Boot.
executables := 96 if {
	count(failure_reasons & {"hidden-module", "revoked-module", "blocklisted-module", "revoked-boot-binary", "hidden-process", "critical-process", "boot-application-contradicted", "ima-module-unlisted", "module-taint-contradicted"}) > 0
} else := 33 if {
	count(failure_reasons & {"unsigned-module", "module-unknown", "force-loaded-module", "module-not-allowed", "module-signer-not-trusted", "kernel-unmeasured", "boot-binary-unverified", "mok-not-approved", "boot-file-not-allowed"}) > 0
} else := 2 if {
	count(failure_reasons & {"event-log-not-verified", "no-reference-values", "boot-binary-unknown", "boot-binaries-unmeasured", "code-policy-unknown"}) == 0
} else := 3 if {
	input.evidence.event_log_verified == true
	input.attested.boot.secure_boot == true
} else := 0

# configuration: 96 contraindicated (the report contradicts the attested
# configuration), 32 unsafe (a level 3 setting missing, or kernel
# debugging), 2 hardened, 3 no known weakness of level 3.
configuration := 96 if {
	count(failure_reasons & {"secure-boot-contradicted", "cmdline-contradicted", "lockdown-contradicted", "sig-enforce-contradicted"}) > 0
} else := 32 if {
	count(failure_reasons & {"secure-boot-off", "secure-boot-setup-mode", "shim-validation-disabled", "dbx-outdated", "sig-enforce-off", "lockdown-below-integrity", "kernel-debugging"}) > 0
} else := 2 if {
	count(failure_reasons & {"lockdown-below-confidentiality", "ima-inactive", "ima-not-verified", "ima-boot-aggregate-mismatch"}) == 0
} else := 3
