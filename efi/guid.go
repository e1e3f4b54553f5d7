// Package efi reads and writes the UEFI data Secure Boot runs on: the
// variables Linux exposes through efivarfs, and the EFI_SIGNATURE_LIST
// databases (PK, KEK, db, dbx, shim's MOK lists) those variables hold.
//
// Every input is untrusted: a variable comes from firmware or from a
// captured tree, and may be anything. Parsing never panics, never reads
// outside its input, and allocates in proportion to it. Errors wrap one of
// the sentinels ErrTruncated and ErrMalformed and, through ParseError, name
// the offset of the fault.
//
// The encoder (AppendSignatureLists, X509List, HashList) writes exactly
// what efitools' cert-to-efi-sig-list and hash-to-efi-sig-list write, for
// test fixtures and for building databases to enroll.
package efi

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// GUID is an EFI_GUID in its wire (memory) order: the first three fields
// little-endian, the last eight bytes as written. Its text form is the
// usual 8-4-4-4-12 hex form of the fields, so the wire bytes
// 61 df e4 8b ca 93 d2 11 aa 0d ... read as 8be4df61-93ca-11d2-aa0d-....
type GUID [16]byte

// ParseGUID parses the 36-character text form (either case).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("efi: GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	var b [16]byte
	hexs := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(b[:], []byte(hexs)); err != nil {
		return g, fmt.Errorf("efi: GUID %q: %w", s, err)
	}
	// b is in text (big-endian field) order; swap the first three fields.
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(b[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(b[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(b[6:8]))
	copy(g[8:], b[8:])
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a bad literal.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the lower-case text form.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

// MarshalText implements encoding.TextMarshaler (the text form).
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (g *GUID) UnmarshalText(b []byte) error {
	v, err := ParseGUID(string(b))
	if err != nil {
		return err
	}
	*g = v
	return nil
}

// Vendor GUIDs of the variables Secure Boot uses.
var (
	// GlobalVariable is EFI_GLOBAL_VARIABLE: SecureBoot, SetupMode, PK,
	// KEK, AuditMode, DeployedMode, Boot####...
	GlobalVariable = MustParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// ImageSecurityDatabase is EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx,
	// dbt, dbr.
	ImageSecurityDatabase = MustParseGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// ShimLock is shim's SHIM_LOCK_GUID: MokListRT, MokListXRT,
	// MokSBStateRT, SbatLevelRT...
	ShimLock = MustParseGUID("605dab50-e046-4300-abb6-3dd810dd8b23")
)

// Signature types of an EFI_SIGNATURE_LIST (UEFI 2.10 §32.4.1).
var (
	CertSHA256        = MustParseGUID("c1c41626-504c-4092-aca9-41f936934328")
	CertRSA2048       = MustParseGUID("3c5766e8-269c-4e34-aa14-ed776e85b3b6")
	CertRSA2048SHA256 = MustParseGUID("e2b36190-879b-4a3d-ad8d-f2e7bba32784")
	CertSHA1          = MustParseGUID("826ca512-cf10-4ac9-b187-be01496631bd")
	CertRSA2048SHA1   = MustParseGUID("67f8444f-8743-48f1-a328-1eaab8736080")
	CertX509          = MustParseGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	CertSHA224        = MustParseGUID("0b6e5233-a65c-44c9-9407-d9ab83bfc8bd")
	CertSHA384        = MustParseGUID("ff3e5307-9fd0-48c9-85f1-8ad56c701e01")
	CertSHA512        = MustParseGUID("093e0fae-a6c4-4f50-9f1b-d41e2b89c19a")
	// CertX509SHA256, -384 and -512 hold the hash of a certificate's
	// TBSCertificate and the time it was revoked (dbx only).
	CertX509SHA256 = MustParseGUID("3bd2a492-96c0-4079-b420-fcf98ef103ed")
	CertX509SHA384 = MustParseGUID("7076876e-80c2-4ee6-aad2-28b349a6865b")
	CertX509SHA512 = MustParseGUID("446dbf63-2502-4cda-bcfa-2465d2b0fe9d")
)

// sigType describes a known signature type.
type sigType struct {
	name string
	// size is the fixed size of an entry's data (without the owner GUID),
	// 0 for variable-size types (X.509).
	size int
	// hashLen is the length of the hash at the start of the data for the
	// hash and certificate-hash types, 0 otherwise.
	hashLen int
}

// timeSize is the size of EFI_TIME.
const timeSize = 16

var sigTypes = map[GUID]sigType{
	CertSHA256:        {"sha256", 32, 32},
	CertRSA2048:       {"rsa2048", 256, 0},
	CertRSA2048SHA256: {"rsa2048_sha256", 256, 0},
	CertSHA1:          {"sha1", 20, 20},
	CertRSA2048SHA1:   {"rsa2048_sha1", 256, 0},
	CertX509:          {"x509", 0, 0},
	CertSHA224:        {"sha224", 28, 28},
	CertSHA384:        {"sha384", 48, 48},
	CertSHA512:        {"sha512", 64, 64},
	CertX509SHA256:    {"x509_sha256", 32 + timeSize, 32},
	CertX509SHA384:    {"x509_sha384", 48 + timeSize, 48},
	CertX509SHA512:    {"x509_sha512", 64 + timeSize, 64},
}

// TypeName is the short, stable name of a signature type as reports use
// it: "x509", "sha256", "x509_sha256", "rsa2048"... An unknown type is
// named by its GUID's text form.
func TypeName(t GUID) string {
	if st, ok := sigTypes[t]; ok {
		return st.name
	}
	return t.String()
}

// DataSize is the fixed size of one signature's data (without the 16-byte
// owner) for the signature type t, and false for X.509 and unknown types,
// whose entries may have any size.
func DataSize(t GUID) (int, bool) {
	st, ok := sigTypes[t]
	if !ok || st.size == 0 {
		return 0, false
	}
	return st.size, true
}
