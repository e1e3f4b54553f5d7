package seal_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/vigil-attest/vigil/store/seal"
)

// FuzzOpen feeds the envelope decoder arbitrary bytes and row identities.
// It must never panic, must refuse with a code, and may accept only the
// exact envelope sealed for that exact row (AES-GCM forgeries aside, which
// a fuzzer cannot find): whatever it opens is the sealed secret.
func FuzzOpen(f *testing.F) {
	raw := bytes.Repeat([]byte{7}, seal.KeySize)
	k, err := seal.NewKey(raw)
	if err != nil {
		f.Fatal(err)
	}
	secret := []byte("-----BEGIN PRIVATE KEY-----\nfuzz\n")
	// env is secret sealed for secrets/ca under k, fixed (Seal's nonce is
	// random, and every fuzzing process must agree on the one envelope).
	env, _ := hex.DecodeString("5647534c0181ec7ecd50936f607aca3aa4dd78f98d56368a28af40a1f2965cfe46d7eecd3f06bebb593b9db0457052ed9d9018668417bceb50a9f68e563926dcf76ccd535bc0baff6435")
	if pt, err := k.Open(seal.Row("secrets", "ca"), env); err != nil || !bytes.Equal(pt, secret) {
		f.Fatalf("the seed envelope does not open: %v", err)
	}
	f.Add(env, []byte("ca"))
	f.Add(env, []byte("nonce-key"))
	f.Add(env[:seal.Overhead], []byte("ca"))
	f.Add([]byte("VGSL\x02"), []byte("ca"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----"), []byte("ca"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, b, name []byte) {
		pt, err := k.Open(seal.Row("secrets", string(name)), b)
		if err != nil {
			if pt != nil {
				t.Fatalf("Open returned plaintext with error %v", err)
			}
			switch seal.Of(err) {
			case seal.Malformed, seal.UnknownVersion, seal.WrongKey, seal.NotAuthentic:
			default:
				t.Fatalf("Open error without an envelope code: %v", err)
			}
			if _, kerr := seal.KeyID(b); kerr == nil && seal.Of(err) == seal.Malformed {
				t.Fatalf("KeyID accepts what Open calls malformed: %v", err)
			}
			return
		}
		if !bytes.Equal(b, env) || string(name) != "ca" || !bytes.Equal(pt, secret) {
			t.Fatalf("Open accepted %x for row %q, giving %q", b, name, pt)
		}
	})
}
