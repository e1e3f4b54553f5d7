// Package devca makes the development TLS material `vigil server` and
// `vigil up` use when no certificate is configured: a private CA and a
// server certificate for the loopback names, kept in a data directory so
// that agents can pin the CA across restarts. The attestation protocol's
// soundness never depends on TLS (every message that matters is signed
// and nonce-bound); TLS here is defence in depth. Production deployments
// configure their own certificate.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the directory.
const (
	CAFile   = "tls-ca.pem"
	CAKey    = "tls-ca.key"
	CertFile = "tls.pem"
	KeyFile  = "tls.key"
)

// Material is the loaded development TLS material.
type Material struct {
	// Config serves the server certificate.
	Config *tls.Config
	// CAPEM is the CA certificate clients trust; CAPath is its file.
	CAPEM  []byte
	CAPath string
	// Pool holds the CA for clients in the same process.
	Pool *x509.CertPool
}

// Ensure loads the CA and server certificate from dir, creating them
// (files 0600, directory 0700) when absent or when the server
// certificate does not cover hosts or expires within a week. hosts are
// DNS names or IP addresses; localhost, 127.0.0.1 and ::1 are always
// included.
func Ensure(dir string, hosts []string) (*Material, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	hosts = append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	caCert, caKey, err := loadOrMakeCA(dir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil || !covers(cert, caCert, hosts) {
		if cert, err = makeServer(dir, caCert, caKey, hosts); err != nil {
			return nil, err
		}
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &Material{
		Config: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		CAPEM:  caPEM, CAPath: filepath.Join(dir, CAFile), Pool: pool,
	}, nil
}

func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKey))
	if err == nil {
		c, perr := x509.ParseCertificate(pair.Certificate[0])
		k, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if perr == nil && ok && time.Until(c.NotAfter) > 30*24*time.Hour {
			return c, k, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("devca: %s: %w", filepath.Join(dir, CAFile), err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Vigil development TLS CA", Organization: []string{"Vigil"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("devca: CA certificate: %w", err)
	}
	c, _ := x509.ParseCertificate(der)
	if err := writePair(dir, CAFile, CAKey, der, key); err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

func makeServer(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devca: server certificate: %w", err)
	}
	if err := writePair(dir, CertFile, KeyFile, der, key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
}

// covers reports whether cert is issued by ca, valid for a week more and
// names every host.
func covers(cert tls.Certificate, ca *x509.Certificate, hosts []string) bool {
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || c.CheckSignatureFrom(ca) != nil || time.Until(c.NotAfter) < 7*24*time.Hour {
		return false
	}
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		typ  string
		b    []byte
	}{{keyName, "PRIVATE KEY", kb}, {certName, "CERTIFICATE", der}} {
		p := filepath.Join(dir, f.name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.b}), 0o600); err != nil {
			return fmt.Errorf("devca: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("devca: %w", err)
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}
