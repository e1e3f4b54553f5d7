package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sort"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SignOptions controls Sign.
type SignOptions struct {
	// Hash is the digest algorithm (default SHA-256).
	Hash crypto.Hash
	// ContentType is the encapsulated content type (default id-data).
	ContentType asn1.ObjectIdentifier
	// Content is the content to sign. With RawContent it must be one DER
	// element (PKCS#7 v1.5 style, as Authenticode embeds its
	// SpcIndirectDataContent) and the digest covers its value octets;
	// otherwise it is wrapped in an OCTET STRING.
	Content    []byte
	RawContent bool
	// Detached omits the content from the output. With Detached, Digest may
	// be given instead of Content (the caller hashed a large file).
	Detached bool
	Digest   []byte
	// NoAttributes signs the content digest directly, without signed
	// attributes (what the kernel's sign-file does).
	NoAttributes bool
	// NoCertificates omits all certificates.
	NoCertificates bool
	// SubjectKeyID identifies the signer by subject key identifier instead
	// of issuer and serial number.
	SubjectKeyID bool
	// Chain holds extra certificates to include (intermediates).
	Chain []*x509.Certificate
	// SigningTime, when set, adds the signingTime attribute.
	SigningTime time.Time
	// Attributes are extra signed attributes (e.g. SpcSpOpusInfo).
	Attributes []Attribute
	// UnsignedAttributes are added unsigned (e.g. nested signatures).
	UnsignedAttributes []Attribute
}

// Sign creates a ContentInfo holding a SignedData with one signer.
func Sign(signer crypto.Signer, cert *x509.Certificate, o SignOptions) ([]byte, error) {
	if o.Hash == 0 {
		o.Hash = crypto.SHA256
	}
	if o.ContentType == nil {
		o.ContentType = OIDData
	}
	if o.Hash == crypto.MD5 {
		return nil, errors.New("cms: refusing to sign with MD5")
	}
	halg, err := OIDFromHash(o.Hash)
	if err != nil {
		return nil, err
	}
	// The octets the digest covers.
	var covered []byte
	if o.RawContent {
		s := cryptobyte.String(o.Content)
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1(&v, &tag) || !s.Empty() {
			return nil, errors.New("cms: RawContent is not one DER element")
		}
		covered = v
	} else {
		covered = o.Content
	}
	digest := o.Digest
	if digest == nil {
		digest = Digest(o.Hash, covered)
	} else if !o.Detached || o.Content != nil {
		return nil, errors.New("cms: Digest is only for detached signatures without Content")
	}

	var signedAttrs []byte // DER SET OF, or nil
	toSign := digest
	if !o.NoAttributes {
		attrs := []Attribute{
			{Type: OIDAttrContentType, Values: [][]byte{mustMarshal(o.ContentType)}},
		}
		if !o.SigningTime.IsZero() {
			attrs = append(attrs, Attribute{Type: OIDAttrSigningTime, Values: [][]byte{mustMarshal(o.SigningTime.UTC())}})
		}
		attrs = append(attrs, o.Attributes...)
		attrs = append(attrs, Attribute{Type: OIDAttrMessageDigest, Values: [][]byte{mustMarshal(digest)}})
		signedAttrs = marshalAttributes(attrs, 0x31)
		toSign = Digest(o.Hash, signedAttrs)
	}

	sigAlg, sig, err := signDigest(signer, o.Hash, toSign)
	if err != nil {
		return nil, err
	}

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(ci *cryptobyte.Builder) {
		ci.AddASN1ObjectIdentifier(OIDSignedData)
		ci.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(e *cryptobyte.Builder) {
			e.AddASN1(cbasn1.SEQUENCE, func(sd *cryptobyte.Builder) {
				version := int64(1)
				if o.SubjectKeyID || (!o.RawContent && !o.ContentType.Equal(OIDData)) {
					version = 3
				}
				sd.AddASN1Int64(version)
				sd.AddASN1(cbasn1.SET, func(s *cryptobyte.Builder) {
					s.AddASN1(cbasn1.SEQUENCE, func(a *cryptobyte.Builder) {
						a.AddASN1ObjectIdentifier(halg)
						a.AddASN1NULL()
					})
				})
				sd.AddASN1(cbasn1.SEQUENCE, func(enc *cryptobyte.Builder) {
					enc.AddASN1ObjectIdentifier(o.ContentType)
					if !o.Detached {
						enc.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(c *cryptobyte.Builder) {
							if o.RawContent {
								c.AddBytes(o.Content)
							} else {
								c.AddASN1OctetString(o.Content)
							}
						})
					}
				})
				if !o.NoCertificates {
					sd.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(cs *cryptobyte.Builder) {
						cs.AddBytes(cert.Raw)
						for _, c := range o.Chain {
							if c.Equal(cert) {
								continue
							}
							cs.AddBytes(c.Raw)
						}
					})
				}
				sd.AddASN1(cbasn1.SET, func(sis *cryptobyte.Builder) {
					sis.AddASN1(cbasn1.SEQUENCE, func(si *cryptobyte.Builder) {
						if o.SubjectKeyID {
							si.AddASN1Int64(3)
							si.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(k *cryptobyte.Builder) {
								k.AddBytes(cert.SubjectKeyId)
							})
						} else {
							si.AddASN1Int64(1)
							si.AddASN1(cbasn1.SEQUENCE, func(ias *cryptobyte.Builder) {
								ias.AddBytes(cert.RawIssuer)
								ias.AddASN1BigInt(cert.SerialNumber)
							})
						}
						si.AddASN1(cbasn1.SEQUENCE, func(a *cryptobyte.Builder) {
							a.AddASN1ObjectIdentifier(halg)
							a.AddASN1NULL()
						})
						if signedAttrs != nil {
							tagged := append([]byte{0xa0}, signedAttrs[1:]...)
							si.AddBytes(tagged)
						}
						si.AddASN1(cbasn1.SEQUENCE, func(a *cryptobyte.Builder) {
							a.AddASN1ObjectIdentifier(sigAlg)
							if sigAlg.Equal(oidRSA) {
								a.AddASN1NULL()
							}
						})
						si.AddASN1OctetString(sig)
						if len(o.UnsignedAttributes) > 0 {
							si.AddBytes(marshalAttributes(o.UnsignedAttributes, 0xa1))
						}
					})
				})
			})
		})
	})
	return b.Bytes()
}

func signDigest(signer crypto.Signer, h crypto.Hash, digest []byte) (asn1.ObjectIdentifier, []byte, error) {
	switch signer.Public().(type) {
	case *rsa.PublicKey:
		sig, err := signer.Sign(rand.Reader, digest, h)
		if err != nil {
			return nil, nil, fmt.Errorf("cms: RSA sign: %w", err)
		}
		return oidRSA, sig, nil
	case *ecdsa.PublicKey:
		sig, err := signer.Sign(rand.Reader, digest, h)
		if err != nil {
			return nil, nil, fmt.Errorf("cms: ECDSA sign: %w", err)
		}
		switch h {
		case crypto.SHA1:
			return oidECDSASHA1, sig, nil
		case crypto.SHA384:
			return oidECDSASHA384, sig, nil
		case crypto.SHA512:
			return oidECDSASHA512, sig, nil
		}
		return oidECDSASHA256, sig, nil
	}
	return nil, nil, fmt.Errorf("cms: unsupported signing key %T", signer.Public())
}

// marshalAttributes encodes attributes as a DER SET OF (sorted, as DER
// requires) with the given outer tag.
func marshalAttributes(attrs []Attribute, tag byte) []byte {
	enc := make([][]byte, 0, len(attrs))
	for _, a := range attrs {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(s *cryptobyte.Builder) {
			s.AddASN1ObjectIdentifier(a.Type)
			s.AddASN1(cbasn1.SET, func(v *cryptobyte.Builder) {
				for _, val := range a.Values {
					v.AddBytes(val)
				}
			})
		})
		enc = append(enc, b.BytesOrPanic())
	}
	sort.Slice(enc, func(i, j int) bool { return lessDER(enc[i], enc[j]) })
	var body []byte
	for _, e := range enc {
		body = append(body, e...)
	}
	return append(appendLength([]byte{tag}, len(body)), body...)
}

// lessDER orders encodings for a DER SET OF: shorter octet strings are
// padded with zeros at the end.
func lessDER(a, b []byte) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// NewAttribute encodes a single-valued attribute.
func NewAttribute(oid asn1.ObjectIdentifier, valueDER []byte) Attribute {
	return Attribute{Type: oid, Values: [][]byte{valueDER}}
}
