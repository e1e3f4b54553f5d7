package codepolicy

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/reason"
	"github.com/vigil-attest/vigil/trust"
)

// DatabaseOption configures ImportSignatureDatabase.
type DatabaseOption func(*dbOptions)

type dbOptions struct {
	kek []*x509.Certificate
}

// VerifyUpdate makes ImportSignatureDatabase verify an authenticated
// update's signature, as the firmware does before it writes dbx
// (EDK II AuthVariableLib VerifyTimeBasedPayload): the PKCS#7 must be a
// signature, by a certificate that is one of kek or chains to one (the
// platform's KEK, or its PK), over the variable name, vendor GUID,
// attributes, TimeStamp and payload. Validity periods are not checked
// (the firmware has no trusted clock: X509_V_FLAG_NO_CHECK_TIME). A file
// whose signature does not verify is an error (reason bad-signature, or
// untrusted-chain) and nothing is imported; a file that is not an
// authenticated update is one too, since there is nothing to verify.
func VerifyUpdate(kek ...*x509.Certificate) DatabaseOption {
	return func(o *dbOptions) { o.kek = append(o.kek, kek...) }
}

// The attribute words a dbx update is signed with: NV|BS|RT|AT, and the
// same with APPEND_WRITE (sign-efi-sig-list -a, the UEFI revocation list
// updates), which the firmware includes in the signed data as given.
var dbxAttributes = []efi.Attributes{
	efi.NonVolatile | efi.BootServiceAccess | efi.RuntimeAccess | efi.TimeBasedAuthenticatedWriteAccess,
	efi.NonVolatile | efi.BootServiceAccess | efi.RuntimeAccess | efi.TimeBasedAuthenticatedWriteAccess | efi.AppendWrite,
}

// signedPayload is what an EFI_VARIABLE_AUTHENTICATION_2 signature covers
// (UEFI 2.10 §8.2.2): VariableName (UTF-16, no terminator), VendorGuid,
// Attributes, TimeStamp, Data.
func signedPayload(name string, guid efi.GUID, attrs efi.Attributes, a efi.Authenticated) ([]byte, error) {
	var b bytes.Buffer
	for _, c := range utf16.Encode([]rune(name)) {
		binary.Write(&b, binary.LittleEndian, c)
	}
	b.Write(guid[:])
	binary.Write(&b, binary.LittleEndian, uint32(attrs))
	ts, err := a.TimeStamp.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b.Write(ts)
	b.Write(a.Payload)
	return b.Bytes(), nil
}

var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// parseAuthPKCS7 reads the CertData of an authenticated update: a DER
// SignedData, which the specification says, or a ContentInfo around one,
// which some signers write; EDK II accepts both (WrapPkcs7Data).
func parseAuthPKCS7(der []byte) (*cms.SignedData, error) {
	if sd, err := cms.Parse(der); err == nil {
		return sd, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(der) })
	})
	wrapped, err := b.Bytes()
	if err != nil {
		return nil, reason.Wrap(reason.Malformed, err)
	}
	return cms.Parse(wrapped)
}

// verifyUpdate checks an authenticated dbx update's signature against kek.
func verifyUpdate(data []byte, kek []*x509.Certificate) error {
	if !efi.IsAuthenticated(data) {
		return reason.New(reason.Unsigned, "not an authenticated update (EFI_VARIABLE_AUTHENTICATION_2): there is no signature to verify against the KEK")
	}
	a, err := efi.ParseAuthenticated(data)
	if err != nil {
		return reason.Wrap(reason.Malformed, err)
	}
	sd, err := parseAuthPKCS7(a.PKCS7)
	if err != nil {
		return fmt.Errorf("authenticated update's PKCS#7: %w", err)
	}
	if len(sd.Signers) == 0 {
		return reason.New(reason.Unsigned, "authenticated update's PKCS#7 has no signer")
	}
	var errs []error
	for _, si := range sd.Signers {
		cert := sd.FindCertificate(si, kek)
		if cert == nil {
			errs = append(errs, reason.New(reason.UntrustedChain, "signer certificate is neither in the PKCS#7 nor a KEK"))
			continue
		}
		h, err := si.Hash()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		verified := false
		for _, attrs := range dbxAttributes {
			msg, err := signedPayload("dbx", efi.ImageSecurityDatabase, attrs, a)
			if err != nil {
				return reason.Wrap(reason.Malformed, err)
			}
			if si.Verify(cert, cms.OIDData, cms.Digest(h, msg)) == nil {
				verified = true
				break
			}
		}
		if !verified {
			errs = append(errs, reason.New(reason.BadSignature, "the signature by %q does not verify over dbx's name, GUID, attributes, TimeStamp and payload", cert.Subject.String()))
			continue
		}
		if _, err := trust.Build(cert, trust.Options{Anchors: kek, Intermediates: sd.Certificates, IgnoreExpiry: true}); err != nil {
			errs = append(errs, reason.Wrap(reason.UntrustedChain, fmt.Errorf("signer %q does not chain to a KEK: %w", cert.Subject.String(), err)))
			continue
		}
		return nil
	}
	return errors.Join(errs...)
}
