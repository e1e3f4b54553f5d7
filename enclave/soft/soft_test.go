package soft_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/soft"
)

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "agent.key")
	e, err := soft.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if e.Kind() != enclave.Software {
		t.Errorf("kind %s", e.Kind())
	}
	// Reopening gives the same key; signatures verify with it.
	again, err := soft.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !again.ReportPublic().(*ecdsa.PublicKey).Equal(e.ReportPublic()) {
		t.Error("reopened key differs")
	}
	d := sha256.Sum256([]byte("report"))
	sig, err := again.SignReport(context.Background(), d[:])
	if err != nil || !ecdsa.VerifyASN1(e.ReportPublic().(*ecdsa.PublicKey), d[:], sig) {
		t.Errorf("signature does not verify (%v)", err)
	}
	if _, err := e.SignReport(context.Background(), []byte("short")); err == nil {
		t.Error("signed a non-digest")
	}
}

func TestRefusesBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.key")
	if _, err := soft.Open(open); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o644)
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	for path, want := range map[string]string{open: "readable by others", garbage: "not PEM"} {
		if _, err := soft.Open(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", filepath.Base(path), err, want)
		}
	}
}
