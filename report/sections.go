package report

import "github.com/vigil-attest/vigil/reason"

// Enforcement is what the kernel enforces: module signatures, lockdown,
// hardening sysctls and the LSMs.
type Enforcement struct {
	Section
	// SigEnforce is true when the kernel refuses unsigned modules:
	// /sys/module/module/parameters/sig_enforce is Y, or
	// module.sig_enforce=1 is on the command line.
	SigEnforce bool `json:"sig_enforce"`
	// SigEnforceSource says where SigEnforce came from: "sysfs",
	// "cmdline" or "" when neither says so.
	SigEnforceSource string `json:"sig_enforce_source"`
	// Lockdown is none, integrity or confidentiality (the kernel's
	// modes); "unknown" when securityfs is not readable or shows another
	// mode.
	Lockdown string `json:"lockdown"`
	// Sysctls, null when absent.
	ModulesDisabled         *int64 `json:"modules_disabled"`
	KexecLoadDisabled       *int64 `json:"kexec_load_disabled"`
	KptrRestrict            *int64 `json:"kptr_restrict"`
	DmesgRestrict           *int64 `json:"dmesg_restrict"`
	PerfEventParanoid       *int64 `json:"perf_event_paranoid"`
	UnprivilegedBPFDisabled *int64 `json:"unprivileged_bpf_disabled"`
	PtraceScope             *int64 `json:"ptrace_scope"`
	// LSM lists the active LSMs in order (/sys/kernel/security/lsm).
	LSM []string `json:"lsm"`
	// SELinux is enforcing, permissive or disabled.
	SELinux string `json:"selinux"`
	// AppArmor is enabled or disabled, with profile counts by mode.
	AppArmor         string           `json:"apparmor"`
	AppArmorProfiles map[string]int64 `json:"apparmor_profiles"`
	// IPE and EVM are present only when the kernel has them.
	IPE *IPE `json:"ipe"`
	EVM *EVM `json:"evm"`
}

// IPE is the Integrity Policy Enforcement LSM's state.
type IPE struct {
	Enforce      bool   `json:"enforce"`
	ActivePolicy string `json:"active_policy"`
}

// EVM is the Extended Verification Module's state
// (/sys/kernel/security/evm, or integrity/evm/evm).
type EVM struct {
	Value          int64 `json:"value"`
	HMAC           bool  `json:"hmac"`
	X509           bool  `json:"x509"`
	MetadataWrites bool  `json:"allow_metadata_writes"`
	SetupComplete  bool  `json:"setup_complete"`
}

// Debug says whether the kernel can be debugged, and which settings relax
// signing.
type Debug struct {
	Section
	KernelDebugging bool `json:"kernel_debugging"`
	// Evidence lists what shows debugging: "cmdline:kgdboc=ttyS0",
	// "kgdboc:ttyS0", "cmdline:kgdbwait", "sysrq:1".
	Evidence []string `json:"evidence"`
	// Sysrq is /proc/sys/kernel/sysrq (1 = every function), null if absent.
	Sysrq *int64 `json:"sysrq"`
	// RelaxedSigning lists signs that signing is relaxed: "lockdown=none",
	// "module.sig_enforce=0", "efi=debug".
	RelaxedSigning []string `json:"relaxed_signing"`
}

// IMA holds the claims read from the IMA runtime measurement list
// (ima.entries, ima.pcr10.sha256, ...). An appraiser compares PCR10 with
// the quoted PCR 10; the list may have grown since it was read, which the
// appraiser handles by replaying (ima.ReplayUntil) the list it is sent.
type IMA struct {
	Section
	// Entries is the number of measurements.
	Entries int `json:"entries"`
	// Violations counts entries with a zero template digest (a file
	// measured while open for writing, or written while measured).
	Violations int `json:"violations"`
	// PCR10 is the replayed value of PCR 10 per bank, lowercase hex.
	PCR10 IMAPCR `json:"pcr10"`
	// TemplateHashMismatches counts entries whose data does not hash to
	// their listed template digest: the list was changed after the kernel
	// measured it.
	TemplateHashMismatches int `json:"template_hash_mismatches"`
	// Templates counts entries by template name.
	Templates map[string]int `json:"templates"`
	// Offset is the number of bytes of the list consumed.
	Offset int64 `json:"offset"`
	// BootAggregate is the boot_aggregate entry's digest, "algo:hex",
	// when the list starts with one.
	BootAggregate string `json:"boot_aggregate,omitempty"`
}

// IMAPCR is a PCR value in the SHA-1 and SHA-256 banks.
type IMAPCR struct {
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
}

// Kernel identifies the running kernel and boot.
type Kernel struct {
	Section
	Release  string `json:"release"`
	Version  string `json:"version"`
	Cmdline  string `json:"cmdline"`
	BootID   string `json:"boot_id"`
	UptimeS  int64  `json:"uptime_s"`
	Hostname string `json:"hostname"`
}

// MeasuredBoot holds the claims read from the TCG firmware event log.
// They say what the log records; they are attested only when PCRs, the
// replayed values, equal the values the TPM quotes.
type MeasuredBoot struct {
	Section
	// Format is "tcg1.2-sha1" or "crypto-agile" ("" when not parsed).
	Format string `json:"format"`
	// Events counts the log's events, the Spec ID event included.
	Events int `json:"events"`
	// PCRs are the replayed values: bank ("sha256") → PCR index ("0") →
	// lowercase hex, for the PCRs the log extends.
	PCRs map[string]map[string]string `json:"pcrs"`
	// SecureBootVariables are the EV_EFI_VARIABLE_DRIVER_CONFIG events of
	// PCR 7 (SecureBoot, PK, KEK, db, dbx, SbatLevel…).
	SecureBootVariables []LoggedVariable `json:"secure_boot_variables"`
	// BootApplications are the EV_EFI_BOOT_SERVICES_APPLICATION events.
	BootApplications []LoggedImage `json:"boot_applications"`
	// KernelCmdline is the last kernel command line grub measured.
	KernelCmdline string `json:"kernel_cmdline"`
	// KernelCmdlines are all of them, in order.
	KernelCmdlines []string `json:"kernel_cmdlines"`
	// GrubCommands are the first commands grub measured (at most 256);
	// GrubCommandCount counts them all.
	GrubCommands     []string `json:"grub_commands"`
	GrubCommandCount int      `json:"grub_command_count"`
	// ShimEvents are shim's measurements (PCR 14 MokList events, and its
	// variables in PCR 7).
	ShimEvents []LoggedShimEvent `json:"shim_events"`
	// Separators maps a PCR index to "ok" (0x00000000), "error"
	// (0x00000001 or 0xFFFFFFFF) or "invalid" (other data in PCRs 0–7, or
	// data that does not hash to the event's digests).
	Separators map[string]string `json:"separators"`
	// Actions are the EV_EFI_ACTION (and EV_ACTION) strings, in order.
	Actions []string `json:"actions"`
	// Problems are events that could not be decoded, or whose data does
	// not match their digests, and lists cut to the bounds.
	Problems []string `json:"problems"`
}

// LoggedVariable is a measured UEFI variable.
type LoggedVariable struct {
	Name string `json:"name"`
	GUID string `json:"guid"`
	// Digest is the event's SHA-256 digest ("" in a log without that
	// bank); Digests holds every bank's.
	Digest  string            `json:"digest"`
	Digests map[string]string `json:"digests"`
	// Verified is true when the event data hashes to its digests.
	Verified bool `json:"verified"`
	// Enabled is set for the SecureBoot variable only, when verified.
	Enabled *bool `json:"enabled,omitempty"`
}

// LoggedImage is a measured boot application: its Authenticode digests
// and, when the event's device path decodes, its file path.
type LoggedImage struct {
	Path       string            `json:"path"`
	DevicePath string            `json:"device_path"`
	Digests    map[string]string `json:"digests"`
}

// LoggedShimEvent is one of shim's measurements.
type LoggedShimEvent struct {
	PCR     uint32            `json:"pcr"`
	Type    string            `json:"type"`
	Name    string            `json:"name"`
	Digest  string            `json:"digest"`
	Digests map[string]string `json:"digests"`
}

// Modules lists the loaded kernel modules, each judged by the
// code-integrity engine, and the modules some kernel view hides.
type Modules struct {
	Section
	Loaded []LoadedModule `json:"loaded"`
	Hidden []HiddenModule `json:"hidden"`
	// Views names the views the cross-check compared (those readable).
	Views []string `json:"views"`
	// Allocations counts the kernel's module allocations against the
	// modules listed: a module that removed itself from every list still
	// holds its memory.
	Allocations ModuleAllocations `json:"allocations"`
}

// ModuleAllocations compares the module loader's allocations in
// /proc/vmallocinfo (one core region per loaded module, two while its
// init region is not yet freed) with the modules /proc/modules and sysfs
// list. It is read when /proc/vmallocinfo is (root; it still is under
// lockdown=confidentiality, where tracefs and kallsyms addresses are not).
type ModuleAllocations struct {
	// Section is "ok" when vmallocinfo was read, "unavailable" when it
	// could not be.
	Section
	// Count is the allocations whose caller is the module loader
	// (load_module, move_module or module_alloc).
	Count int `json:"count"`
	// Listed is the modules /proc/modules and sysfs list, in any state.
	Listed int `json:"listed"`
	// Unlisted is Count minus Listed when positive, in two readings: that
	// many modules hold memory and are in no list.
	Unlisted int `json:"unlisted"`
	// UnlistedSizes are the sizes (bytes, with vmalloc's guard page) of
	// the allocations no listed module's size accounts for, largest
	// first; empty when Unlisted is 0.
	UnlistedSizes []int64 `json:"unlisted_sizes"`
}

// LoadedModule is one module of /proc/modules.
type LoadedModule struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Taint is the kernel's own taint letters for this module, as
	// /proc/modules shows them (P F C O E K X T N, in that order; the
	// loading/unloading marks + and - are left out). The kernel sets E
	// when it loaded the module without a valid signature, whatever the
	// file on disk carries: compare it with Signature.
	Taint string `json:"taint"`
	// Path is the module file for the running release, from modules.dep;
	// "" when no file is known.
	Path string `json:"path"`
	// SHA256 is the file's digest when it was judged.
	SHA256 string `json:"sha256,omitempty"`
	// Signature is what is known of the file's signature: "signed",
	// "unsigned", or "unknown" when the file was not judged (Judged is
	// false; Reasons says why when a file was looked for). A module
	// whose file cannot be found or read is unknown, never unsigned.
	Signature string `json:"signature"`
	// Signed reports a module signature present on the file: Signature
	// is "signed". It is false for an unknown module too; read Signature.
	Signed bool `json:"signed"`
	// Signer is the subject common name of the first valid signature's
	// signer, else of the first signature's (as modinfo's signer).
	Signer string `json:"signer"`
	// Allowed is the engine's verdict; false when the file was not judged
	// (Judged false).
	Allowed bool `json:"allowed"`
	// Judged is true when the code-integrity engine read and judged the
	// file. When it is false, Signature is "unknown" and Reasons holds
	// not-found (no file for the running release) or unreadable (a file
	// that could not be read); both are empty without an engine.
	Judged bool `json:"judged"`
	// Reasons are the verdict's stable reason codes.
	Reasons []reason.Code `json:"reasons"`
}

// HiddenModule is a module that some views list and others do not.
type HiddenModule struct {
	Name        string   `json:"name"`
	SeenIn      []string `json:"seen_in"`
	MissingFrom []string `json:"missing_from"`
}

// The views of loaded modules.
const (
	ViewProcModules = "proc_modules" // /proc/modules
	ViewSysfs       = "sysfs"        // /sys/module/*/initstate
	ViewKallsyms    = "kallsyms"     // [module] tags in /proc/kallsyms
	// ViewFtrace is the [module] tags of the functions ftrace can trace
	// (tracefs available_filter_functions). It only testifies: a module
	// with functions there that no list shows is hidden; a listed module
	// without traceable functions is not.
	ViewFtrace = "ftrace"
	// ViewBTF is the modules with type information in /sys/kernel/btf
	// (one file per module built with BTF, CONFIG_DEBUG_INFO_BTF_MODULES;
	// the kernel adds it at load and removes it at unload, whatever the
	// modules list says). It only testifies, as ftrace does.
	ViewBTF = "btf"
)

// Processes holds the critical processes' state and the processes hidden
// from /proc's listing.
type Processes struct {
	Section
	// Count is the number of processes /proc lists.
	Count    int             `json:"count"`
	Critical []CriticalState `json:"critical"`
	Hidden   []HiddenProcess `json:"hidden"`
	// Probed is the highest PID the cross-view probed.
	Probed int `json:"probed"`
}

// Problem codes of a critical process, stable.
const (
	ProblemNotRunning     = "not-running"
	ProblemExeMismatch    = "exe-mismatch"
	ProblemExeDeleted     = "exe-deleted"
	ProblemPtraced        = "ptraced"
	ProblemLDPreload      = "ld-preload"
	ProblemSignerMismatch = "signer-mismatch"
	ProblemUnreadable     = "unreadable"
)

// CriticalState is what was found for one configured critical process.
type CriticalState struct {
	Name    string `json:"name"`
	Exe     string `json:"exe"`
	Running bool   `json:"running"`
	PIDs    []int  `json:"pids"`
	// ExeSHA256 is the running image's digest (of the first PID).
	ExeSHA256   string `json:"exe_sha256"`
	DigestMatch bool   `json:"digest_match"`
	ExeDeleted  bool   `json:"exe_deleted"`
	Ptraced     bool   `json:"ptraced"`
	TracerPIDs  []int  `json:"tracer_pids"`
	LDPreload   bool   `json:"ld_preload"`
	// Problems lists the stable problem codes; empty means healthy.
	Problems []string `json:"problems"`
	OK       bool     `json:"ok"`
}

// HiddenProcess is a thread group that answers a probe by PID but is
// missing from /proc's directory listing.
type HiddenProcess struct {
	PID         int      `json:"pid"`
	Name        string   `json:"name"`
	Exe         string   `json:"exe"`
	SeenIn      []string `json:"seen_in"`
	MissingFrom []string `json:"missing_from"`
}

// SecureBoot holds the claims read from efivars and the boot files.
//
// Every flag fails closed: Enabled is true only for a SecureBoot variable
// holding exactly the byte 1, and a variable that breaks its format sets
// the section's status to "error" (naming the variable) while the rest is
// still reported.
type SecureBoot struct {
	Section
	// Enabled: the firmware enforces Secure Boot (SecureBoot = 1).
	Enabled bool `json:"enabled"`
	// SetupMode: no platform key is enrolled, so the firmware checks no
	// signatures and anyone may enroll keys (SetupMode = 1).
	SetupMode bool `json:"setup_mode"`
	// AuditMode and DeployedMode are the UEFI 2.5 mode variables, when
	// the firmware has them.
	AuditMode    *bool `json:"audit_mode,omitempty"`
	DeployedMode *bool `json:"deployed_mode,omitempty"`
	// MokSBState is shim's validation state, when shim mirrored it
	// (MokSBStateRT exists only when the machine owner changed it).
	MokSBState *MokSBState `json:"mok_sb_state,omitempty"`
	// SbatLevel is the SBAT revocation level shim applies (SbatLevelRT),
	// when present.
	SbatLevel string `json:"sbat_level,omitempty"`
	// MokListTrusted is shim's MokListTrustedRT: set, the kernel trusts
	// the MOK certificates (mok) for modules, as its .machine keyring.
	// Nil when the host has no such variable.
	MokListTrusted *bool `json:"mok_list_trusted,omitempty"`

	// The signature databases, each when its variable exists: the
	// platform key, the key exchange keys, the allowed and forbidden
	// databases, and shim's machine-owner allow and deny lists
	// (MokListRT, MokListXRT).
	PK   *SignatureDB `json:"pk,omitempty"`
	KEK  *SignatureDB `json:"kek,omitempty"`
	DB   *SignatureDB `json:"db,omitempty"`
	DBX  *SignatureDB `json:"dbx,omitempty"`
	MOK  *SignatureDB `json:"mok,omitempty"`
	MOKX *SignatureDB `json:"mokx,omitempty"`

	// BootFiles are the EFI binaries under /boot/efi and the kernels
	// /boot/vmlinuz-*, sorted by path, each judged by the code-integrity
	// engine when the Measurer has one.
	BootFiles []BootFile `json:"boot_files"`
}

// MokSBState is shim's MokSBStateRT variable. The machine owner sets it
// with `mokutil --disable-validation`; shim then mirrors it at every boot.
// A first byte of 1 means shim's signature validation is DISABLED: shim
// starts any second-stage loader and kernel, signed or not, even though
// the firmware's Secure Boot is on. Shim treats every other value as
// validation enabled, and so does this report.
type MokSBState struct {
	ValidationDisabled bool `json:"validation_disabled"`
	// Value is the variable's first byte.
	Value int `json:"value"`
}

// SignatureDB summarizes one signature database variable.
type SignatureDB struct {
	// Attributes are the variable's attributes ("NV|BS|RT|AT" for an
	// authenticated database); "" for a list read from shim's MOK
	// configuration table, which has none.
	Attributes string `json:"attributes,omitempty"`
	// Lists and Entries count the EFI_SIGNATURE_LISTs and their entries.
	Lists   int `json:"lists"`
	Entries int `json:"entries"`
	// ByType counts entries by signature type: "x509", "sha256",
	// "x509_sha256"... (efi.TypeName; an unknown type by its GUID).
	ByType map[string]int `json:"by_type"`
	// Certificates are the X.509 entries, in database order.
	Certificates []DBCertificate `json:"certificates"`
	// SHA256 lists every EFI_CERT_SHA256 entry (Authenticode image hashes),
	// as lower-case hex, sorted; duplicates are kept, so its length is
	// ByType["sha256"].
	SHA256 []string `json:"sha256"`
	// Digest is the SHA-256 of the variable's whole data (without the
	// efivarfs attribute prefix), whatever it holds.
	Digest string `json:"digest"`
	// Error says why the database did not parse; what precedes the fault
	// is summarized.
	Error string `json:"error,omitempty"`
}

// DBCertificate is one X.509 entry of a signature database.
type DBCertificate struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	// Serial is the serial number in hex.
	Serial string `json:"serial"`
	// SHA256 is the hash of the entry's data (the certificate's DER).
	SHA256 string `json:"sha256"`
	// NotAfter is the end of the validity period, RFC 3339 in UTC.
	NotAfter string `json:"not_after,omitempty"`
	// Owner is the entry's SignatureOwner GUID.
	Owner string `json:"owner"`
	// Error is set for an entry that is not a parsable certificate; only
	// SHA256 and Owner are then known.
	Error string `json:"error,omitempty"`
}

// PlatformVerdict is a boot file's verdict under the host's own Secure
// Boot databases.
type PlatformVerdict struct {
	Allowed bool          `json:"allowed"`
	Reasons []reason.Code `json:"reasons"`
	// Signer is the first valid signature's signer common name.
	Signer string `json:"signer"`
}

// BootFile is one boot binary judged by the code-integrity engine.
type BootFile struct {
	// Path is the host path.
	Path string `json:"path"`
	// SHA256 is the digest of the whole file.
	SHA256 string `json:"sha256"`
	// AuthenticodeSHA256 is the Authenticode image hash: what firmware
	// looks up in db and dbx.
	AuthenticodeSHA256 string `json:"authenticode_sha256,omitempty"`
	// Judged is false when the Measurer has no engine: only SHA256 is
	// then known, and Signed and Allowed are false.
	Judged bool `json:"judged"`
	// Signed reports an Authenticode signature on the file.
	Signed bool `json:"signed"`
	// Signer is the subject common name of the first valid signature's
	// signer ("" when no signature is valid).
	Signer  string        `json:"signer"`
	Allowed bool          `json:"allowed"`
	Reasons []reason.Code `json:"reasons"`
	// InDBX is true when the Authenticode SHA-256 is in dbx: the firmware
	// refuses the file, and so does the report (blocklisted-hash).
	InDBX bool `json:"in_dbx"`
	// Platform is the file judged as this host's firmware and shim judge
	// it (uefi mode: nested signatures ignored, validity periods ignored):
	// anchored in the host's db and MokListRT, denied by its dbx and
	// MokListXRT. Nil without an engine or without the host's variables.
	Platform *PlatformVerdict `json:"platform,omitempty"`
	// Error says why the file could not be read.
	Error string `json:"error,omitempty"`
}

// Taint is the kernel's taint state and the part no visible module
// explains.
type Taint struct {
	Section
	Value uint64 `json:"value"`
	// Flags are the kernel's letters for the set bits, in bit order.
	Flags []string `json:"flags"`
	// Unexplained are module-attributable letters set in the kernel's
	// taint that no visible module carries: E (unsigned module) set while
	// every listed module is signed hints at hidden code.
	Unexplained []string `json:"unexplained"`
}
