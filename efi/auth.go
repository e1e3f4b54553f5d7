package efi

import (
	"encoding/binary"
	"fmt"
)

// CertTypePKCS7 is EFI_CERT_TYPE_PKCS7_GUID, the only CertType an
// EFI_VARIABLE_AUTHENTICATION_2 may carry.
var CertTypePKCS7 = MustParseGUID("4aafd29d-68df-49ee-8aa9-347d375665a7")

// WIN_CERTIFICATE constants (UEFI 2.10 §32.2.4).
const (
	winCertRevision = 0x0200
	winCertTypeGUID = 0x0EF1 // WIN_CERT_TYPE_EFI_GUID
	// winCertUEFIGUIDHeader is OFFSET_OF(WIN_CERTIFICATE_UEFI_GUID,
	// CertData): dwLength, wRevision, wCertificateType and CertType.
	winCertUEFIGUIDHeader = 4 + 2 + 2 + 16
	// auth2CertDataOffset is OFFSET_OF_AUTHINFO2_CERT_DATA: the
	// EFI_TIME TimeStamp and the WIN_CERTIFICATE_UEFI_GUID header.
	auth2CertDataOffset = timeSize + winCertUEFIGUIDHeader
)

// Authenticated is an authenticated variable update: the
// EFI_VARIABLE_AUTHENTICATION_2 descriptor a SetVariable call with
// EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS starts with (the form
// the UEFI revocation list updates, such as dbxupdate.bin, ship in), and
// the new variable value that follows it.
type Authenticated struct {
	// TimeStamp is the descriptor's time (GMT; every field after Second
	// is zero).
	TimeStamp Time
	// PKCS7 is the AuthInfo's CertData: a DER SignedData over the
	// variable's name, GUID, attributes, TimeStamp and Payload. It is not
	// verified here.
	PKCS7 []byte
	// Payload is the new variable value, for dbx a signature database. It
	// aliases the parsed data.
	Payload []byte
}

// IsAuthenticated reports whether b starts like an
// EFI_VARIABLE_AUTHENTICATION_2 descriptor: a WIN_CERTIFICATE_UEFI_GUID of
// revision 0x0200, type WIN_CERT_TYPE_EFI_GUID and CertType PKCS7 after a
// 16-byte EFI_TIME. A signature database cannot start so: its first list's
// SignatureHeaderSize would be 0x0EF10200.
func IsAuthenticated(b []byte) bool {
	if len(b) < auth2CertDataOffset {
		return false
	}
	return binary.LittleEndian.Uint16(b[timeSize+4:]) == winCertRevision &&
		binary.LittleEndian.Uint16(b[timeSize+6:]) == winCertTypeGUID &&
		GUID(b[timeSize+8:timeSize+24]) == CertTypePKCS7
}

// ParseAuthenticated strips an EFI_VARIABLE_AUTHENTICATION_2 descriptor
// exactly as firmware does before it verifies and stores the payload
// (EDK II SecurityPkg/Library/AuthVariableLib/AuthService.c,
// VerifyTimeBasedPayload, and its caller's size checks in
// ProcessVariable):
//
//   - the data holds at least OFFSET_OF_AUTHINFO2_CERT_DATA bytes;
//   - AuthInfo.Hdr.dwLength is at least OFFSET_OF(WIN_CERTIFICATE_UEFI_GUID,
//     CertData) and no more than the bytes after the TimeStamp;
//   - TimeStamp's Pad1, Nanosecond, TimeZone, Daylight and Pad2 are zero;
//   - wCertificateType is WIN_CERT_TYPE_EFI_GUID and CertType is
//     EFI_CERT_TYPE_PKCS7_GUID (wRevision must be 0x0200, as the
//     specification requires of every WIN_CERTIFICATE);
//   - the payload is everything after TimeStamp + dwLength.
//
// The PKCS#7 signature is not checked: the caller decides whom to trust.
// Errors are *ParseError wrapping ErrTruncated or ErrMalformed.
func ParseAuthenticated(b []byte) (Authenticated, error) {
	fail := func(sentinel error, off int, format string, args ...any) (Authenticated, error) {
		return Authenticated{}, &ParseError{What: "EFI_VARIABLE_AUTHENTICATION_2", Offset: off, Err: sentinel,
			Detail: fmt.Sprintf(format, args...)}
	}
	if len(b) < auth2CertDataOffset {
		return fail(ErrTruncated, 0, "%d bytes, the descriptor needs at least %d", len(b), auth2CertDataOffset)
	}
	ts := parseTime(b)
	if ts.Pad1 != 0 || ts.Nanosecond != 0 || ts.TimeZone != 0 || ts.Daylight != 0 || ts.Pad2 != 0 {
		return fail(ErrMalformed, 0, "TimeStamp %+v: Pad1, Nanosecond, TimeZone, Daylight and Pad2 must be zero", ts)
	}
	dwLength := uint64(binary.LittleEndian.Uint32(b[timeSize:]))
	rev := binary.LittleEndian.Uint16(b[timeSize+4:])
	typ := binary.LittleEndian.Uint16(b[timeSize+6:])
	var ct GUID
	copy(ct[:], b[timeSize+8:])
	switch {
	case rev != winCertRevision:
		return fail(ErrMalformed, timeSize+4, "WIN_CERTIFICATE wRevision %#04x, want 0x0200", rev)
	case typ != winCertTypeGUID:
		return fail(ErrMalformed, timeSize+6, "wCertificateType %#04x, want WIN_CERT_TYPE_EFI_GUID (0x0ef1)", typ)
	case ct != CertTypePKCS7:
		return fail(ErrMalformed, timeSize+8, "CertType %s, want EFI_CERT_TYPE_PKCS7_GUID", ct)
	case dwLength < winCertUEFIGUIDHeader:
		return fail(ErrMalformed, timeSize, "dwLength %d is smaller than the %d-byte WIN_CERTIFICATE_UEFI_GUID header", dwLength, winCertUEFIGUIDHeader)
	case dwLength > uint64(len(b)-timeSize):
		return fail(ErrTruncated, timeSize, "dwLength %d exceeds the %d bytes after the TimeStamp", dwLength, len(b)-timeSize)
	}
	end := timeSize + int(dwLength)
	return Authenticated{
		TimeStamp: ts,
		PKCS7:     b[auth2CertDataOffset:end:end],
		Payload:   b[end:],
	}, nil
}

// DatabaseForm names how ReadDatabase found the signature database.
type DatabaseForm string

// The forms ReadDatabase accepts.
const (
	FormRaw           DatabaseForm = "raw"           // EFI_SIGNATURE_LISTs back to back
	FormEfivarfs      DatabaseForm = "efivarfs"      // a 4-byte attribute prefix, then the lists
	FormAuthenticated DatabaseForm = "authenticated" // EFI_VARIABLE_AUTHENTICATION_2, then the lists
)

// ReadDatabase parses a signature database file in any of the forms an
// operator has one in: raw lists (efi-readvar -o, /sys/firmware/efi/
// mok-variables, hash-to-efi-sig-list), an efivarfs file (a 4-byte
// attribute word first) or an authenticated update (sign-efi-sig-list,
// the UEFI revocation list updates). The form is decided from the bytes,
// never guessed twice: raw when the data is empty or starts with a known
// signature type; efivarfs when a known type follows four bytes of
// attributes that include NV|BS|RT (the kernel only exposes runtime
// variables, and db/dbx/MokListXRT are all three); authenticated when
// IsAuthenticated. Anything else is ErrMalformed.
func ReadDatabase(b []byte) ([]SignatureList, DatabaseForm, error) {
	known := func(b []byte) bool {
		if len(b) < 16 {
			return false
		}
		_, ok := sigTypes[GUID(b[:16])]
		return ok
	}
	switch {
	case len(b) == 0 || known(b):
		l, err := ParseSignatureLists(b)
		return l, FormRaw, err
	case len(b) >= 4 && known(b[4:]) &&
		Attributes(binary.LittleEndian.Uint32(b))&(NonVolatile|BootServiceAccess|RuntimeAccess) == NonVolatile|BootServiceAccess|RuntimeAccess:
		l, err := ParseSignatureLists(b[4:])
		if pe, ok := err.(*ParseError); ok {
			pe.Offset += 4
		}
		for i := range l {
			l[i].Offset += 4
			for j := range l[i].Signatures {
				l[i].Signatures[j].Offset += 4
			}
		}
		return l, FormEfivarfs, err
	case IsAuthenticated(b):
		a, err := ParseAuthenticated(b)
		if err != nil {
			return nil, FormAuthenticated, err
		}
		if len(a.Payload) > 0 && !known(a.Payload) {
			return nil, FormAuthenticated, &ParseError{What: "authenticated payload", Offset: len(b) - len(a.Payload), Err: ErrMalformed,
				Detail: "the payload does not start with a known signature type"}
		}
		base := len(b) - len(a.Payload)
		l, err := ParseSignatureLists(a.Payload)
		if pe, ok := err.(*ParseError); ok {
			pe.Offset += base
		}
		for i := range l {
			l[i].Offset += base
			for j := range l[i].Signatures {
				l[i].Signatures[j].Offset += base
			}
		}
		return l, FormAuthenticated, err
	}
	return nil, "", &ParseError{What: "signature database", Offset: 0, Err: ErrMalformed,
		Detail: "neither EFI_SIGNATURE_LISTs, an efivarfs file of them, nor an EFI_VARIABLE_AUTHENTICATION_2 update"}
}
