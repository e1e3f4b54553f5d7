package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"time"
)

// Crafted certificates for path-validation tests: issuers that RFC 5280
// forbids to issue.

// NewCA makes a CA certificate issued by parent, as NewIntermediate does,
// after modify has edited its template (clear KeyUsage, set MaxPathLen,
// add ExtraExtensions, clear IsCA, ...).
func (parent *Cert) NewCA(o Options, modify func(*x509.Certificate)) *Cert {
	tmpl, key := caTemplate(o, "Vigil Test Intermediate CA")
	tmpl.ExtKeyUsage = o.EKU
	if modify != nil {
		modify(tmpl)
	}
	return sign(tmpl, parent.Cert, key.Public(), parent.Key, key)
}

// NewLeafWith makes a leaf as NewLeaf does, after modify has edited its
// template.
func (parent *Cert) NewLeafWith(o Options, modify func(*x509.Certificate)) *Cert {
	c := parent.NewLeaf(o) // for its defaults; re-signed below
	tmpl := *c.Cert
	tmpl.Raw, tmpl.RawTBSCertificate = nil, nil
	tmpl.Extensions = nil
	tmpl.UnhandledCriticalExtensions = nil
	if modify != nil {
		modify(&tmpl)
	}
	return sign(&tmpl, parent.Cert, c.Key.Public(), parent.Key, c.Key)
}

// NewV1 makes a version 1 certificate (no extensions at all: no
// basicConstraints, no keyUsage) issued by parent, signed with SHA-256.
// crypto/x509 cannot create one, so the TBSCertificate is encoded here.
func (parent *Cert) NewV1(o Options) *Cert {
	o.defaults()
	if o.CommonName == "" {
		o.CommonName = "Vigil Test v1 Certificate"
	}
	key := newKey(o.Key)
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		panic(err)
	}
	subject, err := asn1.Marshal(pkix.Name{CommonName: o.CommonName, Organization: []string{"Vigil Test"}}.ToRDNSequence())
	if err != nil {
		panic(err)
	}
	var sigAlg pkix.AlgorithmIdentifier
	switch parent.Key.(type) {
	case *rsa.PrivateKey:
		sigAlg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}
	case *ecdsa.PrivateKey:
		sigAlg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}
	default:
		panic("testpki: NewV1 needs an RSA or ECDSA issuer")
	}
	tbs := struct {
		Serial    *big.Int
		Signature pkix.AlgorithmIdentifier
		Issuer    asn1.RawValue
		Validity  struct{ NotBefore, NotAfter time.Time }
		Subject   asn1.RawValue
		SPKI      asn1.RawValue
	}{
		Serial:    o.Serial,
		Signature: sigAlg,
		Issuer:    asn1.RawValue{FullBytes: parent.Cert.RawSubject},
		Subject:   asn1.RawValue{FullBytes: subject},
		SPKI:      asn1.RawValue{FullBytes: spki},
	}
	tbs.Validity.NotBefore, tbs.Validity.NotAfter = o.NotBefore.UTC().Truncate(time.Second), o.NotAfter.UTC().Truncate(time.Second)
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		panic(err)
	}
	h := sha256.Sum256(tbsDER)
	sig, err := parent.Key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		panic(err)
	}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbsDER}, sigAlg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &Cert{Cert: c, Key: key}
}

// NewRootWith makes a self-signed root CA, as NewRoot does, after modify
// has edited its template.
func NewRootWith(o Options, modify func(*x509.Certificate)) *Cert {
	tmpl, key := caTemplate(o, "Vigil Test Root CA")
	if modify != nil {
		modify(tmpl)
	}
	return sign(tmpl, tmpl, key.Public(), key, key)
}

// SubjectKeyID is the key identifier testpki writes for pub (SHA-1 of the
// SubjectPublicKeyInfo), for a certificate whose issuer carries none.
func SubjectKeyID(pub crypto.PublicKey) []byte { return skid(pub) }
