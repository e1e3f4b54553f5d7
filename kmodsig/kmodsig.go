// Package kmodsig locates and validates the signature appended to a Linux
// kernel module, exactly as the kernel does before it verifies it.
//
// A signed module is
//
//	content | PKCS#7 (sig_len bytes) | struct module_signature (12 bytes) | "~Module signature appended~\n"
//
// where struct module_signature (include/linux/module_signature.h) is
// algo, hash, id_type, signer_len, key_id_len (one byte each), three bytes of
// padding and sig_len (big-endian u32). The PKCS#7 SignedData is detached:
// it signs the content, which runs from the start of the file to the start of
// the PKCS#7.
//
// Parse applies the kernel's rules (kernel/module/signing.c,
// module_sig_check, and kernel/module_signature.c, mod_check_sig) and hands
// back the raw PKCS#7 and the signed range; it does not verify the PKCS#7.
// A file without the marker is reason.Unsigned; a file with the marker that
// breaks a rule is reason.Malformed, and the error wraps one of the Err*
// sentinels below and names the kernel rule.
//
// Compressed modules (.ko.xz, .ko.zst, .ko.gz) are signed before they are
// compressed; Open decompresses them, with bounds, so that Parse sees what
// the kernel sees.
package kmodsig

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vigil-attest/vigil/reason"
)

// Magic is the marker that ends a signed module (MODULE_SIG_STRING).
const Magic = "~Module signature appended~\n"

// InfoSize is the size of struct module_signature.
const InfoSize = 12

// TrailerSize is the size of everything after the PKCS#7: the
// module_signature structure and the marker.
const TrailerSize = 40 // InfoSize + len(Magic)

// The id_type values of enum pkey_id_type. Only PKCS#7 is used by the
// kernel since 4.3.
const (
	IDTypePGP   = 0 // PKEY_ID_PGP
	IDTypeX509  = 1 // PKEY_ID_X509
	IDTypePKCS7 = 2 // PKEY_ID_PKCS7
)

// MaxPKCS7Size bounds the signature Parse is willing to read. The kernel
// has no such bound (the whole module is in memory), but a sign-file
// signature is a few hundred bytes to a few kilobytes; a larger sig_len is
// reported as reason.Unsupported rather than read into memory.
const MaxPKCS7Size = 1 << 20

// Info mirrors struct module_signature.
type Info struct {
	Algo      uint8   // public-key algorithm: must be 0 for PKCS#7
	Hash      uint8   // digest algorithm: must be 0 for PKCS#7
	IDType    uint8   // key identifier type: must be IDTypePKCS7
	SignerLen uint8   // length of the signer's name: must be 0 for PKCS#7
	KeyIDLen  uint8   // length of the key identifier: must be 0 for PKCS#7
	Pad       [3]byte // must be zero
	SigLen    uint32  // length of the PKCS#7 (big endian in the file)
}

// MarshalBinary returns the 12-byte wire form of i.
func (i Info) MarshalBinary() ([]byte, error) {
	b := i.bytes()
	return b[:], nil
}

func (i Info) bytes() [InfoSize]byte {
	var b [InfoSize]byte
	b[0], b[1], b[2], b[3], b[4] = i.Algo, i.Hash, i.IDType, i.SignerLen, i.KeyIDLen
	copy(b[5:8], i.Pad[:])
	binary.BigEndian.PutUint32(b[8:], i.SigLen)
	return b
}

// UnmarshalBinary decodes the 12-byte wire form.
func (i *Info) UnmarshalBinary(b []byte) error {
	if len(b) != InfoSize {
		return fmt.Errorf("kmodsig: module_signature is %d bytes, not %d", len(b), InfoSize)
	}
	*i = Info{Algo: b[0], Hash: b[1], IDType: b[2], SignerLen: b[3], KeyIDLen: b[4],
		Pad: [3]byte{b[5], b[6], b[7]}, SigLen: binary.BigEndian.Uint32(b[8:])}
	return nil
}

// Module is a located module signature.
type Module struct {
	Info Info
	// ContentLength is the number of bytes the signature covers: the
	// module from its first byte up to the PKCS#7.
	ContentLength int64
	// PKCS7 is the raw DER (or BER) PKCS#7 SignedData, Info.SigLen bytes.
	PKCS7 []byte
	// Size is the size of the whole (decompressed) module.
	Size int64
}

// Content returns the signed content of the module read through r (the
// same reader given to Parse).
func (m *Module) Content(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, 0, m.ContentLength)
}

// The rules Parse checks. Errors from Parse wrap exactly one of them.
var (
	// ErrNoMarker: the file does not end with Magic (reason.Unsigned).
	ErrNoMarker = errors.New("no module signature marker")
	// ErrTruncated: the marker is present but the file is too short to
	// hold struct module_signature (kernel: modlen <= sizeof(ms)).
	ErrTruncated = errors.New("module signature truncated")
	// ErrSigLen: sig_len does not leave at least one byte of content
	// (kernel mod_check_sig: sig_len >= file_len - sizeof(*ms)).
	ErrSigLen = errors.New("sig_len out of range")
	// ErrIDType: id_type is not PKEY_ID_PKCS7 (kernel mod_check_sig:
	// "not signed with expected PKCS#7 message").
	ErrIDType = errors.New("id_type is not PKEY_ID_PKCS7")
	// ErrNonZeroParams: algo, hash, signer_len, key_id_len or a pad byte
	// is non-zero (kernel mod_check_sig: "PKCS#7 signature info has
	// unexpected non-zero params").
	ErrNonZeroParams = errors.New("PKCS#7 signature info has unexpected non-zero params")
	// ErrEmptySignature: sig_len is zero; mod_check_sig lets it through
	// but the kernel's PKCS#7 parser then rejects the empty message.
	ErrEmptySignature = errors.New("sig_len is zero")
	// ErrSignatureTooLarge: sig_len exceeds MaxPKCS7Size (reason.Unsupported).
	ErrSignatureTooLarge = errors.New("signature larger than supported")
)

// The kernel's rules for the PKCS#7 itself, applied by the verifier
// (integrity) after Parse; its errors wrap these.
var (
	// ErrSignedAttributes: a SignerInfo carries signed (authenticated)
	// attributes. pkcs7_verify refuses a module signature with any:
	// "Invalid module sig (has authattrs)" (reason.Malformed).
	ErrSignedAttributes = errors.New("module signature has signed attributes (pkcs7_verify: has authattrs)")
	// ErrSignerFailed: another signer of the module does not verify, so
	// the kernel refuses the module whatever the others say (pkcs7_verify
	// checks every SignerInfo).
	ErrSignerFailed = errors.New("another signer of the module does not verify")
)

// Parse locates the signature of an (already decompressed) module of size
// bytes read through r. It reads only the trailer and the PKCS#7.
//
// Errors: reason.Unsigned (wrapping ErrNoMarker) when the marker is
// absent; reason.Malformed (wrapping ErrTruncated, ErrSigLen, ErrIDType,
// ErrNonZeroParams or ErrEmptySignature) when the trailer breaks a kernel
// rule, or when r yields fewer bytes than size promises;
// reason.Unsupported (ErrSignatureTooLarge). Other I/O errors from r are
// returned wrapped but without a reason code.
func Parse(r io.ReaderAt, size int64) (*Module, error) {
	if size < 0 {
		return nil, reason.New(reason.Malformed, "kmodsig: negative size %d", size)
	}
	// module_sig_check only looks for the marker when len > markerlen.
	if size <= int64(len(Magic)) {
		return nil, reason.New(reason.Unsigned, "kmodsig: %w: file of %d bytes is too short to carry it", ErrNoMarker, size)
	}
	n := min(size, int64(TrailerSize))
	tail := make([]byte, n)
	if err := readAt(r, tail, size-n); err != nil {
		return nil, fmt.Errorf("kmodsig: reading trailer: %w", err)
	}
	if !bytes.Equal(tail[n-int64(len(Magic)):], []byte(Magic)) {
		return nil, reason.New(reason.Unsigned, "kmodsig: %w: file does not end with %q", ErrNoMarker, Magic)
	}
	modlen := size - int64(len(Magic))
	if modlen <= InfoSize {
		return nil, reason.New(reason.Malformed,
			"kmodsig: %w: %d bytes before the marker, the kernel requires more than sizeof(struct module_signature) = %d (module_sig_check: modlen <= sizeof(ms))",
			ErrTruncated, modlen, InfoSize)
	}
	var info Info
	if err := info.UnmarshalBinary(tail[:InfoSize]); err != nil {
		return nil, reason.Wrap(reason.Malformed, err)
	}
	if err := checkInfo(info, modlen); err != nil {
		return nil, err
	}
	if info.SigLen > MaxPKCS7Size {
		return nil, reason.New(reason.Unsupported, "kmodsig: %w: sig_len %d exceeds %d bytes", ErrSignatureTooLarge, info.SigLen, MaxPKCS7Size)
	}
	content := modlen - InfoSize - int64(info.SigLen)
	p7 := make([]byte, info.SigLen)
	if err := readAt(r, p7, content); err != nil {
		return nil, fmt.Errorf("kmodsig: reading PKCS#7: %w", err)
	}
	return &Module{Info: info, ContentLength: content, PKCS7: p7, Size: size}, nil
}

// checkInfo applies the kernel's mod_check_sig() to info, for a module
// whose length without the marker is modlen (the kernel's file_len), in the
// kernel's order, then rejects an empty signature.
func checkInfo(info Info, modlen int64) error {
	if int64(info.SigLen) >= modlen-InfoSize {
		return reason.New(reason.Malformed,
			"kmodsig: %w: sig_len %d must be less than %d, the length before the marker minus sizeof(struct module_signature) (mod_check_sig: sig_len >= file_len - sizeof(*ms))",
			ErrSigLen, info.SigLen, modlen-InfoSize)
	}
	if info.IDType != IDTypePKCS7 {
		return reason.New(reason.Malformed,
			"kmodsig: %w: id_type is %d, must be PKEY_ID_PKCS7 (2) (mod_check_sig: not signed with expected PKCS#7 message)",
			ErrIDType, info.IDType)
	}
	for _, f := range []struct {
		name string
		v    uint8
	}{
		{"algo", info.Algo}, {"hash", info.Hash}, {"signer_len", info.SignerLen},
		{"key_id_len", info.KeyIDLen}, {"__pad[0]", info.Pad[0]}, {"__pad[1]", info.Pad[1]}, {"__pad[2]", info.Pad[2]},
	} {
		if f.v != 0 {
			return reason.New(reason.Malformed, "kmodsig: %w: %s is %d, must be 0 (mod_check_sig)", ErrNonZeroParams, f.name, f.v)
		}
	}
	if info.SigLen == 0 {
		return reason.New(reason.Malformed, "kmodsig: %w: the PKCS#7 message is empty (pkcs7_parse_message rejects it)", ErrEmptySignature)
	}
	return nil
}

// readAt fills p from r at off. A short read means the input is shorter than
// its declared size: reason.Malformed.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		return reason.New(reason.Malformed, "input ends after %d of %d bytes at offset %d", n, len(p), off)
	}
	return err
}

// Append writes a signed module to w: content (streamed), then pkcs7, the
// module_signature trailer (0, 0, PKEY_ID_PKCS7, 0, 0, pad, sig_len) and
// Magic — what the kernel's scripts/sign-file does. pkcs7 should be a
// detached SignedData over content (sign-file uses CMS_NOCERTS |
// CMS_BINARY | CMS_DETACHED | CMS_NOATTR). Content that is empty, or a
// signature that is empty or larger than MaxPKCS7Size, is refused because
// Parse would reject the result.
func Append(w io.Writer, content io.Reader, pkcs7 []byte) error {
	if len(pkcs7) == 0 {
		return errors.New("kmodsig: empty PKCS#7 signature")
	}
	if len(pkcs7) > MaxPKCS7Size {
		return fmt.Errorf("kmodsig: PKCS#7 signature of %d bytes exceeds %d", len(pkcs7), MaxPKCS7Size)
	}
	n, err := io.Copy(w, content)
	if err != nil {
		return fmt.Errorf("kmodsig: writing content: %w", err)
	}
	if n == 0 {
		return errors.New("kmodsig: empty content: the kernel requires at least one byte before the signature")
	}
	info := Info{IDType: IDTypePKCS7, SigLen: uint32(len(pkcs7))}
	trailer := info.bytes()
	tail := make([]byte, 0, len(pkcs7)+TrailerSize)
	tail = append(tail, pkcs7...)
	tail = append(tail, trailer[:]...)
	tail = append(tail, Magic...)
	if _, err := w.Write(tail); err != nil {
		return fmt.Errorf("kmodsig: writing signature: %w", err)
	}
	return nil
}
