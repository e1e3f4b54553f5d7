package eventlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Well-known vendor GUIDs of measured variables.
const (
	// GUIDGlobalVariable is EFI_GLOBAL_VARIABLE (SecureBoot, PK, KEK).
	GUIDGlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
	// GUIDImageSecurityDatabase is EFI_IMAGE_SECURITY_DATABASE_GUID (db,
	// dbx).
	GUIDImageSecurityDatabase = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
	// GUIDShimLock is shim's SHIM_LOCK_GUID (MokList, SbatLevel, Shim).
	GUIDShimLock = "605dab50-e046-4300-abb6-3dd810dd8b23"
)

// Digests is an event's digest list.
type Digests []Digest

// Get returns the digest for alg, or nil.
func (ds Digests) Get(alg Alg) []byte {
	for _, d := range ds {
		if d.Alg == alg {
			return d.Value
		}
	}
	return nil
}

// Hex returns bank name → lowercase hex.
func (ds Digests) Hex() map[string]string {
	out := make(map[string]string, len(ds))
	for _, d := range ds {
		out[d.Alg.String()] = hex.EncodeToString(d.Value)
	}
	return out
}

// Summary is what a log says about the boot. It is only as trustworthy
// as the log: nothing here is attested until Replay matches the quoted
// PCRs, and even then only digests are, not event data. Where the
// specification defines an event's digest as the hash of its data, the
// data is checked against every digest of a known algorithm; an event that
// fails is listed in Problems (and a SecureBoot variable that fails does
// not report Enabled).
type Summary struct {
	// SecureBootVariables are EV_EFI_VARIABLE_DRIVER_CONFIG events of PCR
	// 7 (SecureBoot, PK, KEK, db, dbx, and what else firmware and shim
	// measure there, such as SbatLevel).
	SecureBootVariables []Variable
	// Authorities are EV_EFI_VARIABLE_AUTHORITY events of PCR 7: the
	// certificate (as a db entry, or shim's "Shim"/MokList entries) that
	// verified a loaded image.
	Authorities []Variable
	// BootApplications are EV_EFI_BOOT_SERVICES_APPLICATION events.
	BootApplications []Image
	// KernelCmdlines are the command lines grub measured ("kernel_cmdline:"
	// events of PCR 8), in order.
	KernelCmdlines []string
	// GrubCommands are the commands grub measured ("grub_cmd:" events of
	// PCR 8), in order.
	GrubCommands []string
	// GrubFiles are the files grub measured into PCR 9.
	GrubFiles []string
	// ShimEvents are shim's measurements: EV_IPL events of PCR 14 (MokList,
	// MokListX, MokListTrusted) and PCR 7 events of shim's variables.
	ShimEvents []ShimEvent
	// Separators are the EV_SEPARATOR events, in order.
	Separators []Separator
	// Actions are the EV_EFI_ACTION and EV_ACTION strings, in order.
	Actions []Action
	// Problems are events this summary could not decode or whose data
	// does not match their digests.
	Problems []Problem
}

// Variable is a measured UEFI_VARIABLE_DATA.
type Variable struct {
	Event   int
	PCR     uint32
	Name    string
	GUID    string
	Digests Digests
	// DataSize is the size of VariableData.
	DataSize int
	// Trailing counts bytes after VariableData (none in a well-formed
	// event; shim's "Shim" authority events have some).
	Trailing int
	// Verified is true when the event data hashes to every digest of a
	// known algorithm.
	Verified bool
	// Enabled is set for a verified SecureBoot variable of the global
	// variable GUID: its one data byte is 1 (an absent variable, measured
	// with no data, means disabled).
	Enabled *bool
	// Data is VariableData, a slice of the event's data (not a copy). It
	// is attested only when Verified and the log replays to the quote.
	Data []byte
}

// Image is a measured UEFI_IMAGE_LOAD_EVENT.
type Image struct {
	Event int
	PCR   uint32
	// Digests are the event digests: the image's Authenticode hash in
	// each bank.
	Digests Digests
	// DevicePath is the decoded device path ("" when the event data is not
	// a UEFI_IMAGE_LOAD_EVENT).
	DevicePath string
	// Path is the file path in the device path ("\EFI\debian\grubx64.efi"),
	// or "".
	Path string
}

// ShimEvent is one of shim's measurements.
type ShimEvent struct {
	Event int
	PCR   uint32
	Type  EventType
	// Name is the variable name, or for an EV_IPL event its description.
	Name    string
	GUID    string
	Digests Digests
}

// SeparatorStatus is the value an EV_SEPARATOR carries.
type SeparatorStatus string

const (
	// SeparatorOK is the normal separator, 0x00000000.
	SeparatorOK SeparatorStatus = "ok"
	// SeparatorError is the error separator: 0x00000001 (TCG PC Client
	// PFP, as EDK II logs it) or 0xFFFFFFFF (the value TCG 1.2 era firmware
	// uses).
	SeparatorError SeparatorStatus = "error"
	// SeparatorInvalid is any other data in PCRs 0 to 7 (in PCRs 8 and
	// up, which the OS loader owns, other values are its own separators
	// and count as ok), or data that does not hash to the event's
	// digests.
	SeparatorInvalid SeparatorStatus = "invalid"
)

// Separator is one EV_SEPARATOR event.
type Separator struct {
	Event  int
	PCR    uint32
	Status SeparatorStatus
}

// Action is one EV_EFI_ACTION or EV_ACTION event.
type Action struct {
	Event int
	PCR   uint32
	Text  string
}

// Problem is an event the summary could not use as it stands.
type Problem struct {
	Event  int
	PCR    uint32
	Type   EventType
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("event %d (%s, PCR %d): %s", p.Event, p.Type, p.PCR, p.Reason)
}

// SeparatorStates returns, per PCR, the status of its separators: the
// worst of them when there are several (invalid, then error, then ok).
func (s *Summary) SeparatorStates() map[uint32]SeparatorStatus {
	rank := map[SeparatorStatus]int{SeparatorOK: 0, SeparatorError: 1, SeparatorInvalid: 2}
	out := map[uint32]SeparatorStatus{}
	for _, sep := range s.Separators {
		if cur, ok := out[sep.PCR]; !ok || rank[sep.Status] > rank[cur] {
			out[sep.PCR] = sep.Status
		}
	}
	return out
}

// SecureBoot returns the SecureBoot variable's Enabled (nil when the log
// has no verified SecureBoot variable). With several, the last wins.
func (s *Summary) SecureBoot() *bool {
	var out *bool
	for _, v := range s.SecureBootVariables {
		if v.Name == "SecureBoot" && v.GUID == GUIDGlobalVariable {
			out = v.Enabled
		}
	}
	return out
}

const (
	grubCmdPrefix     = "grub_cmd: "
	grubCmdlinePrefix = "kernel_cmdline: "
)

// Summarize reads what the log says. It never fails: what it cannot
// decode goes to Problems.
func (l *Log) Summarize() *Summary {
	s := &Summary{
		SecureBootVariables: []Variable{}, Authorities: []Variable{}, BootApplications: []Image{},
		KernelCmdlines: []string{}, GrubCommands: []string{}, GrubFiles: []string{}, ShimEvents: []ShimEvent{},
		Separators: []Separator{}, Actions: []Action{}, Problems: []Problem{},
	}
	uintn := 8
	if l.SpecID != nil && l.SpecID.UintnSize == 1 {
		uintn = 4
	}
	for i := range l.Events {
		e := &l.Events[i]
		problem := func(format string, args ...any) {
			s.Problems = append(s.Problems, Problem{Event: e.Num, PCR: e.PCR, Type: e.Type, Reason: fmt.Sprintf(format, args...)})
		}
		switch {
		case e.Type == EvSeparator:
			st := SeparatorInvalid
			switch {
			case len(e.Data) != 4:
				problem("separator data is %d bytes, not 4", len(e.Data))
			case !dataMatches(e, e.Data):
				problem("separator data does not match its digests")
			default:
				switch v := binary.LittleEndian.Uint32(e.Data); {
				case v == 0:
					st = SeparatorOK
				case v == 1 || v == 0xffffffff:
					st = SeparatorError
				case e.PCR >= 8:
					// PCRs 8 and up belong to the OS loader, whose
					// separators are its own (Windows writes "WBCL").
					st = SeparatorOK
				default:
					problem("separator value 0x%08x", v)
				}
			}
			s.Separators = append(s.Separators, Separator{Event: e.Num, PCR: e.PCR, Status: st})

		case e.Type == EvEFIAction || e.Type == EvAction:
			if !dataMatches(e, e.Data) {
				problem("action string does not match its digests")
			}
			s.Actions = append(s.Actions, Action{Event: e.Num, PCR: e.PCR, Text: cString(e.Data)})

		case e.PCR == 7 && (e.Type == EvEFIVariableDriverCfg || e.Type == EvEFIVariableAuthority):
			v, err := parseVariable(e)
			if err != nil {
				problem("%v", err)
				break
			}
			if e.Type == EvEFIVariableDriverCfg {
				if !v.Verified {
					problem("variable %s does not match its digests", v.Name)
				}
				if v.Trailing != 0 {
					problem("variable %s: %d bytes after VariableData", v.Name, v.Trailing)
				}
				if v.Name == "SecureBoot" && v.GUID == GUIDGlobalVariable && v.Verified && v.Trailing == 0 {
					d := variableData(e, &v)
					switch {
					case len(d) == 0 || (len(d) == 1 && d[0] == 0):
						v.Enabled = new(bool)
					case len(d) == 1 && d[0] == 1:
						v.Enabled = new(bool)
						*v.Enabled = true
					default:
						problem("SecureBoot variable holds %x", d[:min(len(d), 16)])
					}
				}
				s.SecureBootVariables = append(s.SecureBootVariables, v)
			} else {
				s.Authorities = append(s.Authorities, v)
			}
			if v.GUID == GUIDShimLock {
				s.ShimEvents = append(s.ShimEvents, ShimEvent{Event: e.Num, PCR: e.PCR, Type: e.Type, Name: v.Name, GUID: v.GUID, Digests: e.Digests})
			}

		case e.Type == EvEFIBootServicesApp:
			img := Image{Event: e.Num, PCR: e.PCR, Digests: e.Digests}
			if dp, ok := imageDevicePath(e.Data, uintn); ok {
				p, err := ParseDevicePath(dp)
				if err != nil {
					problem("device path: %v", err)
				}
				img.DevicePath, img.Path = p.Text, p.File
			}
			s.BootApplications = append(s.BootApplications, img)

		case e.Type == EvIPL && e.PCR == 8:
			raw := e.Data
			if i := bytes.IndexByte(raw, 0); i >= 0 {
				raw = raw[:i]
			}
			var payload []byte
			switch {
			case bytes.HasPrefix(raw, []byte(grubCmdPrefix)):
				payload = raw[len(grubCmdPrefix):]
				s.GrubCommands = append(s.GrubCommands, cString(payload))
			case bytes.HasPrefix(raw, []byte(grubCmdlinePrefix)):
				payload = raw[len(grubCmdlinePrefix):]
				s.KernelCmdlines = append(s.KernelCmdlines, cString(payload))
			default:
				continue
			}
			// grub hashes the text after the prefix, up to its NUL.
			if !dataMatches(e, payload) {
				problem("grub string does not match its digests")
			}

		case e.Type == EvIPL && e.PCR == 9:
			s.GrubFiles = append(s.GrubFiles, cString(e.Data))

		case e.Type == EvIPL && e.PCR == 14:
			s.ShimEvents = append(s.ShimEvents, ShimEvent{Event: e.Num, PCR: e.PCR, Type: e.Type, Name: cString(e.Data), Digests: e.Digests})
		}
	}
	return s
}

// cString is the event data as text: up to the first NUL, invalid UTF-8
// replaced.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// DataMatches reports whether data hashes to every digest of the event
// whose algorithm is known, and at least one is: the event's data is
// what was measured (for the events whose digest the specification
// defines as the hash of their data, or of the part of it given).
func (e *Event) DataMatches(data []byte) bool { return dataMatches(e, data) }

func dataMatches(e *Event, data []byte) bool {
	checked := false
	for _, d := range e.Digests {
		h := d.Alg.New()
		if h == nil {
			continue
		}
		h.Write(data)
		if !bytes.Equal(h.Sum(nil), d.Value) {
			return false
		}
		checked = true
	}
	return checked
}

// parseVariable decodes UEFI_VARIABLE_DATA: VariableName GUID,
// UnicodeNameLength u64 (in CHAR16), VariableDataLength u64, the name and
// the data, which must fill the event exactly.
func parseVariable(e *Event) (Variable, error) {
	b := e.Data
	v := Variable{Event: e.Num, PCR: e.PCR, Digests: e.Digests}
	if len(b) < 32 {
		return v, fmt.Errorf("UEFI_VARIABLE_DATA is %d bytes, header needs 32", len(b))
	}
	nameLen := binary.LittleEndian.Uint64(b[16:])
	dataLen := binary.LittleEndian.Uint64(b[24:])
	rest := uint64(len(b) - 32)
	if nameLen > rest/2 || dataLen > rest-2*nameLen {
		return v, fmt.Errorf("UEFI_VARIABLE_DATA: name of %d characters and %d data bytes need more than the %d bytes left", nameLen, dataLen, rest)
	}
	v.GUID = GUID(b[:16])
	v.Name = utf16String(b[32 : 32+2*nameLen])
	v.DataSize = int(dataLen)
	v.Trailing = int(rest - 2*nameLen - dataLen)
	v.Verified = dataMatches(e, b)
	v.Data = b[32+2*nameLen : 32+2*nameLen+dataLen]
	return v, nil
}

// variableData returns VariableData of a decoded variable event.
func variableData(e *Event, v *Variable) []byte {
	end := len(e.Data) - v.Trailing
	return e.Data[end-v.DataSize : end]
}

// imageDevicePath returns the device path of a UEFI_IMAGE_LOAD_EVENT:
// ImageLocationInMemory (u64), ImageLengthInMemory, ImageLinkTimeAddress
// and LengthOfDevicePath (UINTN each), then the path, which must fill the
// event. A TPM 1.2 log does not say UINTN's size, so both are tried.
func imageDevicePath(b []byte, uintn int) ([]byte, bool) {
	try := func(n int) ([]byte, bool) {
		h := 8 + 3*n
		if len(b) < h {
			return nil, false
		}
		var l uint64
		if n == 8 {
			l = binary.LittleEndian.Uint64(b[h-8:])
		} else {
			l = uint64(binary.LittleEndian.Uint32(b[h-4:]))
		}
		if l == 0 || l != uint64(len(b)-h) {
			return nil, false
		}
		return b[h:], true
	}
	if dp, ok := try(uintn); ok {
		return dp, true
	}
	return try(12 - uintn)
}
