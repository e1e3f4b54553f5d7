# The AR4SI trust vector (draft-ietf-rats-ar4si), values as
# github.com/veraison/ear names them. A claim the policy cannot support is
# left out (no claim).
package vigil.appraisal

trust_vector["instance-identity"] := instance_identity

trust_vector.hardware := 2 if { # GenuineHardwareClaim
	valid
	tpm_rooted
}

trust_vector["storage-opaque"] := v if {
	valid
	v := storage_opaque
}

trust_vector.executables := executables

trust_vector.configuration := configuration

# instance-identity: 2 recognized, 97 not recognized (unknown or foreign
# keys), 99 cryptographic validation failed.
instance_identity := 2 if {
	valid
} else := 97 if {
	some r in input.evidence.reasons
	r in unknown_key_reasons
} else := 99

unknown_key_reasons := {"ak-unknown", "ak-mismatch", "report-key-unknown", "enclave-mismatch"}

# storage-opaque: the report key is a hardware key (2) or a software key (32).
storage_opaque := 2 if tpm_rooted

else := 32

failure_reasons := {f.reason | some f in failures}

contraindicated_runtime := {"hidden-module", "revoked-module", "blocklisted-module", "revoked-boot-binary", "hidden-process", "critical-process"}

unrecognized_runtime := {"unsigned-module", "force-loaded-module", "module-not-allowed", "module-signer-not-trusted"}

unapproved_boot := {"event-log-not-verified", "no-reference-values", "boot-binary-unknown", "boot-binaries-unmeasured", "measured-boot-not-attested", "code-policy-unknown"}

# executables: 96 contraindicated, 33 unrecognized modules, 2 every module
# allowed and the boot binaries match the reference, 3 a verified Secure
# Boot.
executables := 96 if {
	valid
	some r in failure_reasons
	r in contraindicated_runtime
} else := 33 if {
	valid
	some r in failure_reasons
	r in unrecognized_runtime
} else := 2 if {
	valid
	count(failure_reasons & unapproved_boot) == 0
} else := 3 if {
	valid
	input.evidence.event_log_verified == true
	report.secure_boot.enabled == true
}

unsafe_config := {"secure-boot-off", "secure-boot-setup-mode", "shim-validation-disabled", "dbx-outdated", "sig-enforce-off", "lockdown-below-integrity", "kernel-debugging"}

weaker_config := {"lockdown-below-confidentiality", "ima-inactive", "ima-not-verified"}

# configuration: 32 unsafe (a level 3 setting missing, or kernel
# debugging), 2 hardened, 3 no known weakness of level 3.
configuration := 32 if {
	valid
	some r in failure_reasons
	r in unsafe_config
} else := 2 if {
	valid
	count(failure_reasons & weaker_config) == 0
} else := 3 if {
	valid
}
