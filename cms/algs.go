package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vigil-attest/vigil/reason"
)

// Digest algorithm identifiers.
var (
	OIDSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	OIDSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	OIDSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	OIDSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	OIDMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
)

// Signature algorithm identifiers.
var (
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAPSS        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidMD5WithRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSASHA1     = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// HashFromOID maps a digest algorithm identifier to a hash.
func HashFromOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(OIDSHA1):
		return crypto.SHA1, nil
	case oid.Equal(OIDSHA256):
		return crypto.SHA256, nil
	case oid.Equal(OIDSHA384):
		return crypto.SHA384, nil
	case oid.Equal(OIDSHA512):
		return crypto.SHA512, nil
	case oid.Equal(OIDMD5):
		return crypto.MD5, nil
	}
	return 0, reason.New(reason.Unsupported, "cms: unsupported digest algorithm %v", oid)
}

// OIDFromHash maps a hash to its digest algorithm identifier, the inverse
// of HashFromOID.
func OIDFromHash(h crypto.Hash) (asn1.ObjectIdentifier, error) {
	switch h {
	case crypto.MD5:
		return OIDMD5, nil
	case crypto.SHA1:
		return OIDSHA1, nil
	case crypto.SHA256:
		return OIDSHA256, nil
	case crypto.SHA384:
		return OIDSHA384, nil
	case crypto.SHA512:
		return OIDSHA512, nil
	}
	return nil, fmt.Errorf("cms: unsupported hash %v", h)
}

// HashName is the lower-case name used in Vigil's output: sha1, sha256...
func HashName(h crypto.Hash) string {
	switch h {
	case crypto.MD5:
		return "md5"
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return "unknown"
}

// Strength orders hashes for policy minimums: md5 < sha1 < sha256 < sha384
// < sha512. Unknown hashes are weakest.
func Strength(h crypto.Hash) int {
	switch h {
	case crypto.MD5:
		return 1
	case crypto.SHA1:
		return 2
	case crypto.SHA256:
		return 3
	case crypto.SHA384:
		return 4
	case crypto.SHA512:
		return 5
	}
	return 0
}

// verifyDigestSignature checks sig over a message whose digest under h is
// digest, with pub and the signature algorithm alg. A CMS SignerInfo may name
// either a bare key algorithm (rsaEncryption, id-ecPublicKey) or a combined
// one (sha256WithRSAEncryption); the digest algorithm governs either way.
func verifyDigestSignature(pub crypto.PublicKey, algOID asn1.ObjectIdentifier, algParams []byte, h crypto.Hash, digest, sig []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch {
		case algOID.Equal(oidRSAPSS):
			opts, ph, err := pssOptions(algParams)
			if err != nil {
				return err
			}
			if ph != h {
				return reason.New(reason.BadSignature, "cms: RSA-PSS hash %v differs from digest algorithm %v", ph, h)
			}
			if err := rsa.VerifyPSS(k, h, digest, sig, opts); err != nil {
				return reason.Wrap(reason.BadSignature, fmt.Errorf("cms: RSA-PSS signature: %w", err))
			}
			return nil
		case algOID.Equal(oidRSA), algOID.Equal(oidSHA1WithRSA), algOID.Equal(oidSHA256WithRSA),
			algOID.Equal(oidSHA384WithRSA), algOID.Equal(oidSHA512WithRSA), algOID.Equal(oidMD5WithRSA):
			return verifyPKCS1v15(k, h, digest, sig)
		}
	case *ecdsa.PublicKey:
		switch {
		case algOID.Equal(oidECPublicKey), algOID.Equal(oidECDSASHA1), algOID.Equal(oidECDSASHA256),
			algOID.Equal(oidECDSASHA384), algOID.Equal(oidECDSASHA512):
			if !ecdsa.VerifyASN1(k, digest, sig) {
				return reason.New(reason.BadSignature, "cms: ECDSA signature does not verify")
			}
			return nil
		}
	case ed25519.PublicKey:
		return reason.New(reason.Unsupported, "cms: Ed25519 signer needs the full message")
	default:
		return reason.New(reason.Unsupported, "cms: unsupported public key type %T", pub)
	}
	return reason.New(reason.Unsupported, "cms: signature algorithm %v does not fit a %T key", algOID, pub)
}

// pssOptions parses RSASSA-PSS-params.
func pssOptions(params []byte) (*rsa.PSSOptions, crypto.Hash, error) {
	// params holds the AlgorithmIdentifier body after the OID.
	s := cryptobyte.String(params)
	var p cryptobyte.String
	h := crypto.SHA1
	salt := 20
	if !s.ReadASN1(&p, cbasn1.SEQUENCE) {
		return nil, 0, malformed("RSA-PSS parameters missing")
	}
	if p.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var e, alg cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !p.ReadASN1(&e, cbasn1.Tag(0).Constructed().ContextSpecific()) || !e.ReadASN1(&alg, cbasn1.SEQUENCE) ||
			!alg.ReadASN1ObjectIdentifier(&oid) {
			return nil, 0, malformed("bad RSA-PSS hash")
		}
		var err error
		if h, err = HashFromOID(oid); err != nil {
			return nil, 0, err
		}
	}
	if p.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var e, alg, inner cryptobyte.String
		var oid, hoid asn1.ObjectIdentifier
		if !p.ReadASN1(&e, cbasn1.Tag(1).Constructed().ContextSpecific()) || !e.ReadASN1(&alg, cbasn1.SEQUENCE) ||
			!alg.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidMGF1) ||
			!alg.ReadASN1(&inner, cbasn1.SEQUENCE) || !inner.ReadASN1ObjectIdentifier(&hoid) {
			return nil, 0, malformed("bad RSA-PSS mask generation function")
		}
		mh, err := HashFromOID(hoid)
		if err != nil {
			return nil, 0, err
		}
		if mh != h {
			return nil, 0, reason.New(reason.Unsupported, "cms: RSA-PSS with MGF1 hash %v differing from %v", mh, h)
		}
	}
	if p.PeekASN1Tag(cbasn1.Tag(2).Constructed().ContextSpecific()) {
		var e cryptobyte.String
		if !p.ReadASN1(&e, cbasn1.Tag(2).Constructed().ContextSpecific()) || !e.ReadASN1Integer(&salt) || salt < 0 || salt > 1024 {
			return nil, 0, malformed("bad RSA-PSS salt length")
		}
	}
	return &rsa.PSSOptions{SaltLength: salt, Hash: h}, h, nil
}

// CheckCertificateSignature verifies that parent signed child, returning the
// hash the signature used. Unlike x509.Certificate.CheckSignatureFrom it
// accepts SHA-1 (the policy decides whether that is too weak) and reports
// reason codes.
func CheckCertificateSignature(child, parent *x509.Certificate) (crypto.Hash, error) {
	var h crypto.Hash
	switch child.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1:
		h = crypto.SHA1
	case x509.MD5WithRSA:
		h = crypto.MD5
	case x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	case x509.PureEd25519:
		if k, ok := parent.PublicKey.(ed25519.PublicKey); ok && ed25519.Verify(k, child.RawTBSCertificate, child.Signature) {
			return crypto.SHA512, nil
		}
		return 0, reason.New(reason.BadSignature, "certificate %q: Ed25519 signature does not verify", child.Subject)
	default:
		return 0, reason.New(reason.Unsupported, "certificate %q: unsupported signature algorithm %v", child.Subject, child.SignatureAlgorithm)
	}
	if !h.Available() {
		return h, reason.New(reason.Unsupported, "hash %v unavailable", h)
	}
	hh := h.New()
	hh.Write(child.RawTBSCertificate)
	digest := hh.Sum(nil)
	var err error
	switch k := parent.PublicKey.(type) {
	case *rsa.PublicKey:
		switch child.SignatureAlgorithm {
		case x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
			err = rsa.VerifyPSS(k, h, digest, child.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h})
		case x509.ECDSAWithSHA1, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
			err = errors.New("ECDSA algorithm with an RSA key")
		default:
			err = verifyPKCS1v15(k, h, digest, child.Signature)
		}
	case *ecdsa.PublicKey:
		switch child.SignatureAlgorithm {
		case x509.ECDSAWithSHA1, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
			if !ecdsa.VerifyASN1(k, digest, child.Signature) {
				err = errors.New("ECDSA signature does not verify")
			}
		default:
			err = errors.New("RSA algorithm with an ECDSA key")
		}
	default:
		return h, reason.New(reason.Unsupported, "certificate %q: unsupported issuer key %T", child.Subject, parent.PublicKey)
	}
	if err != nil {
		return h, reason.Wrap(reason.BadSignature, fmt.Errorf("certificate %q not signed by %q: %w", child.Subject, parent.Subject, err))
	}
	return h, nil
}

// digestInfoPrefix is the DER DigestInfo header for each hash (RFC 8017 9.2).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.MD5:    {0x30, 0x20, 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05, 0x05, 0x00, 0x04, 0x10},
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// verifyPKCS1v15 checks an RSASSA-PKCS1-v1_5 signature (RFC 8017 8.2.2) by
// applying the public operation and comparing the whole encoded message
// with the one expected for digest. It is what crypto/rsa does, with
// math/big for the exponentiation: about three times faster for the
// 4096-bit keys that sign kernel modules, and safe since nothing here is
// secret. When the signature decodes to a well-formed message over another
// digest, the signature is genuine and the content changed: that is
// reported as a digest mismatch rather than a bad signature.
func verifyPKCS1v15(k *rsa.PublicKey, h crypto.Hash, digest, sig []byte) error {
	prefix, ok := digestInfoPrefix[h]
	if !ok || len(digest) != h.Size() {
		return reason.New(reason.Unsupported, "cms: RSA PKCS#1 v1.5 with hash %v", h)
	}
	size := k.Size()
	if k.N.Sign() <= 0 || k.E < 3 || k.E&1 == 0 || k.N.BitLen() < 1024 {
		return reason.New(reason.WeakAlgorithm, "cms: RSA public key of %d bits (e=%d) is not acceptable", k.N.BitLen(), k.E)
	}
	// Bound the work a hostile certificate can ask for (crypto/rsa refuses
	// more than 16384 bits too).
	if k.N.BitLen() > 16384 || k.E > 1<<32 {
		return reason.New(reason.Unsupported, "cms: RSA public key of %d bits (e=%d) is too large", k.N.BitLen(), k.E)
	}
	if len(sig) != size {
		return reason.New(reason.BadSignature, "cms: RSA signature of %d bytes for a %d-byte modulus", len(sig), size)
	}
	c := new(big.Int).SetBytes(sig)
	if c.Cmp(k.N) >= 0 {
		return reason.New(reason.BadSignature, "cms: RSA signature out of range")
	}
	em := new(big.Int).Exp(c, big.NewInt(int64(k.E)), k.N).FillBytes(make([]byte, size))
	tLen := len(prefix) + h.Size()
	if size < tLen+11 {
		return reason.New(reason.BadSignature, "cms: RSA modulus too short for %v", h)
	}
	want := make([]byte, size)
	want[1] = 1
	for i := 2; i < size-tLen-1; i++ {
		want[i] = 0xff
	}
	copy(want[size-tLen:], prefix)
	copy(want[size-h.Size():], digest)
	if subtle.ConstantTimeCompare(em, want) == 1 {
		return nil
	}
	if signed, ok := decodePKCS1(em, h); ok {
		return reason.New(reason.DigestMismatch, "cms: signature is over digest %x, content digest is %x", signed, digest)
	}
	return reason.New(reason.BadSignature, "cms: RSA PKCS#1 v1.5 signature does not verify")
}

// decodePKCS1 returns the digest inside a well-formed PKCS#1 v1.5 encoded
// message for h. A well-formed block can only come from the private key.
func decodePKCS1(em []byte, h crypto.Hash) ([]byte, bool) {
	size := len(em)
	prefix := digestInfoPrefix[h]
	tLen := len(prefix) + h.Size()
	if prefix == nil || size < tLen+11 || em[0] != 0 || em[1] != 1 {
		return nil, false
	}
	for _, b := range em[2 : size-tLen-1] {
		if b != 0xff {
			return nil, false
		}
	}
	if em[size-tLen-1] != 0 || !bytes.Equal(em[size-tLen:size-h.Size()], prefix) {
		return nil, false
	}
	return em[size-h.Size():], true
}
