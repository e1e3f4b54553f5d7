package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxCertificateFile bounds a certificate file; bundles are kilobytes.
const MaxCertificateFile = 16 << 20

// LoadCertificates reads the certificates of one file: PEM (every
// CERTIFICATE block; other blocks are ignored) or DER. It reads only
// regular files of a sane size, so that a configuration naming /dev/zero or a FIFO
// cannot hang the loader.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	// Stat before opening: opening a FIFO blocks.
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > MaxCertificateFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a certificate file", path, MaxCertificateFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCertificateFile+1))
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificates reads the certificates of a file's bytes: PEM (every
// CERTIFICATE block; other blocks are ignored) or DER. None is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for n := 1; ; n++ {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d: %v", n, err)
			}
			certs = append(certs, c)
		}
	} else {
		var err error
		certs, err = x509.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("not PEM, and not DER certificates: %v", err)
		}
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

// LoadCertificateFiles reads every certificate of every file, in order
// (LoadCertificates on each).
func LoadCertificateFiles(files []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, f := range files {
		cs, err := LoadCertificates(f)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}
