package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyExportIPE: --to ipe writes a deny-by-default IPE policy of the
// policy's verity entries, and refuses (exit 2, nothing written) a policy
// with none rather than write a permissive one.
func TestPolicyExportIPE(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "fleet.yaml")
	dm := "sha256:" + strings.Repeat("ab", 32)
	os.WriteFile(pol, []byte("name: fleet\nversion: \"2\"\nverity:\n  dm_roothash: [\""+dm+"\"]\n"), 0o644)
	out := filepath.Join(dir, "fleet.ipe")
	if code, stdout, errs := vigil(t, "policy", "export", "--policy", pol, "--to", "ipe", out); code != 0 || !strings.Contains(stdout, "wrote dmverity_roothash") {
		t.Fatalf("exit %d\n%s%s", code, stdout, errs)
	}
	b, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(b), "policy_name=fleet policy_version=2.0.0\n") || !strings.Contains(string(b), "\nDEFAULT action=DENY\n") ||
		!strings.Contains(string(b), "op=KMODULE dmverity_roothash="+dm+" action=ALLOW\n") {
		t.Fatalf("%s", b)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, []byte("trust: []\n"), 0o644)
	out2 := filepath.Join(dir, "empty.ipe")
	if code, _, errs := vigil(t, "policy", "export", "--policy", empty, "--to", "ipe", out2); code != 2 || !strings.Contains(errs, "nothing this format can express") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("an IPE policy was written from a policy with nothing IPE can admit")
	}
}
