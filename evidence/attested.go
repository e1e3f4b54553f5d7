package evidence

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/ima"
)

// Provenance says who vouches for a claim (docs/threat-model.md).
type Provenance string

const (
	// ProvenanceAttested: derived by the verifier from data the TPM
	// signed: the event log replayed to the quoted PCRs, the IMA list
	// replayed to PCR 10.
	ProvenanceAttested Provenance = "attested"
	// ProvenanceCorroborated: a host-reported claim an attested fact
	// confirms (module.sig_enforce=1 on the measured command line).
	ProvenanceCorroborated Provenance = "corroborated"
	// ProvenanceAsserted: the judged host's word only (lockdown, the
	// module views, processes): as honest as the running kernel.
	ProvenanceAsserted Provenance = "asserted"
)

// Facts are what the verifier derived from TPM-signed data. Boot is set
// only when the firmware event log verified (Result.EventLogVerified),
// IMA only when the IMA list did (Result.IMAVerified). The policy reads
// them as input.attested (docs/attestation-policy.md).
type Facts struct {
	Boot *BootFacts `json:"boot"`
	IMA  *IMAFacts  `json:"ima"`
}

// BootFacts are derived from a verified firmware event log. Only what
// the log's digests cover is used: variable and grub string events whose
// data hashes to their digests, and the boot applications' digests (the
// firmware's Authenticode hashes of the images). Device paths and grub's
// file names are not covered by a digest; they are labels only.
type BootFacts struct {
	// LogSHA256 is the SHA-256 of the verified log.
	LogSHA256 string `json:"log_sha256"`
	// PCRs are the SHA-256 PCRs the log was checked against, sorted.
	PCRs []int `json:"pcrs"`
	// SecureBoot is the measured SecureBoot variable (false when not
	// measured: SecureBootMeasured says which).
	SecureBoot         bool `json:"secure_boot"`
	SecureBootMeasured bool `json:"secure_boot_measured"`
	// SetupMode: the PK was measured empty (or not at all): the firmware
	// verifies nothing.
	SetupMode bool `json:"setup_mode"`
	// Variables are the measured Secure Boot databases by name (PK, KEK,
	// db, dbx), each as the firmware measured it before any image ran.
	Variables map[string]*VariableFact `json:"variables"`
	// Authorities are the EV_EFI_VARIABLE_AUTHORITY events: the database
	// entries (or shim's certificates) that verified a loaded image.
	Authorities []AuthorityFact `json:"authorities"`
	// BootApplications are PCR 4's EV_EFI_BOOT_SERVICES_APPLICATION
	// events, in order.
	BootApplications []BootApp `json:"boot_applications"`
	// Kernel is the boot application the boot loader started after it
	// measured the kernel command line (or, without a grub command line,
	// the last boot application); nil when PCR 4 holds no kernel.
	Kernel *BootApp `json:"kernel"`
	// KernelCmdline is the last command line grub measured into PCR 8
	// (without grub's "kernel_cmdline: " prefix); CmdlineMeasured says
	// whether there was one.
	KernelCmdline   string `json:"kernel_cmdline"`
	CmdlineMeasured bool   `json:"cmdline_measured"`
	// CmdlineLockdown is the highest lockdown= on that command line
	// (each raises the kernel's lockdown, none lowers it: "none",
	// "integrity", "confidentiality"), "" when it sets none;
	// CmdlineSigEnforce is set when it has module.sig_enforce=1 (or y,
	// Y). The kernel cannot run with less than they say.
	CmdlineLockdown   string `json:"cmdline_lockdown"`
	CmdlineSigEnforce bool   `json:"cmdline_sig_enforce"`
	// GrubFiles are the files grub measured into PCR 9 (their names are
	// labels; the digests are the files').
	GrubFiles []string `json:"grub_files"`
	// Initrd: the Linux EFI stub measured the initrd into PCR 9.
	Initrd bool `json:"initrd"`
	// Shim are shim's measurements; nil when shim measured nothing.
	Shim *ShimFacts `json:"shim"`
}

// VariableFact is one measured signature database.
type VariableFact struct {
	// SHA256 is the hex SHA-256 of the variable's data.
	SHA256 string `json:"sha256"`
	// Entries counts its signatures; Malformed is set when the data is
	// not a valid signature database (then Entries counts the lists
	// before the fault).
	Entries   int  `json:"entries"`
	Malformed bool `json:"malformed"`
	// Hashes are the EFI_CERT_SHA256 entries (Authenticode hashes), hex.
	Hashes []string `json:"hashes"`
	// Placeholders counts SHA-256 entries that are the hash of nothing
	// (e3b0c442…, the one entry of OVMF's shipped dbx): they revoke no
	// image, so they do not make a dbx current.
	Placeholders int `json:"placeholders"`
	// Certificates are the X.509 entries' subjects.
	Certificates []string `json:"certificates"`
	// Revokes are what the database revokes as the firmware reads a
	// forbidden database (efi.Revokes): "kind:hex", sorted. Meaningful
	// for dbx only; the appraisal reads the revocations the host
	// enforces from it.
	Revokes []string `json:"revokes"`
}

// AuthorityFact is one EV_EFI_VARIABLE_AUTHORITY event.
type AuthorityFact struct {
	Event int    `json:"event"`
	Name  string `json:"name"`
	GUID  string `json:"guid"`
	// SHA256 is the hex SHA-256 of the event's variable data.
	SHA256 string `json:"sha256"`
	// Subject is the certificate's subject when the data holds one.
	Subject string `json:"subject,omitempty"`
}

// BootApp is one measured boot application.
type BootApp struct {
	Event int `json:"event"`
	// Path is the device path's file, "" for a memory device path (a
	// label: the event's digest does not cover it).
	Path string `json:"path"`
	// SHA256 is the image's Authenticode SHA-256, hex: attested.
	SHA256 string `json:"sha256"`
	// Authority is the name of the authority event logged last before
	// this image ("db", "Shim", "MokListRT"…), "" when none was. Firmware
	// and shim log each authority once, so a later image verified by the
	// same certificate shows the earlier event.
	Authority string `json:"authority"`
}

// ShimFacts are shim's measurements.
type ShimFacts struct {
	// MokList, MokListX and MokListTrusted are the hex SHA-256 digests of
	// the PCR 14 events of those names ("" when not measured).
	MokList        string `json:"mok_list"`
	MokListX       string `json:"mok_list_x"`
	MokListTrusted string `json:"mok_list_trusted"`
	// SbatLevel is the measured SbatLevel variable's text, "" when not
	// measured.
	SbatLevel string `json:"sbat_level"`
	// PCR14 is set when shim extended PCR 14 at all.
	PCR14 bool `json:"pcr14"`
}

// IMAFacts are derived from the IMA list entries replayed to the quoted
// PCR 10 in this round (Modules and Firmware accumulate across rounds in
// the appraiser's state).
type IMAFacts struct {
	// Entries counts the replayed entries, over all rounds.
	Entries int `json:"entries"`
	// BootAggregate is entry 0's "algo:hex"; BootAggregateMatches is set
	// when it is the SHA-256 over the quoted SHA-256 PCRs 0–9, as the
	// kernel computes it (ima_calc_boot_aggregate): the list belongs to
	// the quoted boot.
	BootAggregate        string `json:"boot_aggregate"`
	BootAggregateMatches bool   `json:"boot_aggregate_matches"`
	// Modules are the kernel modules the list measured (the base name,
	// as the kernel names the module: dashes as underscores, no
	// extension), sorted and without duplicates.
	Modules []string `json:"modules"`
	// Firmware are the firmware files measured under /lib/firmware.
	Firmware []string `json:"firmware"`
	// Files are the files measured in this round: path, digest,
	// template, when Options.IMAFiles asks for them (the list can be
	// long). Not given to the policy.
	Files []IMAFile `json:"-"`
}

// IMAFile is one measured file.
type IMAFile struct {
	Path     string
	Digest   string // "algo:hex"
	Template string
}

// Bounds on what a round's IMA facts keep.
const (
	maxIMAModules = 4096
	maxIMAFiles   = 1 << 16
)

// firmwareStructure checks that the log is a firmware's measured boot:
// each of PCRs 0–7 closed by one well-formed EV_SEPARATOR of value 0,
// and PCR 0 holding the firmware's own measurements before its
// separator. It returns why not.
func firmwareStructure(l *eventlog.Log, s *eventlog.Summary) string {
	seps := map[uint32]int{}
	for _, sep := range s.Separators {
		if sep.PCR > 7 {
			continue
		}
		if sep.Status != eventlog.SeparatorOK {
			return fmt.Sprintf("PCR %d's separator is %s", sep.PCR, sep.Status)
		}
		seps[sep.PCR]++
	}
	for p := uint32(0); p <= 7; p++ {
		switch seps[p] {
		case 1:
		case 0:
			return fmt.Sprintf("PCR %d has no separator: not a firmware's measured boot", p)
		default:
			return fmt.Sprintf("PCR %d has %d separators", p, seps[p])
		}
	}
	for i := range l.Events {
		e := &l.Events[i]
		if e.PCR != 0 || e.Type == eventlog.EvNoAction {
			continue
		}
		if e.Type == eventlog.EvSeparator {
			return "PCR 0 holds no firmware measurement before its separator"
		}
		return ""
	}
	return "PCR 0 holds no event"
}

const (
	grubCmdlinePrefix = "kernel_cmdline: "
	// linuxInitrdEventID is the Linux EFI stub's tagged event for the
	// initrd (INITRD_EVENT_TAG_ID, drivers/firmware/efi/libstub).
	linuxInitrdEventID = 0x8F3B22EC
)

// deriveBoot derives the boot facts from a log whose SHA-256 bank
// replayed to the quoted PCRs pcrs.
func deriveBoot(data []byte, l *eventlog.Log, s *eventlog.Summary, pcrs []int) *BootFacts {
	sum := sha256.Sum256(data)
	b := &BootFacts{
		LogSHA256: hex.EncodeToString(sum[:]), PCRs: slices.Sorted(slices.Values(pcrs)),
		Variables: map[string]*VariableFact{}, Authorities: []AuthorityFact{},
		BootApplications: []BootApp{}, GrubFiles: []string{},
	}
	if sb := s.SecureBoot(); sb != nil {
		b.SecureBoot, b.SecureBootMeasured = *sb, true
	}
	shim := &ShimFacts{}
	shimSeen := false
	for _, v := range s.SecureBootVariables {
		if !v.Verified || v.Trailing != 0 {
			continue
		}
		switch {
		case v.GUID == eventlog.GUIDGlobalVariable && (v.Name == "PK" || v.Name == "KEK"),
			v.GUID == eventlog.GUIDImageSecurityDatabase && (v.Name == "db" || v.Name == "dbx"):
			// The first measurement is the one in force when images
			// were verified.
			if _, ok := b.Variables[v.Name]; !ok {
				b.Variables[v.Name] = variableFact(v.Data)
			}
		case v.GUID == eventlog.GUIDShimLock && (v.Name == "SbatLevel" || v.Name == "SbatLevelRT"):
			shim.SbatLevel, shimSeen = strings.TrimRight(string(v.Data), "\x00"), true
		}
	}
	pk := b.Variables["PK"]
	b.SetupMode = pk == nil || pk.Entries == 0
	for _, a := range s.Authorities {
		if !a.Verified {
			continue
		}
		if a.GUID == eventlog.GUIDShimLock && (a.Name == "SbatLevel" || a.Name == "SbatLevelRT") {
			// shim logs its SBAT policy as an authority event; it
			// verified no image.
			shim.SbatLevel, shimSeen = strings.TrimRight(string(a.Data), "\x00"), true
			continue
		}
		h := sha256.Sum256(a.Data)
		af := AuthorityFact{Event: a.Event, Name: a.Name, GUID: a.GUID, SHA256: hex.EncodeToString(h[:])}
		af.Subject = certSubject(a.Data)
		b.Authorities = append(b.Authorities, af)
	}

	// One pass in log order: boot applications with the authority before
	// them, grub's command line, the EFI stub's initrd, shim's PCR 14.
	authority, cmdlineEvent, linuxEvent := "", -1, -1
	authIdx := 0
	for i := range l.Events {
		e := &l.Events[i]
		for authIdx < len(b.Authorities) && b.Authorities[authIdx].Event <= e.Num {
			authority = b.Authorities[authIdx].Name
			authIdx++
		}
		switch {
		case e.Type == eventlog.EvEFIBootServicesApp && e.PCR == 4:
			d := e.Digest(eventlog.AlgSHA256)
			if d == nil {
				continue
			}
			app := BootApp{Event: e.Num, SHA256: hex.EncodeToString(d), Authority: authority}
			for _, im := range s.BootApplications {
				if im.Event == e.Num {
					app.Path = im.Path
				}
			}
			b.BootApplications = append(b.BootApplications, app)
		case e.Type == eventlog.EvIPL && e.PCR == 8:
			raw := e.Data
			if j := bytes.IndexByte(raw, 0); j >= 0 {
				raw = raw[:j]
			}
			if p, ok := bytes.CutPrefix(raw, []byte(grubCmdlinePrefix)); ok && e.DataMatches(p) {
				b.KernelCmdline, b.CmdlineMeasured, cmdlineEvent = string(p), true, e.Num
			}
			if p, ok := bytes.CutPrefix(raw, []byte(grubCmdPrefix)); ok && isLinuxCommand(p) && e.DataMatches(p) {
				linuxEvent = e.Num
			}
		case e.Type == eventlog.EvIPL && e.PCR == 9:
			raw := e.Data
			if j := bytes.IndexByte(raw, 0); j >= 0 {
				raw = raw[:j]
			}
			b.GrubFiles = append(b.GrubFiles, strings.ToValidUTF8(string(raw), "\uFFFD"))
		case e.Type == eventlog.EvEventTag && e.PCR == 9:
			if len(e.Data) >= 8 && binary.LittleEndian.Uint32(e.Data) == linuxInitrdEventID {
				b.Initrd = true
			}
		case e.PCR == 14 && e.Type != eventlog.EvNoAction:
			shimSeen, shim.PCR14 = true, true
			d := hex.EncodeToString(e.Digest(eventlog.AlgSHA256))
			switch name := string(bytes.TrimRight(e.Data, "\x00")); name {
			case "MokList":
				shim.MokList = d
			case "MokListX":
				shim.MokListX = d
			case "MokListTrusted":
				shim.MokListTrusted = d
			}
		}
	}
	if shimSeen {
		b.Shim = shim
	}
	if b.CmdlineMeasured {
		b.CmdlineLockdown, b.CmdlineSigEnforce = cmdlineSecurity(b.KernelCmdline)
	}
	// grub's linux command reads the kernel, has shim verify and
	// measure it (PCR 4), then measures the command line (PCR 8): the
	// kernel is the first image after the last linux command.
	after := linuxEvent
	if after < 0 {
		after = cmdlineEvent
	}
	switch {
	case after >= 0:
		for i := range b.BootApplications {
			if b.BootApplications[i].Event > after {
				k := b.BootApplications[i]
				b.Kernel = &k
				break
			}
		}
	case len(b.BootApplications) > 0 && len(s.GrubCommands) == 0:
		// No grub: the last image the firmware or a loader started.
		k := b.BootApplications[len(b.BootApplications)-1]
		b.Kernel = &k
	}
	return b
}

const grubCmdPrefix = "grub_cmd: "

// LockdownRank orders the kernel's lockdown levels.
var LockdownRank = map[string]int{"none": 0, "integrity": 1, "confidentiality": 2}

// cmdlineSecurity reads the kernel's lockdown= and module.sig_enforce=
// parameters off a command line: the highest lockdown (lock_kernel_down
// only raises it), and whether signature enforcement is set.
func cmdlineSecurity(cmdline string) (lockdown string, sigEnforce bool) {
	rank := -1
	for _, a := range strings.Fields(cmdline) {
		switch a {
		case "module.sig_enforce=1", "module.sig_enforce=y", "module.sig_enforce=Y":
			sigEnforce = true
		}
		if v, ok := strings.CutPrefix(a, "lockdown="); ok {
			if r, ok := LockdownRank[v]; ok && r > rank {
				rank, lockdown = r, v
			}
		}
	}
	return lockdown, sigEnforce
}

// isLinuxCommand reports whether a grub command loads a Linux kernel
// (linux, linuxefi, linux16).
func isLinuxCommand(cmd []byte) bool {
	name, _, _ := bytes.Cut(cmd, []byte(" "))
	switch string(name) {
	case "linux", "linuxefi", "linux16":
		return true
	}
	return false
}

var emptySHA256 = sha256.Sum256(nil)

func variableFact(data []byte) *VariableFact {
	h := sha256.Sum256(data)
	f := &VariableFact{SHA256: hex.EncodeToString(h[:]), Hashes: []string{}, Certificates: []string{}}
	lists, err := efi.ParseSignatureLists(data)
	f.Malformed = err != nil
	entries := efi.Entries(lists)
	f.Revokes = efi.Revokes(entries, false)
	for _, e := range entries {
		f.Entries++
		switch {
		case e.Type == efi.CertSHA256 && e.Hash != nil:
			f.Hashes = append(f.Hashes, hex.EncodeToString(e.Hash))
			if bytes.Equal(e.Hash, emptySHA256[:]) {
				f.Placeholders++
			}
		case e.Certificate != nil:
			f.Certificates = append(f.Certificates, e.Certificate.Subject.String())
		}
	}
	return f
}

// certSubject is the subject of the certificate an authority event holds:
// an EFI_SIGNATURE_DATA (owner GUID, then DER) or bare DER.
func certSubject(d []byte) string {
	for _, b := range [][]byte{d, d[min(len(d), efi.OwnerSize):]} {
		if c, err := x509.ParseCertificate(b); err == nil {
			return c.Subject.String()
		}
	}
	return ""
}

// BootAggregate is the kernel's SHA-256 boot_aggregate ("sha256:hex")
// of the quoted SHA-256 PCRs (Result.PCRs["sha256"]), "" unless PCRs 0–9
// are all there.
func BootAggregate(quoted map[int]string) string {
	pcrs := make(map[int][]byte, 10)
	for i := 0; i <= 9; i++ {
		b, err := hex.DecodeString(quoted[i])
		if err != nil {
			return ""
		}
		pcrs[i] = b
	}
	return bootAggregate(pcrs)
}

// bootAggregate is the kernel's SHA-256 boot_aggregate of quoted SHA-256
// PCRs 0–9 (ima_calc_boot_aggregate: registers 8 and 9 are included for
// every bank but SHA-1), "" unless all ten are present.
func bootAggregate(pcrs map[int][]byte) string {
	h := sha256.New()
	for i := 0; i <= 9; i++ {
		v, ok := pcrs[i]
		if !ok || len(v) != sha256.Size {
			return ""
		}
		h.Write(v)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// imaCollector gathers the IMA facts from the entries a replay visits.
type imaCollector struct {
	withFiles bool
	modules   map[string]bool
	firmware  map[string]bool
	files     []IMAFile
}

func (c *imaCollector) visit(e *ima.Entry) {
	if !e.Known || e.Violation() || len(e.Name) == 0 {
		return
	}
	if c.withFiles && len(c.files) < maxIMAFiles {
		c.files = append(c.files, IMAFile{Path: string(e.Name), Digest: string(e.DigestAlgo) + ":" + hex.EncodeToString(e.FileDigest), Template: string(e.Template)})
	}
	if m := moduleName(e.Name); m != "" && len(c.modules) < maxIMAModules {
		if c.modules == nil {
			c.modules = map[string]bool{}
		}
		c.modules[m] = true
	}
	if (bytes.HasPrefix(e.Name, []byte("/lib/firmware/")) || bytes.HasPrefix(e.Name, []byte("/usr/lib/firmware/"))) && len(c.firmware) < maxIMAModules {
		if c.firmware == nil {
			c.firmware = map[string]bool{}
		}
		c.firmware[string(e.Name)] = true
	}
}

// ModuleName is the kernel's name for the module file at path (its base
// name without .ko and a compression suffix, dashes as underscores), or
// "" when path is no module file.
func ModuleName(path string) string { return moduleName([]byte(path)) }

var moduleExts = [...][]byte{[]byte(".ko"), []byte(".ko.xz"), []byte(".ko.zst"), []byte(".ko.gz")}

// moduleName is ModuleName of a path's bytes; it allocates only for a
// module file.
func moduleName(path []byte) string {
	base := path[bytes.LastIndexByte(path, '/')+1:]
	for _, ext := range moduleExts {
		if n, ok := bytes.CutSuffix(base, ext); ok && len(n) > 0 {
			return strings.ReplaceAll(string(n), "-", "_")
		}
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
