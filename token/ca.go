package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

const (
	// CAName is the common name of the service CA Vigil makes.
	CAName = "Vigil attestation CA"
	// CASecret is the KeyStore secret holding the service CA: its PKCS#8
	// private key ("PRIVATE KEY") and certificate ("CERTIFICATE") as PEM.
	CASecret = "ca"
	// caLifetime is how long a CA Vigil makes is valid.
	caLifetime = 20 * 365 * 24 * time.Hour
)

// newCA makes the self-signed service CA and encodes it for CASecret.
func newCA(now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: CAName, Organization: []string{"Vigil"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signing the CA certificate: %w", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the CA key: %w", err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return b.Bytes(), nil
}

// decodeCA reads what newCA wrote.
func decodeCA(b []byte) (*x509.Certificate, crypto.Signer, error) {
	var keyDER, certDER []byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			keyDER = blk.Bytes
		case "CERTIFICATE":
			certDER = blk.Bytes
		}
	}
	if keyDER == nil || certDER == nil {
		return nil, nil, errors.New("the CA secret holds no PRIVATE KEY and CERTIFICATE PEM blocks")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("the CA key is a %T, not a signer", k)
	}
	return cert, signer, nil
}

// checkCA checks that key is cert's and cert may issue certificates.
func checkCA(cert *x509.Certificate, key crypto.Signer) error {
	if cert == nil || key == nil {
		return errors.New("the CA needs both a certificate and its key")
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return fmt.Errorf("CA certificate %q is not a CA (basic constraints)", cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA certificate %q lacks the certSign key usage", cert.Subject)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("the CA key does not match certificate %q", cert.Subject)
	}
	return nil
}

func randomSerial() *big.Int {
	// 127 random bits, never zero: positive and at most 16 bytes (RFC
	// 5280 §4.1.2.2). crypto/rand.Read never fails (Go ≥ 1.24).
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[0] &= 0x7f
	b[15] |= 1
	return new(big.Int).SetBytes(b[:])
}
