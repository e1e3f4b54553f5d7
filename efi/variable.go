package efi

import (
	"encoding/binary"
	"fmt"
	"path"
	"strings"
)

// EfivarsDir is where Linux mounts efivarfs.
const EfivarsDir = "/sys/firmware/efi/efivars"

// MokVariablesDir is where Linux (5.12 and later) exposes shim's MOK
// variable configuration table: the complete MOK lists, as raw data without
// the efivarfs attribute prefix, even when they are too large to be
// mirrored into runtime variables.
const MokVariablesDir = "/sys/firmware/efi/mok-variables"

// Attributes are a variable's EFI_VARIABLE_* attribute bits.
type Attributes uint32

// Attribute bits (UEFI 2.10 §8.2, GetVariable).
const (
	NonVolatile                       Attributes = 0x01
	BootServiceAccess                 Attributes = 0x02
	RuntimeAccess                     Attributes = 0x04
	HardwareErrorRecord               Attributes = 0x08
	AuthenticatedWriteAccess          Attributes = 0x10 // deprecated by UEFI 2.3.1
	TimeBasedAuthenticatedWriteAccess Attributes = 0x20
	AppendWrite                       Attributes = 0x40
	EnhancedAuthenticatedAccess       Attributes = 0x80
)

var attrNames = []struct {
	bit  Attributes
	name string
}{
	{NonVolatile, "NV"}, {BootServiceAccess, "BS"}, {RuntimeAccess, "RT"},
	{HardwareErrorRecord, "HR"}, {AuthenticatedWriteAccess, "AW"},
	{TimeBasedAuthenticatedWriteAccess, "AT"}, {AppendWrite, "AP"},
	{EnhancedAuthenticatedAccess, "EA"},
}

// String lists the set bits as efivar tools abbreviate them, joined by
// "|": "NV|BS|RT|AT". Unknown bits follow in hex; no bits give "0".
func (a Attributes) String() string {
	var parts []string
	rest := a
	for _, n := range attrNames {
		if a&n.bit != 0 {
			parts = append(parts, n.name)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "|")
}

// Variable is the content of an efivarfs file: the attributes and the data.
type Variable struct {
	Attributes Attributes
	// Data aliases the bytes given to ParseVariable.
	Data []byte
}

// ParseVariable parses an efivarfs file: a 4-byte little-endian attribute
// word followed by the variable's data. A file shorter than four bytes
// (the kernel never produces one) is ErrTruncated.
func ParseVariable(b []byte) (Variable, error) {
	if len(b) < 4 {
		return Variable{}, &ParseError{What: "efivarfs attribute prefix", Offset: 0, Err: ErrTruncated,
			Detail: fmt.Sprintf("%d bytes, need 4", len(b))}
	}
	return Variable{Attributes: Attributes(binary.LittleEndian.Uint32(b)), Data: b[4:]}, nil
}

// MarshalBinary returns the efivarfs file form of v.
func (v Variable) MarshalBinary() ([]byte, error) {
	out := make([]byte, 4, 4+len(v.Data))
	binary.LittleEndian.PutUint32(out, uint32(v.Attributes))
	return append(out, v.Data...), nil
}

// VarID names a variable: its name and vendor GUID.
type VarID struct {
	Name string
	GUID GUID
}

// Well-known variables.
var (
	// SecureBoot is 1 when the platform enforces Secure Boot.
	SecureBoot = VarID{"SecureBoot", GlobalVariable}
	// SetupMode is 1 while no PK is enrolled (signature checks are off).
	SetupMode = VarID{"SetupMode", GlobalVariable}
	// AuditMode and DeployedMode are the UEFI 2.5 mode variables.
	AuditMode    = VarID{"AuditMode", GlobalVariable}
	DeployedMode = VarID{"DeployedMode", GlobalVariable}
	PK           = VarID{"PK", GlobalVariable}
	KEK          = VarID{"KEK", GlobalVariable}
	DB           = VarID{"db", ImageSecurityDatabase}
	DBX          = VarID{"dbx", ImageSecurityDatabase}
	DBT          = VarID{"dbt", ImageSecurityDatabase}
	// MokSBStateRT is shim's run-time mirror of MokSBState: present with
	// value 1 when the user disabled shim's signature validation.
	MokSBStateRT = VarID{"MokSBStateRT", ShimLock}
	// MokListRT and MokListXRT mirror the machine owner's allow and deny
	// lists (with shim's built-in vendor certificate and hashes).
	MokListRT  = VarID{"MokListRT", ShimLock}
	MokListXRT = VarID{"MokListXRT", ShimLock}
	// SbatLevelRT mirrors the SBAT revocation level shim applies (text).
	SbatLevelRT = VarID{"SbatLevelRT", ShimLock}
	// MokListTrustedRT is shim's run-time flag (one byte, 1) that tells
	// the kernel to trust the MOK certificates for modules: they go to
	// its .machine keyring, linked into .secondary_trusted_keys.
	MokListTrustedRT = VarID{"MokListTrustedRT", ShimLock}
)

// FileName is the variable's efivarfs file name, "Name-guid".
func (v VarID) FileName() string { return v.Name + "-" + v.GUID.String() }

// Path is the variable's path under EfivarsDir.
func (v VarID) Path() string { return path.Join(EfivarsDir, v.FileName()) }

func (v VarID) String() string { return v.FileName() }

// ParseFileName splits an efivarfs file name "Name-guid" into the
// variable's identity.
func ParseFileName(s string) (VarID, error) {
	if len(s) < 38 || s[len(s)-37] != '-' {
		return VarID{}, fmt.Errorf("efi: %q is not an efivarfs name (Name-GUID)", s)
	}
	g, err := ParseGUID(s[len(s)-36:])
	if err != nil {
		return VarID{}, fmt.Errorf("efi: %q is not an efivarfs name: %w", s, err)
	}
	return VarID{Name: s[:len(s)-37], GUID: g}, nil
}
