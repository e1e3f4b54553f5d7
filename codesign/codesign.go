// Package codesign creates code signatures that independent tools accept:
// Authenticode for PE/EFI images (osslsigncode, sbverify), appended Linux
// module signatures (the kernel, modinfo, openssl cms) and detached CMS.
package codesign

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/kmodsig"
)

// Format is the kind of signature to make.
type Format string

// Formats.
const (
	PE       Format = "pe"
	Module   Format = "kmod"
	Detached Format = "cms"
)

// Signer is a key and its certificate chain.
type Signer struct {
	Key   crypto.Signer
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediates, embedded where the format allows
	// Hash is the digest algorithm (default SHA-256).
	Hash crypto.Hash
	// ProgramName and URL go into Authenticode's SpcSpOpusInfo.
	ProgramName, URL string
	// SubjectKeyID identifies a module signer by subject key identifier
	// (sign-file -k) instead of issuer and serial.
	SubjectKeyID bool
}

func (s *Signer) hash() crypto.Hash {
	if s.Hash == 0 {
		return crypto.SHA256
	}
	return s.Hash
}

// SignFile signs in and writes the result to out (for Detached, out is the
// .p7s signature). The output is written to a temporary file and renamed,
// so a failure never leaves a half-written file.
func SignFile(s *Signer, format Format, in, out string) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".vigil-sign-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	switch format {
	case PE:
		err = SignPE(s, src, st.Size(), w)
	case Module:
		err = SignModule(s, src, st.Size(), w)
	case Detached:
		err = SignDetached(s, src, w)
	default:
		err = fmt.Errorf("unknown format %q (want pe, kmod or cms)", format)
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	mode := st.Mode().Perm()
	if format == Detached {
		mode = 0o644
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// SignPE writes an Authenticode-signed copy of a PE image. Existing
// signatures are replaced.
func SignPE(s *Signer, r io.ReaderAt, size int64, w io.Writer) error {
	f, err := authenticode.Parse(r, size)
	if err != nil {
		return fmt.Errorf("parse PE: %w", err)
	}
	h := s.hash()
	// The hash must be that of the image without its current signatures;
	// ImageHash excludes the certificate table and pads unsigned images
	// exactly as WriteSigned will.
	sums, err := f.ImageHash(h)
	if err != nil {
		return fmt.Errorf("image hash: %w", err)
	}
	content, err := authenticode.MarshalIndirectData(h, sums[h])
	if err != nil {
		return err
	}
	opus, err := authenticode.MarshalSpOpusInfo(s.ProgramName, s.URL)
	if err != nil {
		return err
	}
	stmt, err := authenticode.MarshalStatementType()
	if err != nil {
		return err
	}
	sig, err := cms.Sign(s.Key, s.Cert, cms.SignOptions{
		Hash:        h,
		ContentType: authenticode.OIDSpcIndirectData,
		Content:     content,
		RawContent:  true,
		Chain:       s.Chain,
		Attributes: []cms.Attribute{
			cms.NewAttribute(authenticode.OIDSpcSpOpusInfo, opus),
			cms.NewAttribute(authenticode.OIDSpcStatementType, stmt),
		},
	})
	if err != nil {
		return err
	}
	return f.WriteSigned(r, w, sig)
}

// SignModule appends a kernel module signature, as scripts/sign-file does:
// PKCS#7 without signed attributes or certificates, identified by issuer
// and serial (or subject key identifier).
func SignModule(s *Signer, r io.ReaderAt, size int64, w io.Writer) error {
	content := io.NewSectionReader(r, 0, size)
	if kmodsig.HasMarker(r, size) {
		return fmt.Errorf("module is already signed (strip the signature first)")
	}
	h := s.hash().New()
	if _, err := io.Copy(h, content); err != nil {
		return err
	}
	sig, err := cms.Sign(s.Key, s.Cert, cms.SignOptions{
		Hash:           s.hash(),
		Detached:       true,
		Digest:         h.Sum(nil),
		NoAttributes:   true,
		NoCertificates: true,
		SubjectKeyID:   s.SubjectKeyID,
	})
	if err != nil {
		return err
	}
	return kmodsig.Append(w, io.NewSectionReader(r, 0, size), sig)
}

// SignDetached writes a DER detached CMS signature of the content, with
// signed attributes and the certificate chain (openssl cms -sign -binary).
func SignDetached(s *Signer, r io.Reader, w io.Writer) error {
	h := s.hash().New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	sig, err := cms.Sign(s.Key, s.Cert, cms.SignOptions{
		Hash:     s.hash(),
		Detached: true,
		Digest:   h.Sum(nil),
		Chain:    s.Chain,
	})
	if err != nil {
		return err
	}
	_, err = w.Write(sig)
	return err
}
