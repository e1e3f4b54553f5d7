// Package testpki makes throwaway certificate hierarchies for tests: a root
// CA, intermediates and leaf certificates with chosen key types, extended key
// usages and validity windows, and writes them as PEM files for peer tools
// such as osslsigncode, sbsign and openssl.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/kernelkeys"
)

// KeyType selects the key algorithm of a certificate.
type KeyType int

const (
	RSA2048 KeyType = iota
	RSA3072
	ECDSAP256
	ECDSAP384
)

// Cert is a certificate with its private key.
type Cert struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Options controls a certificate. The zero value makes an RSA-2048 code
// signing certificate valid from one hour ago for ten years.
type Options struct {
	CommonName string
	Key        KeyType
	// NotBefore and NotAfter default to now-1h and now+10y.
	NotBefore, NotAfter time.Time
	// EKU defaults to code signing for leaves and none for CAs.
	EKU []x509.ExtKeyUsage
	// UnknownEKU adds raw extended key usage OIDs.
	UnknownEKU []asn1OID
	// CriticalEKU marks the EKU extension critical (RFC 3161 TSAs need it).
	CriticalEKU bool
	// Serial defaults to a counter-based unique serial.
	Serial *big.Int
	// SigAlg overrides the signature algorithm used by the issuer.
	SigAlg x509.SignatureAlgorithm
}

type asn1OID = asn1.ObjectIdentifier

var serialCounter atomic.Int64

func init() { serialCounter.Store(time.Now().UnixNano() & 0xffffffff) }

func newKey(t KeyType) crypto.Signer {
	var k crypto.Signer
	var err error
	switch t {
	case RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case ECDSAP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	if err != nil {
		panic(err)
	}
	return k
}

func (o *Options) defaults() {
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.AddDate(10, 0, 0)
	}
	if o.Serial == nil {
		o.Serial = big.NewInt(serialCounter.Add(1))
	}
}

func skid(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	h := sha1.Sum(der)
	return h[:]
}

// NewRoot makes a self-signed root CA.
func NewRoot(o Options) *Cert {
	tmpl, key := caTemplate(o, "Vigil Test Root CA")
	return sign(tmpl, tmpl, key.Public(), key, key)
}

// NewIntermediate makes a CA certificate issued by parent.
func (parent *Cert) NewIntermediate(o Options) *Cert {
	tmpl, key := caTemplate(o, "Vigil Test Intermediate CA")
	tmpl.ExtKeyUsage = o.EKU
	return sign(tmpl, parent.Cert, key.Public(), parent.Key, key)
}

// caTemplate returns a CA certificate template and its new key.
func caTemplate(o Options, defaultCN string) (*x509.Certificate, crypto.Signer) {
	o.defaults()
	if o.CommonName == "" {
		o.CommonName = defaultCN
	}
	key := newKey(o.Key)
	return &x509.Certificate{
		SerialNumber:          o.Serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"Vigil Test"}},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid(key.Public()),
		SignatureAlgorithm:    o.SigAlg,
	}, key
}

// NewLeaf makes an end-entity certificate issued by parent. Its EKU defaults
// to code signing.
func (parent *Cert) NewLeaf(o Options) *Cert {
	o.defaults()
	if o.CommonName == "" {
		o.CommonName = "Vigil Test Code Signer"
	}
	if o.EKU == nil && o.UnknownEKU == nil {
		o.EKU = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	}
	key := newKey(o.Key)
	tmpl := &x509.Certificate{
		SerialNumber:          o.Serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"Vigil Test"}},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		ExtKeyUsage:           o.EKU,
		SubjectKeyId:          skid(key.Public()),
		SignatureAlgorithm:    o.SigAlg,
	}
	tmpl.UnknownExtKeyUsage = append(tmpl.UnknownExtKeyUsage, o.UnknownEKU...)
	if o.CriticalEKU {
		// Go has no knob for EKU criticality; build the extension by hand.
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, criticalEKU(o.EKU))
		tmpl.ExtKeyUsage = nil
	}
	return sign(tmpl, parent.Cert, key.Public(), parent.Key, key)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey, key crypto.Signer) *Cert {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &Cert{Cert: c, Key: key}
}

// CertPEM returns the certificate as PEM.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// CertPEMOf encodes any certificate as PEM.
func CertPEMOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM returns the private key as PKCS#8 PEM.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFiles writes NAME.pem (certificate) and NAME.key (PKCS#8 key) into
// dir and returns their paths.
func (c *Cert) WriteFiles(tb testing.TB, dir, name string) (certPath, keyPath string) {
	tb.Helper()
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, c.CertPEM(), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyPath, c.KeyPEM(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certPath, keyPath
}

// WritePEMs writes the certificates, concatenated, to dir/name and returns
// the path.
func WritePEMs(tb testing.TB, dir, name string, certs ...*Cert) string {
	tb.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, c.CertPEM()...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Hierarchy is the usual root → intermediate → leaf chain.
type Hierarchy struct {
	Root, Intermediate, Leaf *Cert
}

// NewHierarchy makes a root, an intermediate and a code-signing leaf.
func NewHierarchy(leaf Options) *Hierarchy {
	root := NewRoot(Options{})
	inter := root.NewIntermediate(Options{})
	return &Hierarchy{Root: root, Intermediate: inter, Leaf: inter.NewLeaf(leaf)}
}

var ekuOIDs = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageServerAuth:   {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:   {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:  {1, 3, 6, 1, 5, 5, 7, 3, 3},
	x509.ExtKeyUsageTimeStamping: {1, 3, 6, 1, 5, 5, 7, 3, 8},
}

func criticalEKU(usages []x509.ExtKeyUsage) pkix.Extension {
	var oids []asn1.ObjectIdentifier
	for _, u := range usages {
		oid, ok := ekuOIDs[u]
		if !ok {
			panic("testpki: unsupported EKU for critical extension")
		}
		oids = append(oids, oid)
	}
	val, err := asn1.Marshal(oids)
	if err != nil {
		panic(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: val}
}

// EmbeddedCert returns the certificate with common name cn found anywhere
// in a file (a signed PE's certificate table, shim's vendor certificate
// in its data), failing tb when there is none.
func EmbeddedCert(tb testing.TB, path, cn string) *x509.Certificate {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cs, err := kernelkeys.Scan(f)
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range cs {
		if c.Subject.CommonName == cn {
			return c
		}
	}
	tb.Fatalf("%s: no certificate %q", path, cn)
	return nil
}
