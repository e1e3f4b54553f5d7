package efi

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The sentinels every parse error wraps (test with errors.Is).
var (
	// ErrTruncated: the data ends before a structure it announces.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: a size field is inconsistent or breaks a rule of the
	// UEFI specification.
	ErrMalformed = errors.New("malformed")
)

// ParseError locates a parse failure.
type ParseError struct {
	// What names the structure: "signature list 2", "efivarfs attribute
	// prefix".
	What string
	// Offset is the byte offset of that structure in the parsed data.
	Offset int
	// Err is ErrTruncated or ErrMalformed.
	Err error
	// Detail says which rule failed, with the values read.
	Detail string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("efi: %s at offset %d: %v: %s", e.What, e.Offset, e.Err, e.Detail)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ListHeaderSize is the size of the fixed part of EFI_SIGNATURE_LIST:
// SignatureType (16), SignatureListSize, SignatureHeaderSize and
// SignatureSize (4 each).
const ListHeaderSize = 28

// OwnerSize is the size of an EFI_SIGNATURE_DATA's SignatureOwner.
const OwnerSize = 16

// SignatureList is one EFI_SIGNATURE_LIST.
type SignatureList struct {
	// Type is the SignatureType: what every entry of the list holds.
	Type GUID
	// Header is the SignatureHeader (empty for every type the
	// specification defines). It aliases the parsed data.
	Header []byte
	// SignatureSize is the size of each EFI_SIGNATURE_DATA, owner
	// included. The encoder derives it from the entries when it is zero.
	SignatureSize uint32
	Signatures    []SignatureData
	// Offset is the list's offset in the parsed data (set by the parser).
	Offset int
}

// SignatureData is one EFI_SIGNATURE_DATA.
type SignatureData struct {
	Owner GUID
	// Data is the SignatureData: a DER certificate, a hash... It aliases
	// the parsed data.
	Data []byte
	// Offset is the entry's offset in the parsed data (set by the parser).
	Offset int
}

// ParseSignatureLists parses a signature database: zero or more
// EFI_SIGNATURE_LISTs back to back, the data of PK, KEK, db, dbx, dbt and
// shim's MOK lists. Empty input is an empty database.
//
// Each list must satisfy the rules UEFI firmware applies before it stores
// one (EDK II's CheckSignatureListFormat): SignatureListSize at least the
// header plus SignatureHeaderSize and no more than the bytes left;
// SignatureSize at least 16 (the owner) and dividing what follows the
// header; for the types the specification defines, a zero header size
// and, except for X.509, the type's exact SignatureSize. Unknown types are
// kept opaque. On error the lists before the faulty one are returned with
// a *ParseError wrapping ErrTruncated or ErrMalformed.
func ParseSignatureLists(b []byte) ([]SignatureList, error) {
	var out []SignatureList
	for off, n := 0, 0; off < len(b); n++ {
		l, size, err := parseList(b[off:], off, n)
		if err != nil {
			return out, err
		}
		out = append(out, l)
		off += size
	}
	return out, nil
}

// parseList parses the list at the start of b (at offset base of the whole
// input, the n-th list) and returns it with its size.
func parseList(b []byte, base, n int) (SignatureList, int, error) {
	fail := func(sentinel error, format string, args ...any) (SignatureList, int, error) {
		return SignatureList{}, 0, &ParseError{What: fmt.Sprintf("signature list %d", n), Offset: base,
			Err: sentinel, Detail: fmt.Sprintf(format, args...)}
	}
	if len(b) < ListHeaderSize {
		return fail(ErrTruncated, "the list header needs %d bytes, %d left", ListHeaderSize, len(b))
	}
	var l SignatureList
	copy(l.Type[:], b)
	l.Offset = base
	listSize := uint64(binary.LittleEndian.Uint32(b[16:]))
	hdrSize := uint64(binary.LittleEndian.Uint32(b[20:]))
	l.SignatureSize = binary.LittleEndian.Uint32(b[24:])
	sigSize := uint64(l.SignatureSize)
	switch {
	case listSize < ListHeaderSize:
		return fail(ErrMalformed, "SignatureListSize %d is smaller than the %d-byte list header", listSize, ListHeaderSize)
	case ListHeaderSize+hdrSize > listSize:
		return fail(ErrMalformed, "SignatureHeaderSize %d does not fit in SignatureListSize %d", hdrSize, listSize)
	case listSize > uint64(len(b)):
		return fail(ErrTruncated, "SignatureListSize %d exceeds the %d bytes left", listSize, len(b))
	case sigSize < OwnerSize:
		return fail(ErrMalformed, "SignatureSize %d is smaller than the %d-byte owner GUID", sigSize, OwnerSize)
	case (listSize-ListHeaderSize-hdrSize)%sigSize != 0:
		return fail(ErrMalformed, "SignatureSize %d does not divide the %d bytes of signatures", sigSize, listSize-ListHeaderSize-hdrSize)
	}
	if st, known := sigTypes[l.Type]; known {
		if hdrSize != 0 {
			return fail(ErrMalformed, "SignatureHeaderSize %d for type %s, which has no header", hdrSize, st.name)
		}
		if st.size != 0 && sigSize != uint64(OwnerSize+st.size) {
			return fail(ErrMalformed, "SignatureSize %d for type %s, which needs %d", sigSize, st.name, OwnerSize+st.size)
		}
	}
	// Every size is now bounded by len(b), so int arithmetic is safe.
	pos := ListHeaderSize + int(hdrSize)
	l.Header = b[ListHeaderSize:pos:pos]
	count := (int(listSize) - pos) / int(sigSize)
	l.Signatures = make([]SignatureData, 0, count)
	for i := 0; i < count; i++ {
		var s SignatureData
		copy(s.Owner[:], b[pos:])
		end := pos + int(sigSize)
		s.Data = b[pos+OwnerSize : end : end]
		s.Offset = base + pos
		l.Signatures = append(l.Signatures, s)
		pos = end
	}
	return l, int(listSize), nil
}

// Time is EFI_TIME, as a certificate-hash entry's TimeOfRevocation holds it.
type Time struct {
	Year                 uint16
	Month, Day           uint8
	Hour, Minute, Second uint8
	Pad1                 uint8
	Nanosecond           uint32
	TimeZone             int16 // minutes, or UnspecifiedTimezone
	Daylight             uint8
	Pad2                 uint8
}

// UnspecifiedTimezone is EFI_UNSPECIFIED_TIMEZONE.
const UnspecifiedTimezone = 0x07FF

func parseTime(b []byte) Time {
	return Time{
		Year: binary.LittleEndian.Uint16(b[0:]), Month: b[2], Day: b[3],
		Hour: b[4], Minute: b[5], Second: b[6], Pad1: b[7],
		Nanosecond: binary.LittleEndian.Uint32(b[8:]),
		TimeZone:   int16(binary.LittleEndian.Uint16(b[12:])),
		Daylight:   b[14], Pad2: b[15],
	}
}

// MarshalBinary returns the 16-byte EFI_TIME.
func (t Time) MarshalBinary() ([]byte, error) {
	b := make([]byte, timeSize)
	binary.LittleEndian.PutUint16(b[0:], t.Year)
	b[2], b[3], b[4], b[5], b[6], b[7] = t.Month, t.Day, t.Hour, t.Minute, t.Second, t.Pad1
	binary.LittleEndian.PutUint32(b[8:], t.Nanosecond)
	binary.LittleEndian.PutUint16(b[12:], uint16(t.TimeZone))
	b[14], b[15] = t.Daylight, t.Pad2
	return b, nil
}

// IsZero reports whether every field is zero: for a certificate-hash entry,
// "revoked at all times".
func (t Time) IsZero() bool { return t == Time{} }

// Time converts t. TimeZone is the offset from UTC in minutes as UEFI 2.7
// and later define it (local time = UTC + TimeZone); an unspecified zone
// is taken as UTC. Fields out of range are an error.
func (t Time) Time() (time.Time, error) {
	if t.Year < 1900 || t.Year > 9999 || t.Month < 1 || t.Month > 12 || t.Day < 1 || t.Day > 31 ||
		t.Hour > 23 || t.Minute > 59 || t.Second > 59 || t.Nanosecond > 999_999_999 {
		return time.Time{}, fmt.Errorf("efi: EFI_TIME %+v out of range", t)
	}
	loc := time.UTC
	if t.TimeZone != UnspecifiedTimezone {
		if t.TimeZone < -1440 || t.TimeZone > 1440 {
			return time.Time{}, fmt.Errorf("efi: EFI_TIME time zone %d out of range", t.TimeZone)
		}
		loc = time.FixedZone("", int(t.TimeZone)*60)
	}
	v := time.Date(int(t.Year), time.Month(t.Month), int(t.Day), int(t.Hour), int(t.Minute), int(t.Second), int(t.Nanosecond), loc)
	if v.Day() != int(t.Day) {
		return time.Time{}, fmt.Errorf("efi: EFI_TIME %04d-%02d-%02d is no date", t.Year, t.Month, t.Day)
	}
	return v.UTC(), nil
}

// Entry is one signature of a database with its list's type, decoded as
// far as the type allows.
type Entry struct {
	// List and Index locate the entry: its list's index in the database,
	// its index in the list.
	List, Index int
	// Offset is the entry's offset in the database.
	Offset int
	Type   GUID
	Owner  GUID
	Data   []byte
	// Certificate is the parsed certificate of an X.509 entry.
	Certificate *x509.Certificate
	// Hash is the hash of a hash entry (SHA-256 and the other EFI_CERT_SHA*
	// types: an image's Authenticode hash) or of a certificate-hash entry
	// (EFI_CERT_X509_SHA*: the hash of a TBSCertificate).
	Hash []byte
	// Revocation is a certificate-hash entry's TimeOfRevocation.
	Revocation *Time
	// Err is set when the entry's content does not decode (an X.509 entry
	// that crypto/x509 rejects). The database itself is still valid.
	Err error
}

// Entries flattens lists into their entries, in order, decoding X.509
// certificates, hashes and revocation times. A certificate that does not
// parse is reported in its Entry's Err.
func Entries(lists []SignatureList) []Entry {
	n := 0
	for _, l := range lists {
		n += len(l.Signatures)
	}
	out := make([]Entry, 0, n)
	for li, l := range lists {
		st := sigTypes[l.Type]
		for i, s := range l.Signatures {
			e := Entry{List: li, Index: i, Offset: s.Offset, Type: l.Type, Owner: s.Owner, Data: s.Data}
			switch {
			case l.Type == CertX509:
				c, err := x509.ParseCertificate(s.Data)
				if err != nil {
					e.Err = fmt.Errorf("efi: signature list %d entry %d (offset %d): X.509 certificate: %w", li, i, s.Offset, err)
				} else {
					e.Certificate = c
				}
			case st.hashLen != 0 && len(s.Data) >= st.hashLen:
				e.Hash = s.Data[:st.hashLen]
				if rest := s.Data[st.hashLen:]; len(rest) == timeSize {
					t := parseTime(rest)
					e.Revocation = &t
				}
			}
			out = append(out, e)
		}
	}
	return out
}
