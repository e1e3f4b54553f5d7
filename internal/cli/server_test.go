package cli_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/service"
	"github.com/vigil-attest/vigil/store/seal"
)

// TestServerSecretsKey: `vigil server` takes the secrets key from the
// config file, then $VIGIL_SECRETS_KEY, then the flags, and refuses to
// start on a database sealed under another key, naming both keys.
func TestServerSecretsKey(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "vigil.db")
	k1, text1, _ := seal.Generate()
	k2, text2, _ := seal.Generate()
	k3, text3, _ := seal.Generate()
	s, err := service.Open(context.Background(), service.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "first"),
		DB: db, InsecureHTTP: true, SecretsKey: text1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	server := func(args ...string) (int, string) {
		t.Helper()
		code, _, errOut := vigil(t, append([]string{"server", "--data", filepath.Join(dir, "second"), "--db", db,
			"--insecure-http", "--listen", "127.0.0.1:0"}, args...)...)
		return code, errOut
	}
	cfg := filepath.Join(dir, "server.yaml")
	os.WriteFile(cfg, []byte("secrets-key: "+text1+"\n"), 0o600)

	t.Setenv("VIGIL_SECRETS_KEY", text2)
	code, out := server("--config", cfg)
	if code != 2 || !strings.Contains(out, "wrong-key") || !strings.Contains(out, k1.ID()) || !strings.Contains(out, "key "+k2.ID()+" from the configuration") {
		t.Fatalf("the environment's key over the file's: exit %d\n%s", code, out)
	}
	code, out = server("--config", cfg, "--secrets-key", text3)
	if code != 2 || !strings.Contains(out, "key "+k3.ID()+" from the configuration") {
		t.Fatalf("the flag's key over the environment's: exit %d\n%s", code, out)
	}
	if strings.Contains(out, text3) || strings.Contains(out, text2) {
		t.Fatal("the error shows a key")
	}
	os.Unsetenv("VIGIL_SECRETS_KEY")

	open := filepath.Join(dir, "open-key")
	os.WriteFile(open, []byte(text1+"\n"), 0o644)
	code, out = server("--secrets-key-file", open)
	if code != 2 || !strings.Contains(out, "bad-key") || !strings.Contains(out, "chmod 600") {
		t.Fatalf("a key file open to others: exit %d\n%s", code, out)
	}
	code, out = server("--secrets-key-file", filepath.Join(dir, "missing"))
	if code != 2 || !strings.Contains(out, "bad-key") {
		t.Fatalf("a missing key file: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Error("a named key file that did not exist was created")
	}
	code, out = server("--secrets-key-file", open, "--secrets-key", text1)
	if code != 2 || !strings.Contains(out, "not both") {
		t.Fatalf("a key and a key file: exit %d\n%s", code, out)
	}
}
