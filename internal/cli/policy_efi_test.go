package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
)

// TestPolicyImportDBXDeniesPE: an authenticated dbx update that efitools
// made from a signed PE's Authenticode hash, imported, denies that PE
// blocklisted-hash, and the policy exports back to a dbx efitools reads.
func TestPolicyImportDBXDeniesPE(t *testing.T) {
	f := newFixture(t)
	pol := filepath.Join(f.dir, "boot.yaml")
	os.WriteFile(pol, []byte("trust: [root.pem]\n"), 0o644)
	if code, out, errs := vigil(t, "verify", "--policy", pol, f.pe); code != 0 {
		t.Fatalf("before: exit %d\n%s%s", code, out, errs)
	}

	esl := filepath.Join(f.dir, "pe.esl")
	if log := testcmd.Run(t, "hash-to-efi-sig-list", f.pe, esl); strings.Contains(log, "Failed") {
		t.Fatalf("hash-to-efi-sig-list: %s", log)
	}
	kek := testpki.NewRoot(testpki.Options{CommonName: "Test KEK"})
	crt, key := kek.WriteFiles(t, f.dir, "kek")
	auth := filepath.Join(f.dir, "dbxupdate.auth")
	testcmd.Run(t, "sign-efi-sig-list", "-t", "2025-01-02 03:04:05", "-c", crt, "-k", key, "dbx", esl, auth)

	code, out, errs := vigil(t, "policy", "import", "--from", "dbx", "--policy", pol, "-o", "json", auth)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	var st struct {
		Source   string
		Read     int
		Added    map[string]int
		Skipped  int
		Warnings []string
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Source != "dbx" || st.Read != 1 || st.Skipped != 0 ||
		len(st.Added) != 1 || st.Added["deny.authentihash_sha256"] != 1 || len(st.Warnings) != 1 {
		t.Fatalf("stats %v %+v\n%s", err, st, out)
	}

	// With the KEK the signature is verified; another KEK refuses it.
	polKEK := filepath.Join(f.dir, "kek.yaml")
	if code, out, errs := vigil(t, "policy", "import", "--from", "dbx", "--kek", crt, "--policy", polKEK, "-o", "json", auth); code != 0 ||
		!strings.Contains(out, `"verified": true`) || strings.Contains(out, "not verified") {
		t.Fatalf("import --kek: exit %d\n%s%s", code, out, errs)
	}
	otherKEK := testpki.NewRoot(testpki.Options{CommonName: "Other KEK"})
	otherCrt, _ := otherKEK.WriteFiles(t, f.dir, "other-kek")
	if code, out, errs := vigil(t, "policy", "import", "--from", "dbx", "--kek", otherCrt, "--policy", polKEK+".2", auth); code != 2 ||
		!strings.Contains(errs, "does not chain to a KEK") {
		t.Fatalf("import --kek (another KEK): exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(polKEK + ".2"); err == nil {
		t.Fatal("a policy was written from an update whose signature failed")
	}

	code, out, _ = vigil(t, "verify", "--policy", pol, "-o", "json", f.pe)
	var v struct {
		Allowed      bool
		Reasons      []string
		DenyRules    []string `json:"deny_rules"`
		Authentihash struct{ SHA256 string }
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != 1 || v.Allowed || len(v.Reasons) != 1 || v.Reasons[0] != "blocklisted-hash" ||
		len(v.DenyRules) != 1 || v.DenyRules[0] != "deny.authentihash_sha256:"+v.Authentihash.SHA256 {
		t.Fatalf("after import: exit %d %+v\n%s", code, v, out)
	}

	// Export: the dbx efitools reads, and the other targets.
	dbx := filepath.Join(f.dir, "out.esl")
	if code, out, errs := vigil(t, "policy", "export", "--policy", pol, "--to", "dbx", dbx); code != 0 || !strings.Contains(out, "wrote sha256") {
		t.Fatalf("export: exit %d\n%s%s", code, out, errs)
	}
	if log := testcmd.Run(t, "sig-list-to-certs", dbx, filepath.Join(f.dir, "x")); !strings.Contains(strings.ToLower(log), "sha256") {
		t.Logf("sig-list-to-certs: %s", log)
	}
	pol2 := filepath.Join(f.dir, "again.yaml")
	if code, out, _ := vigil(t, "policy", "import", "--from", "dbx", "--policy", pol2, "-o", "json", dbx); code != 0 || !strings.Contains(out, `"deny.authentihash_sha256": 1`) {
		t.Fatalf("re-import: %d %s", code, out)
	}
	code, out, _ = vigil(t, "policy", "export", "--policy", pol, "--to", "modprobe", "-")
	if code != 0 || !strings.HasPrefix(out, "# modprobe.d block list") {
		t.Fatalf("modprobe: %d %s", code, out)
	}
	// Nothing to write: exit 2, no file.
	bl := filepath.Join(f.dir, "blacklist")
	if code, _, _ := vigil(t, "policy", "export", "--policy", pol, "--to", "blacklist-hashes", bl); code != 2 {
		t.Fatalf("empty blacklist: exit %d", code)
	}
	if _, err := os.Stat(bl); err == nil {
		t.Fatal("an empty blacklist file was written")
	}
	for _, args := range [][]string{
		{"policy", "export", "--policy", pol, "--to", "ipe", "-"},
		{"policy", "export", "--to", "dbx", "-"},
		{"policy", "export", "--policy", pol, "--to", "dbx", "--owner", "nope", "-"},
		{"policy", "import", "--from", "dbx", "--policy", pol, pol},
	} {
		if code, _, _ := vigil(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
