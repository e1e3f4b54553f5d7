# The AR4SI trust vector (draft-ietf-rats-ar4si), with the values
# github.com/veraison/ear names. A claim the policy cannot support is left
# out (no claim).
package vigil.appraisal

trust_vector["instance-identity"] := instance_identity

# hardware: 2 genuine (a TPM whose AK was enrolled by credential
# activation).
trust_vector.hardware := 2 if {
	input.evidence.valid == true
	tpm_rooted
}

# storage-opaque: the report key is a hardware key (2) or a software key
# (32).
trust_vector["storage-opaque"] := 2 if {
	input.evidence.valid == true
	tpm_rooted
}

trust_vector["storage-opaque"] := 32 if {
	input.evidence.valid == true
	not tpm_rooted
}

trust_vector.executables := executables

trust_vector.configuration := configuration

# instance-identity: 2 recognized, 97 not recognized (unknown or foreign
# keys), 99 cryptographic validation failed.
instance_identity := 2 if {
	input.evidence.valid == true
} else := 97 if {
	some r in input.evidence.reasons
	unknown_key_reasons[r]
} else := 99

unknown_key_reasons := {"ak-unknown", "ak-mismatch", "report-key-unknown", "enclave-mismatch"}

failure_reasons := {f.reason | some f in failures}

# executables: 96 contraindicated, 33 unrecognized modules, 2 every module
# allowed and the boot binaries match the reference, 3 a verified Secure
# Boot.
executables := 96 if {
	input.evidence.valid == true
	some r in ["hidden-module", "revoked-module", "blocklisted-module", "revoked-boot-binary", "hidden-process", "critical-process"]
	failure_reasons[r]
} else := 33 if {
	input.evidence.valid == true
	some r in ["unsigned-module", "force-loaded-module", "module-not-allowed", "module-signer-not-trusted"]
	failure_reasons[r]
} else := 2 if {
	input.evidence.valid == true
	not unapproved_boot
} else := 3 if {
	input.evidence.valid == true
	input.evidence.event_log_verified == true
	input.report.secure_boot.enabled == true
}

unapproved_boot if {
	some r in ["event-log-not-verified", "no-reference-values", "boot-binary-unknown", "boot-binaries-unmeasured", "measured-boot-not-attested", "code-policy-unknown"]
	failure_reasons[r]
}

# configuration: 32 unsafe (a level 3 setting missing, or kernel
# debugging), 2 hardened, 3 no known weakness of level 3.
configuration := 32 if {
	input.evidence.valid == true
	some r in ["secure-boot-off", "secure-boot-setup-mode", "shim-validation-disabled", "dbx-outdated", "sig-enforce-off", "lockdown-below-integrity", "kernel-debugging"]
	failure_reasons[r]
} else := 2 if {
	input.evidence.valid == true
	not weaker_config
} else := 3 if {
	input.evidence.valid == true
}

weaker_config if {
	some r in ["lockdown-below-confidentiality", "ima-inactive", "ima-not-verified"]
	failure_reasons[r]
}
