package cms

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vigil-attest/vigil/reason"
)

// Digest hashes content with h.
func Digest(h crypto.Hash, content []byte) []byte {
	hh := h.New()
	hh.Write(content)
	return hh.Sum(nil)
}

// Verify checks si's signature with cert's public key, given the digest of
// the signed content computed with si's digest algorithm.
//
// With signed attributes, the messageDigest attribute must equal
// contentDigest (else reason.DigestMismatch), the contentType attribute must
// equal contentType when contentType is non-nil, and the signature covers
// the attributes. Without signed attributes (Linux module signatures), the
// signature covers the content digest directly.
func (si *SignerInfo) Verify(cert *x509.Certificate, contentType asn1.ObjectIdentifier, contentDigest []byte) error {
	h, err := si.Hash()
	if err != nil {
		return err
	}
	if !h.Available() {
		return reason.New(reason.Unsupported, "cms: hash %v unavailable", h)
	}
	digest := contentDigest
	if si.SignedAttrs != nil {
		md := Attr(si.SignedAttrs, OIDAttrMessageDigest)
		if len(md) != 1 {
			return malformed("signed attributes need exactly one messageDigest")
		}
		var got []byte
		if _, err := asn1.Unmarshal(md[0], &got); err != nil {
			return malformed("bad messageDigest: %v", err)
		}
		if subtle.ConstantTimeCompare(got, contentDigest) != 1 {
			return reason.New(reason.DigestMismatch, "cms: messageDigest %x does not match content digest %x", got, contentDigest)
		}
		if contentType != nil {
			ct := Attr(si.SignedAttrs, OIDAttrContentType)
			if len(ct) != 1 {
				return malformed("signed attributes need exactly one contentType")
			}
			var oid asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(ct[0], &oid); err != nil {
				return malformed("bad contentType attribute: %v", err)
			}
			if !oid.Equal(contentType) {
				return reason.New(reason.BadSignature, "cms: contentType attribute %v differs from content %v", oid, contentType)
			}
		}
		digest = Digest(h, si.RawSignedAttrs)
		err := verifyDigestSignature(cert.PublicKey, si.SignatureAlgorithm.Algorithm, si.SignatureAlgorithm.Parameters.FullBytes, h, digest, si.Signature)
		if reason.Of(err, "") == reason.DigestMismatch {
			// The content digest matched; what changed are the signed
			// attributes themselves.
			return reason.Wrap(reason.BadSignature, fmt.Errorf("signed attributes altered: %w", err))
		}
		return err
	}
	return verifyDigestSignature(cert.PublicKey, si.SignatureAlgorithm.Algorithm, si.SignatureAlgorithm.Parameters.FullBytes, h, digest, si.Signature)
}

// SigningTime returns the signingTime signed attribute, if any. It is the
// signer's claim, not a trusted time.
func (si *SignerInfo) SigningTime() (time.Time, bool) {
	v := Attr(si.SignedAttrs, OIDAttrSigningTime)
	if len(v) != 1 {
		return time.Time{}, false
	}
	t, err := parseTime(v[0])
	return t, err == nil
}

func parseTime(der []byte) (time.Time, error) {
	s := cryptobyte.String(der)
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		if !s.ReadASN1UTCTime(&t) {
			return t, malformed("bad UTCTime")
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		if !s.ReadASN1GeneralizedTime(&t) {
			// Fractional seconds are legal in TSTInfo; parse them by hand.
			var raw cryptobyte.String
			s = cryptobyte.String(der)
			if !s.ReadASN1(&raw, cbasn1.GeneralizedTime) {
				return t, malformed("bad GeneralizedTime")
			}
			pt, err := time.Parse("20060102150405.999999999Z0700", string(raw))
			if err != nil {
				return t, malformed("bad GeneralizedTime %q", string(raw))
			}
			t = pt
		}
	default:
		return t, malformed("time is neither UTCTime nor GeneralizedTime")
	}
	return t.UTC(), nil
}

// TimestampKind names the two Authenticode timestamp forms.
type TimestampKind string

const (
	// TimestampRFC3161 is an RFC 3161 token, in Microsoft's attribute
	// 1.3.6.1.4.1.311.3.3.1 or the CMS id-aa-timeStampToken.
	TimestampRFC3161 TimestampKind = "rfc3161"
	// TimestampCounterSignature is a legacy PKCS#9 countersignature.
	TimestampCounterSignature TimestampKind = "pkcs9"
)

// Timestamp is a timestamp over a signer's signature value. Err is nil when
// the timestamp's own cryptography verifies (imprint and TSA signature);
// whether the TSA is trusted is for the caller to decide by building a chain
// from Signer with Certificates as intermediates and the timeStamping EKU.
type Timestamp struct {
	Kind         TimestampKind
	Time         time.Time
	Signer       *x509.Certificate
	Certificates []*x509.Certificate
	Hash         crypto.Hash
	Err          error
}

// Timestamps returns every timestamp found in si's unsigned attributes. sd
// is the SignedData holding si; legacy countersigners find their
// certificates there.
func (si *SignerInfo) Timestamps(sd *SignedData) []Timestamp {
	var out []Timestamp
	for _, a := range si.UnsignedAttrs {
		switch {
		case a.Type.Equal(OIDMSTimestamp), a.Type.Equal(OIDAttrTimeStampToken):
			for _, v := range a.Values {
				out = append(out, si.rfc3161(v))
			}
		case a.Type.Equal(OIDAttrCounterSig):
			for _, v := range a.Values {
				out = append(out, si.counterSignature(sd, v))
			}
		}
	}
	return out
}

func (si *SignerInfo) counterSignature(sd *SignedData, v []byte) Timestamp {
	ts := Timestamp{Kind: TimestampCounterSignature, Certificates: sd.Certificates}
	cs, err := parseSignerInfo(cryptobyte.String(v))
	if err != nil {
		ts.Err = err
		return ts
	}
	if ts.Hash, err = cs.Hash(); err != nil {
		ts.Err = err
		return ts
	}
	t, ok := cs.SigningTime()
	if !ok {
		ts.Err = malformed("countersignature without signingTime")
		return ts
	}
	ts.Time = t
	ts.Signer = sd.FindCertificate(cs, nil)
	if ts.Signer == nil {
		ts.Err = reason.New(reason.UntrustedChain, "cms: countersigner certificate not found")
		return ts
	}
	if cs.SignedAttrs == nil {
		ts.Err = malformed("countersignature without signed attributes")
		return ts
	}
	// A countersignature has no contentType attribute (RFC 5652 11.4).
	ts.Err = cs.Verify(ts.Signer, nil, Digest(ts.Hash, si.Signature))
	return ts
}

func (si *SignerInfo) rfc3161(v []byte) Timestamp {
	ts := Timestamp{Kind: TimestampRFC3161}
	tok, err := Parse(v)
	if err != nil {
		ts.Err = err
		return ts
	}
	ts.Certificates = tok.Certificates
	if !tok.ContentType.Equal(OIDTSTInfo) || tok.Content == nil {
		ts.Err = malformed("timestamp token does not hold a TSTInfo")
		return ts
	}
	info, err := parseTSTInfo(tok.Content)
	if err != nil {
		ts.Err = err
		return ts
	}
	ts.Time, ts.Hash = info.genTime, info.hash
	if !bytes.Equal(info.imprint, Digest(info.hash, si.Signature)) {
		ts.Err = reason.New(reason.BadTimestamp, "cms: timestamp imprint does not match the signature")
		return ts
	}
	if len(tok.Signers) != 1 {
		ts.Err = malformed("timestamp token has %d signers", len(tok.Signers))
		return ts
	}
	tsi := tok.Signers[0]
	ts.Signer = tok.FindCertificate(tsi, nil)
	if ts.Signer == nil {
		ts.Err = reason.New(reason.UntrustedChain, "cms: TSA certificate not found in the token")
		return ts
	}
	th, err := tsi.Hash()
	if err != nil {
		ts.Err = err
		return ts
	}
	ts.Err = tsi.Verify(ts.Signer, OIDTSTInfo, Digest(th, tok.Content))
	return ts
}

type tstInfo struct {
	hash    crypto.Hash
	imprint []byte
	genTime time.Time
}

// parseTSTInfo reads the fields of TSTInfo (RFC 3161 2.4.2) that matter.
func parseTSTInfo(content []byte) (*tstInfo, error) {
	// content is the value of the OCTET STRING: a DER TSTInfo SEQUENCE.
	s := cryptobyte.String(content)
	var seq, mi, alg cryptobyte.String
	var version int
	var policy, halg asn1.ObjectIdentifier
	var imprint, serial cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Integer(&version) ||
		!seq.ReadASN1ObjectIdentifier(&policy) ||
		!seq.ReadASN1(&mi, cbasn1.SEQUENCE) || !mi.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&halg) || !mi.ReadASN1(&imprint, cbasn1.OCTET_STRING) ||
		!seq.ReadASN1(&serial, cbasn1.INTEGER) {
		return nil, malformed("bad TSTInfo")
	}
	var gt cryptobyte.String
	var tag cbasn1.Tag
	if !seq.ReadAnyASN1Element(&gt, &tag) {
		return nil, malformed("TSTInfo without genTime")
	}
	t, err := parseTime(gt)
	if err != nil {
		return nil, err
	}
	h, err := HashFromOID(halg)
	if err != nil {
		return nil, err
	}
	if !h.Available() {
		return nil, reason.New(reason.Unsupported, "cms: timestamp hash %v unavailable", h)
	}
	return &tstInfo{hash: h, imprint: imprint, genTime: t}, nil
}

// String describes a timestamp for logs.
func (t Timestamp) String() string {
	return fmt.Sprintf("%s@%s", t.Kind, t.Time.Format(time.RFC3339))
}
