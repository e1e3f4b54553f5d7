package seal_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-attest/vigil/store/seal"
)

func mustKey(t testing.TB) *seal.Key {
	t.Helper()
	k, _, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wantCode(t *testing.T, what string, err error, c seal.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %s", what, c)
	}
	if got := seal.Of(err); got != c {
		t.Fatalf("%s: code %q (%v), want %q", what, got, err, c)
	}
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t)
	row := seal.Row("secrets", "ca")
	secret := []byte("-----BEGIN PRIVATE KEY-----\nsecret\n")
	env, err := k.Seal(row, secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != len(secret)+seal.Overhead {
		t.Errorf("envelope is %d bytes, want %d", len(env), len(secret)+seal.Overhead)
	}
	if bytes.Contains(env, secret) || bytes.Contains(env, []byte("PRIVATE KEY")) {
		t.Fatal("the envelope holds the plaintext")
	}
	if id, err := seal.KeyID(env); err != nil || id != k.ID() {
		t.Fatalf("KeyID = %q, %v; want %q", id, err, k.ID())
	}
	got, err := k.Open(row, env)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Two seals of one secret differ (random nonce).
	env2, _ := k.Seal(row, secret)
	if bytes.Equal(env, env2) {
		t.Error("two envelopes of one secret are equal")
	}
}

// TestOpenRefuses drives each way an attacker with write access to the
// database (or a different deployment) could hand the service an envelope.
func TestOpenRefuses(t *testing.T) {
	k := mustKey(t)
	row := seal.Row("signing_keys", "kid-a")
	env, err := k.Seal(row, []byte("pkcs8 key bytes"))
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(env)) }

	// A ciphertext moved to another row of the same table, or of another table.
	_, err = k.Open(seal.Row("signing_keys", "kid-b"), env)
	wantCode(t, "moved to another signing key", err, seal.NotAuthentic)
	_, err = k.Open(seal.Row("secrets", "kid-a"), env)
	wantCode(t, "moved to another table", err, seal.NotAuthentic)
	// Table/key boundary: "signing_keys" + "kid-a" must not equal "signing_key" + "skid-a".
	_, err = k.Open(seal.Row("signing_key", "skid-a"), env)
	wantCode(t, "shifted row identity", err, seal.NotAuthentic)

	// Sealed under another key: refused by ID before decryption.
	_, err = mustKey(t).Open(row, env)
	wantCode(t, "another key", err, seal.WrongKey)

	for _, tc := range []struct {
		name string
		b    []byte
		code seal.Code
	}{
		{"empty", nil, seal.Malformed},
		{"plaintext PEM", []byte("-----BEGIN PRIVATE KEY-----"), seal.Malformed},
		{"magic only", []byte("VGSL"), seal.Malformed},
		{"truncated", env[:seal.Overhead-1], seal.Malformed},
		{"oversized", append(bytes.Clone(env), make([]byte, seal.MaxSize)...), seal.Malformed},
		{"version 2", mod(func(b []byte) []byte { b[4] = 2; return b }), seal.UnknownVersion},
		{"version 0", mod(func(b []byte) []byte { b[4] = 0; return b }), seal.UnknownVersion},
		{"ciphertext bit", mod(func(b []byte) []byte { b[len(b)-17] ^= 1; return b }), seal.NotAuthentic},
		{"tag bit", mod(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), seal.NotAuthentic},
		{"nonce bit", mod(func(b []byte) []byte { b[13] ^= 1; return b }), seal.NotAuthentic},
		{"truncated tag", env[:len(env)-1], seal.NotAuthentic},
		{"key ID edited", mod(func(b []byte) []byte { b[5] ^= 1; return b }), seal.WrongKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := k.Open(row, tc.b)
			if pt != nil {
				t.Errorf("Open returned %d bytes with the error", len(pt))
			}
			wantCode(t, tc.name, err, tc.code)
		})
	}
}

func TestParseKey(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	k, err := seal.ParseKey("  " + hex64 + "\n")
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := seal.ParseKey(strings.ToUpper(hex64))
	if k.ID() != k2.ID() || len(k.ID()) != 16 {
		t.Errorf("IDs %q and %q of one key", k.ID(), k2.ID())
	}
	for _, bad := range []string{"", hex64[:62], hex64 + "ab", strings.Repeat("zz", 32),
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=" /* base64 of 32 bytes */} {
		_, err := seal.ParseKey(bad)
		wantCode(t, "ParseKey("+bad+")", err, seal.BadKey)
	}
	_, err = seal.NewKey(make([]byte, 16))
	wantCode(t, "NewKey(16 bytes)", err, seal.BadKey)
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets-key")
	k, created, err := seal.EnsureKeyFile(path)
	if err != nil || !created {
		t.Fatalf("EnsureKeyFile = %v, %v; want created", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	k2, created, err := seal.EnsureKeyFile(path)
	if err != nil || created || k2.ID() != k.ID() {
		t.Fatalf("EnsureKeyFile again = %v, %v, same key %v", created, err, k2.ID() == k.ID())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the data directory holds %d files, want only the key", len(ents))
	}

	// A key file readable by others is refused, not used.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = seal.LoadKeyFile(path)
	wantCode(t, "key file 0644", err, seal.BadKey)
	_, _, err = seal.EnsureKeyFile(path)
	wantCode(t, "EnsureKeyFile on a 0644 file", err, seal.BadKey)

	// Not a key, and too long.
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	_, err = seal.LoadKeyFile(bad)
	wantCode(t, "garbage key file", err, seal.BadKey)
	os.WriteFile(bad, bytes.Repeat([]byte("a"), 1<<20), 0o600)
	_, err = seal.LoadKeyFile(bad)
	wantCode(t, "1 MiB key file", err, seal.BadKey)
	_, err = seal.LoadKeyFile(dir)
	wantCode(t, "a directory", err, seal.BadKey)
}

// TestKeyFileRace: processes starting at once on an empty data directory
// all end up with the one key that was written.
func TestKeyFileRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets-key")
	const n = 16
	ids := make([]string, n)
	var made int32
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, created, err := seal.EnsureKeyFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if created {
				made++
			}
			mu.Unlock()
			ids[i] = k.ID()
		}()
	}
	wg.Wait()
	if made != 1 {
		t.Errorf("%d callers created the key file, want 1", made)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("keys differ: %v", ids)
		}
	}
}

func TestCodes(t *testing.T) {
	all := seal.All()
	seen := map[seal.Code]bool{}
	for _, c := range all {
		if c == "" || seen[c] {
			t.Errorf("code %q empty or repeated", c)
		}
		seen[c] = true
	}
	if len(all) != 7 {
		t.Errorf("%d codes", len(all))
	}
	if seal.Of(os.ErrNotExist) != "" {
		t.Error("Of(plain error) is not empty")
	}
}

// TestCodesDocumented: docs/server.md's table lists every code.
func TestCodesDocumented(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	md, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "server.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range seal.All() {
		if !bytes.Contains(md, []byte("| `"+string(c)+"` |")) {
			t.Errorf("docs/server.md does not list code %q", c)
		}
	}
}
