// Package cms parses, verifies and creates PKCS#7 / CMS SignedData (RFC 2315,
// RFC 5652) as used by code signatures: Authenticode, Linux module signatures
// and detached signatures. It also reads the two timestamp kinds found in
// Authenticode (the PKCS#9 countersignature and RFC 3161 tokens) and nested
// signatures.
//
// The package checks the cryptography of one SignerInfo: message digest,
// content type and signature. Whether the signer is trusted (chains, EKUs,
// revocation) is decided by the caller, with package trust and a policy.
//
// Every parse error is tagged reason.Malformed; every failed cryptographic
// check is tagged with its reason code.
package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vigil-attest/vigil/reason"
)

// Object identifiers used by signed code.
var (
	OIDData               = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDSignedData         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	OIDAttrContentType    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	OIDAttrMessageDigest  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	OIDAttrSigningTime    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	OIDAttrCounterSig     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 6}
	OIDAttrTimeStampToken = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
	OIDTSTInfo            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	OIDMSTimestamp        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 3, 3, 1}
	OIDNestedSignature    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 4, 1}
)

// MaxInput bounds the size of a signature blob this package parses.
const MaxInput = 64 << 20

// SignedData is a parsed SignedData.
type SignedData struct {
	Version          int
	DigestAlgorithms []asn1.ObjectIdentifier
	// ContentType is the encapsulated content type (eContentType).
	ContentType asn1.ObjectIdentifier
	// Content holds the octets the message digest covers: the value of an
	// OCTET STRING eContent (CMS), or the value octets of the SEQUENCE that
	// PKCS#7 v1.5 embeds directly (Authenticode). Nil when detached.
	Content []byte
	// ContentTLV is the complete inner element (tag, length, value).
	ContentTLV []byte
	// Certificates are the certificates that parsed; BadCertificates counts
	// those that did not.
	Certificates    []*x509.Certificate
	BadCertificates int
	Signers         []*SignerInfo
	// Raw is the (normalised) DER of the whole ContentInfo.
	Raw []byte
}

// SignerInfo is one signer of a SignedData.
type SignerInfo struct {
	Version int
	// Issuer (raw DER Name) and SerialNumber identify the signer certificate
	// when the issuerAndSerialNumber form is used.
	Issuer       []byte
	SerialNumber *big.Int
	// SubjectKeyID identifies the signer when the [0] form is used.
	SubjectKeyID []byte

	DigestAlgorithm    asn1.ObjectIdentifier
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte

	// SignedAttrs is nil when there are no signed attributes; RawSignedAttrs
	// then is nil too. RawSignedAttrs is re-tagged as a SET, which is what
	// the signature covers.
	SignedAttrs    []Attribute
	RawSignedAttrs []byte
	UnsignedAttrs  []Attribute

	// Raw is the DER of the whole SignerInfo.
	Raw []byte
}

// Attribute is one CMS attribute with the DER of each value.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values [][]byte
}

// Attr returns the values of the first attribute of type oid in attrs.
func Attr(attrs []Attribute, oid asn1.ObjectIdentifier) [][]byte {
	for _, a := range attrs {
		if a.Type.Equal(oid) {
			return a.Values
		}
	}
	return nil
}

func malformed(format string, args ...any) error {
	return reason.New(reason.Malformed, "cms: "+format, args...)
}

// Parse parses a DER or BER encoded ContentInfo holding a SignedData.
func Parse(b []byte) (*SignedData, error) {
	if len(b) > MaxInput {
		return nil, malformed("signature of %d bytes exceeds the %d byte limit", len(b), MaxInput)
	}
	// Trailing zero padding is common (Authenticode pads to 8 bytes).
	b = trimElement(b)
	der, err := normalize(b)
	if err != nil {
		return nil, reason.Wrap(reason.Malformed, fmt.Errorf("cms: %w", err))
	}
	s := cryptobyte.String(der)
	var ci, body cryptobyte.String
	var ctype asn1.ObjectIdentifier
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1ObjectIdentifier(&ctype) {
		return nil, malformed("not a ContentInfo")
	}
	if !ctype.Equal(OIDSignedData) {
		return nil, malformed("content type %v is not signedData", ctype)
	}
	if !ci.ReadASN1(&body, cbasn1.Tag(0).Constructed().ContextSpecific()) || !ci.Empty() {
		return nil, malformed("ContentInfo has no explicit [0] content")
	}
	sd, err := parseSignedData(body)
	if err != nil {
		return nil, err
	}
	sd.Raw = der
	return sd, nil
}

// trimElement drops bytes after the first element when its length is
// definite, so that zero padding after a signature does not count as garbage.
func trimElement(b []byte) []byte {
	s := cryptobyte.String(b)
	var el cryptobyte.String
	var tag cbasn1.Tag
	if s.ReadAnyASN1Element(&el, &tag) {
		for _, c := range s {
			if c != 0 {
				return b
			}
		}
		return b[:len(el)]
	}
	return b
}

func parseSignedData(body cryptobyte.String) (*SignedData, error) {
	var sdSeq cryptobyte.String
	if !body.ReadASN1(&sdSeq, cbasn1.SEQUENCE) {
		return nil, malformed("SignedData is not a SEQUENCE")
	}
	sd := &SignedData{}
	var algs, encap cryptobyte.String
	if !sdSeq.ReadASN1Integer(&sd.Version) {
		return nil, malformed("bad SignedData version")
	}
	if !sdSeq.ReadASN1(&algs, cbasn1.SET) {
		return nil, malformed("bad digestAlgorithms")
	}
	for !algs.Empty() {
		var alg cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !algs.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
			return nil, malformed("bad digestAlgorithm")
		}
		sd.DigestAlgorithms = append(sd.DigestAlgorithms, oid)
	}
	if !sdSeq.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&sd.ContentType) {
		return nil, malformed("bad encapContentInfo")
	}
	if !encap.Empty() {
		var explicit cryptobyte.String
		if !encap.ReadASN1(&explicit, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, malformed("bad eContent")
		}
		var inner cryptobyte.String
		var tag cbasn1.Tag
		var tlv cryptobyte.String
		if !explicit.ReadAnyASN1Element(&tlv, &tag) || !explicit.Empty() {
			return nil, malformed("bad eContent element")
		}
		sd.ContentTLV = tlv
		v := cryptobyte.String(tlv)
		if !v.ReadAnyASN1(&inner, &tag) {
			return nil, malformed("bad eContent value")
		}
		sd.Content = inner
		if sd.Content == nil {
			sd.Content = []byte{}
		}
	}
	if sdSeq.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var certs cryptobyte.String
		if !sdSeq.ReadASN1(&certs, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, malformed("bad certificates")
		}
		for !certs.Empty() {
			var el cryptobyte.String
			var tag cbasn1.Tag
			if !certs.ReadAnyASN1Element(&el, &tag) {
				return nil, malformed("bad certificate element")
			}
			if tag != cbasn1.SEQUENCE { // attribute or other certificate formats
				continue
			}
			c, err := x509.ParseCertificate(el)
			if err != nil {
				sd.BadCertificates++
				continue
			}
			sd.Certificates = append(sd.Certificates, c)
		}
	}
	if sdSeq.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var crls cryptobyte.String
		if !sdSeq.ReadASN1(&crls, cbasn1.Tag(1).Constructed().ContextSpecific()) {
			return nil, malformed("bad crls")
		}
	}
	var sis cryptobyte.String
	if !sdSeq.ReadASN1(&sis, cbasn1.SET) {
		return nil, malformed("bad signerInfos")
	}
	for !sis.Empty() {
		var el cryptobyte.String
		if !sis.ReadASN1Element(&el, cbasn1.SEQUENCE) {
			return nil, malformed("bad SignerInfo")
		}
		si, err := parseSignerInfo(el)
		if err != nil {
			return nil, err
		}
		sd.Signers = append(sd.Signers, si)
	}
	return sd, nil
}

func parseSignerInfo(raw cryptobyte.String) (*SignerInfo, error) {
	si := &SignerInfo{Raw: raw}
	var seq cryptobyte.String
	if !raw.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Integer(&si.Version) {
		return nil, malformed("bad SignerInfo version")
	}
	switch {
	case seq.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias, name cryptobyte.String
		si.SerialNumber = new(big.Int)
		if !seq.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Integer(si.SerialNumber) {
			return nil, malformed("bad issuerAndSerialNumber")
		}
		si.Issuer = name
	case seq.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		var skid cryptobyte.String
		if !seq.ReadASN1(&skid, cbasn1.Tag(0).ContextSpecific()) {
			return nil, malformed("bad subjectKeyIdentifier")
		}
		si.SubjectKeyID = skid
	default:
		return nil, malformed("bad signer identifier")
	}
	var err error
	if si.DigestAlgorithm, _, err = readAlgorithm(&seq); err != nil {
		return nil, err
	}
	if seq.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var el, attrs cryptobyte.String
		if !seq.ReadASN1Element(&el, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, malformed("bad signedAttrs")
		}
		// The signature covers the attributes with a SET OF tag.
		si.RawSignedAttrs = append([]byte{0x31}, el[1:]...)
		attrs = el
		var body cryptobyte.String
		attrs.ReadASN1(&body, cbasn1.Tag(0).Constructed().ContextSpecific())
		if si.SignedAttrs, err = parseAttributes(body); err != nil {
			return nil, err
		}
		if si.SignedAttrs == nil {
			si.SignedAttrs = []Attribute{}
		}
	}
	oid, params, err := readAlgorithm(&seq)
	if err != nil {
		return nil, err
	}
	si.SignatureAlgorithm = pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{FullBytes: params}}
	var sig cryptobyte.String
	if !seq.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return nil, malformed("bad signature value")
	}
	si.Signature = sig
	if seq.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var body cryptobyte.String
		if !seq.ReadASN1(&body, cbasn1.Tag(1).Constructed().ContextSpecific()) {
			return nil, malformed("bad unsignedAttrs")
		}
		if si.UnsignedAttrs, err = parseAttributes(body); err != nil {
			return nil, err
		}
	}
	if !seq.Empty() {
		return nil, malformed("trailing data in SignerInfo")
	}
	return si, nil
}

func readAlgorithm(s *cryptobyte.String) (asn1.ObjectIdentifier, []byte, error) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, malformed("bad AlgorithmIdentifier")
	}
	return oid, alg, nil
}

func parseAttributes(body cryptobyte.String) ([]Attribute, error) {
	var out []Attribute
	for !body.Empty() {
		var a, vals cryptobyte.String
		var at Attribute
		if !body.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&at.Type) ||
			!a.ReadASN1(&vals, cbasn1.SET) {
			return nil, malformed("bad attribute")
		}
		for !vals.Empty() {
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !vals.ReadAnyASN1Element(&v, &tag) {
				return nil, malformed("bad attribute value in %v", at.Type)
			}
			at.Values = append(at.Values, v)
		}
		out = append(out, at)
	}
	return out, nil
}

// FindCertificate returns the certificate that si names, from the
// SignedData's certificates and then from extra (e.g. a kernel keyring,
// since module signatures carry no certificates). It matches the issuer and
// serial number, or the subject key identifier.
func (sd *SignedData) FindCertificate(si *SignerInfo, extra []*x509.Certificate) *x509.Certificate {
	for _, set := range [][]*x509.Certificate{sd.Certificates, extra} {
		for _, c := range set {
			if si.Matches(c) {
				return c
			}
		}
	}
	return nil
}

// Matches reports whether c is the certificate si identifies.
func (si *SignerInfo) Matches(c *x509.Certificate) bool {
	if si.SerialNumber != nil {
		return c.SerialNumber.Cmp(si.SerialNumber) == 0 && bytes.Equal(c.RawIssuer, si.Issuer)
	}
	return len(si.SubjectKeyID) > 0 && bytes.Equal(c.SubjectKeyId, si.SubjectKeyID)
}

// Hash returns the digest algorithm of si, or an unsupported error.
func (si *SignerInfo) Hash() (crypto.Hash, error) {
	return HashFromOID(si.DigestAlgorithm)
}

// Nested returns the nested signatures (Authenticode attribute
// 1.3.6.1.4.1.311.2.4.1) carried in si's unsigned attributes.
func (si *SignerInfo) Nested() ([]*SignedData, error) {
	var out []*SignedData
	for _, a := range si.UnsignedAttrs {
		if !a.Type.Equal(OIDNestedSignature) {
			continue
		}
		for _, v := range a.Values {
			sd, err := Parse(v)
			if err != nil {
				return out, fmt.Errorf("nested signature: %w", err)
			}
			out = append(out, sd)
		}
	}
	return out, nil
}
