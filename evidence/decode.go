package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// MaxSize bounds the evidence document Decode accepts: 16 MiB, room for
// a firmware event log and an IMA list of tens of thousands of entries in
// base64. Send the IMA list incrementally to stay well under it.
const MaxSize = 16 << 20

// Decode errors. Decode's other errors are malformed JSON.
var (
	// ErrTooLarge: the document exceeds MaxSize.
	ErrTooLarge = errors.New("evidence exceeds the size limit")
	// ErrUnsupportedVersion: the version is not Version.
	ErrUnsupportedVersion = errors.New("unsupported evidence version")
)

// Decode parses an evidence document strictly: at most MaxSize bytes,
// one JSON object, no unknown fields, no trailing data, and the version
// Version. It checks nothing cryptographic: that is Verify's work.
func Decode(b []byte) (*Evidence, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("evidence: %w: %d bytes, limit %d", ErrTooLarge, len(b), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ev Evidence
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("evidence: data after the JSON object")
	}
	if ev.Version != Version {
		return nil, fmt.Errorf("evidence: %w: %q, want %q", ErrUnsupportedVersion, ev.Version, Version)
	}
	return &ev, nil
}

// Encode returns the evidence as JSON (no indentation, fields in the
// order of the Go types).
func (ev *Evidence) Encode() ([]byte, error) {
	return json.Marshal(ev)
}

// VerifyBytes decodes raw evidence and verifies it. A document Decode
// refuses gives an invalid Result with the reason malformed (or
// unsupported-version).
func VerifyBytes(ctx context.Context, raw []byte, o Options) *Result {
	ev, err := Decode(raw)
	if err != nil {
		r := &Result{}
		if errors.Is(err, ErrUnsupportedVersion) {
			r.fail(UnsupportedVersion, "%v", err)
		} else {
			r.fail(Malformed, "%v", err)
		}
		r.finish()
		return r
	}
	return Verify(ctx, ev, o)
}

// AKFromPEM parses an enrolled AK's public key, PEM SubjectPublicKeyInfo
// ("PUBLIC KEY"), for Options.AK.
func AKFromPEM(b []byte) (crypto.PublicKey, error) {
	return parsePublicPEM(string(b))
}

// parsePublicPEM parses exactly one "PUBLIC KEY" PEM block (white space
// around it allowed) holding an ECDSA or RSA key.
func parsePublicPEM(s string) (crypto.PublicKey, error) {
	blk, rest := pem.Decode([]byte(s))
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block %q, want PUBLIC KEY", blk.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM block")
	}
	if len(blk.Headers) != 0 {
		return nil, errors.New("PEM headers")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	switch k.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: %T", errUnsupported, k)
}
