// Package soft is the software enclave: an ECDSA P-256 key in a file
// (mode 0600) or in memory. Its evidence says "software" and can never
// reach a hardware-rooted level.
package soft

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vigil-attest/vigil/enclave"
)

// Enclave is a software report key.
type Enclave struct {
	key *ecdsa.PrivateKey
}

// New returns an enclave with a fresh in-memory key.
func New() (*Enclave, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Enclave{key: k}, nil
}

// Open loads the key file, creating it (0600) when absent. A key file
// that others can read is refused: the key would not be the host's alone.
func Open(path string) (*Enclave, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("software key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("software key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("software key %s: mode %04o, want 0600 (readable by others)", path, fi.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("software key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("software key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("software key %s: want an ECDSA P-256 key", path)
	}
	return &Enclave{key: ek}, nil
}

func create(path string) (*Enclave, error) {
	e, err := New()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(e.key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("software key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("software key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("software key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("software key: %w", err)
	}
	return e, nil
}

// Kind implements enclave.Enclave.
func (e *Enclave) Kind() enclave.Kind { return enclave.Software }

// ReportPublic implements enclave.Enclave.
func (e *Enclave) ReportPublic() crypto.PublicKey { return &e.key.PublicKey }

// SignReport implements enclave.Enclave.
func (e *Enclave) SignReport(_ context.Context, digest []byte) ([]byte, error) {
	if len(digest) != 32 {
		return nil, fmt.Errorf("software enclave: digest of %d bytes, want 32", len(digest))
	}
	return ecdsa.SignASN1(rand.Reader, e.key, digest)
}

// Close implements enclave.Enclave.
func (e *Enclave) Close() error { return nil }
