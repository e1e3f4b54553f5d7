// Package seal encrypts the attestation service's secrets at rest: the
// session-report CA key, the token signing keys and the nonce MAC key are
// stored in the database only as envelopes sealed under a key that is not
// in the database (a file in the data directory, or configuration).
//
// An envelope is AES-256-GCM over the secret, with the envelope's header
// and the row's identity (table and primary key, see Row) as additional
// data: a ciphertext copied into another row, or a header edited, fails
// to open with NotAuthentic. The header names the format version and the
// key (by an 8-byte ID derived from it), so that a database sealed under
// another key is refused with WrongKey before any decryption, and so that
// a later version can rotate keys.
//
// Version 1 layout (all lengths in bytes):
//
//	magic "VGSL" (4) | version 0x01 (1) | key ID (8) | nonce (12) | ciphertext ‖ GCM tag (≥ 16)
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

const (
	// KeySize is the size of a sealing key: AES-256.
	KeySize = 32
	// Version is the envelope version Seal writes.
	Version = 1
	// MaxSize bounds an envelope (and so a sealed secret); Open refuses
	// longer input as Malformed without allocating for it.
	MaxSize = 1 << 20

	magic     = "VGSL"
	idSize    = 8
	nonceSize = 12
	tagSize   = 16
	// headerSize is magic, version and key ID: what the GCM additional
	// data covers ahead of the row identity.
	headerSize = len(magic) + 1 + idSize
	// Overhead is how much longer an envelope is than its plaintext.
	Overhead = headerSize + nonceSize + tagSize
)

// Code is a stable, machine-readable reason why a sealed secret (or the
// key that seals them) was refused. The codes are part of Vigil's public
// contract: never rename one, add new ones instead.
type Code string

// The codes, in the order Open checks them.
const (
	// Malformed: the bytes are not an envelope: shorter than a version-1
	// envelope, longer than MaxSize, or without the "VGSL" magic.
	Malformed Code = "malformed"
	// UnknownVersion: the envelope's version is not one this binary
	// reads (an envelope from a newer Vigil).
	UnknownVersion Code = "unknown-version"
	// WrongKey: the envelope, or the database, was sealed under another
	// key (its key ID differs from the configured key's).
	WrongKey Code = "wrong-key"
	// NotAuthentic: AES-GCM authentication failed: the ciphertext, the
	// header or the row identity differ from what was sealed (for
	// example a ciphertext moved to another row).
	NotAuthentic Code = "not-authentic"
	// BadKey: the configured key is not 32 bytes written as 64 hex
	// digits, or its file is unreadable or open to group or others.
	BadKey Code = "bad-key"
	// NoKey: a secret was read or written without a sealing key
	// configured; secrets are never stored in plaintext.
	NoKey Code = "no-key"
	// Plaintext: a database sealed under a key holds a row in plaintext
	// (only a database never sealed is migrated in place).
	Plaintext Code = "plaintext"
)

// All returns every code, sorted, for documentation.
func All() []Code {
	c := []Code{Malformed, UnknownVersion, WrongKey, NotAuthentic, BadKey, NoKey, Plaintext}
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

// Error is a refusal with its code.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string { return "secrets " + string(e.Code) + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Of returns the code carried by err, or "" when it carries none.
func Of(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Errorf returns an error with code c.
func Errorf(c Code, format string, args ...any) error {
	return &Error{Code: c, Err: fmt.Errorf(format, args...)}
}

// Key is a sealing key. It is safe for concurrent use.
type Key struct {
	id   [idSize]byte
	aead cipher.AEAD
}

// NewKey makes a key from KeySize raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, Errorf(BadKey, "a sealing key is %d bytes, not %d", KeySize, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, Errorf(BadKey, "%v", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, Errorf(BadKey, "%v", err)
	}
	k := &Key{aead: aead}
	// The ID names the key without revealing it: a MAC of a fixed label.
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("vigil seal key id v1"))
	copy(k.id[:], m.Sum(nil))
	return k, nil
}

// ParseKey reads a key written as 64 hex digits (as `openssl rand -hex
// 32` prints it), ignoring surrounding white space.
func ParseKey(text string) (*Key, error) {
	s := strings.TrimSpace(text)
	if len(s) != 2*KeySize {
		return nil, Errorf(BadKey, "a sealing key is %d hex digits, not %d characters", 2*KeySize, len(s))
	}
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, Errorf(BadKey, "a sealing key is %d hex digits: %v", 2*KeySize, err)
	}
	return NewKey(raw)
}

// Generate makes a random key and returns it with its text form.
func Generate() (*Key, string, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("seal: random key: %w", err)
	}
	k, err := NewKey(raw)
	if err != nil {
		return nil, "", err
	}
	return k, hex.EncodeToString(raw), nil
}

// ID is the key's ID in hex (16 digits): what envelopes and the
// database's key record name, and what errors show.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

// Row is the identity of the row a secret is sealed for: its table and
// primary key. Sealing binds the envelope to it.
func Row(table, key string) []byte {
	// A table name never holds NUL, so the encoding is unambiguous.
	return []byte(table + "\x00" + key)
}

// Seal encrypts plaintext for the row identified by row.
func (k *Key) Seal(row, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxSize-Overhead {
		return nil, fmt.Errorf("seal: a %d-byte secret exceeds the %d-byte limit", len(plaintext), MaxSize-Overhead)
	}
	out := make([]byte, headerSize+nonceSize, Overhead+len(plaintext))
	copy(out, magic)
	out[len(magic)] = Version
	copy(out[len(magic)+1:], k.id[:])
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("seal: random nonce: %w", err)
	}
	ad := additional(out[:headerSize], row)
	return k.aead.Seal(out, out[headerSize:headerSize+nonceSize], plaintext, ad), nil
}

// Open decrypts an envelope sealed for row. Errors carry a Code:
// Malformed, UnknownVersion, WrongKey or NotAuthentic.
func (k *Key) Open(row, envelope []byte) ([]byte, error) {
	id, err := KeyID(envelope)
	if err != nil {
		return nil, err
	}
	if id != k.ID() {
		return nil, Errorf(WrongKey, "sealed under key %s, the configured key is %s", id, k.ID())
	}
	nonce := envelope[headerSize : headerSize+nonceSize]
	pt, err := k.aead.Open(nil, nonce, envelope[headerSize+nonceSize:], additional(envelope[:headerSize], row))
	if err != nil {
		return nil, Errorf(NotAuthentic, "the envelope does not authenticate for row %q (altered, or moved from another row)", printable(row))
	}
	return pt, nil
}

// KeyID checks an envelope's framing and returns the ID of the key it
// was sealed under, without decrypting it.
func KeyID(envelope []byte) (string, error) {
	switch {
	case len(envelope) > MaxSize:
		return "", Errorf(Malformed, "%d bytes, more than the %d-byte limit", len(envelope), MaxSize)
	case len(envelope) < len(magic)+1:
		return "", Errorf(Malformed, "%d bytes, too short for an envelope", len(envelope))
	case !bytes.Equal(envelope[:len(magic)], []byte(magic)):
		return "", Errorf(Malformed, "no %q magic", magic)
	case envelope[len(magic)] != Version:
		return "", Errorf(UnknownVersion, "envelope version %d, this binary reads version %d", envelope[len(magic)], Version)
	case len(envelope) < Overhead:
		return "", Errorf(Malformed, "%d bytes, shorter than a version-%d envelope (%d)", len(envelope), Version, Overhead)
	}
	return hex.EncodeToString(envelope[len(magic)+1 : headerSize]), nil
}

// additional is the GCM additional data: the header, then the row.
func additional(header, row []byte) []byte {
	ad := make([]byte, 0, len(header)+len(row))
	return append(append(ad, header...), row...)
}

// printable shows a row identity in errors.
func printable(row []byte) string { return strings.ReplaceAll(string(row), "\x00", "/") }
