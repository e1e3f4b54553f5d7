package cli_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
)

// TestAdminRP: `vigil admin rp` creates a relying party whose token (printed
// once) opens the feed, lists it without the token, refuses a second one
// of the same name (exit 1), and deletes it, after which the token is
// refused.
func TestAdminRP(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	tokFile := filepath.Join(t.TempDir(), "admin-token")
	os.WriteFile(tokFile, []byte(svc.AdminToken+"\n"), 0o600)
	admin := func(args ...string) (int, string, string) {
		return vigil(t, append(append([]string{"admin", "rp"}, args...), "--server", svc.URL, "--admin-token-file", tokFile)...)
	}
	code, out, errs := admin("create", "gate-1", "--scope", "feed")
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "vigil_rp_") || !strings.Contains(errs, "shown once") {
		t.Fatalf("create: exit %d %q %s", code, out, errs)
	}
	feed := func() int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", svc.URL+api.PathFeed, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := feed(); st != 200 {
		t.Fatalf("feed with the new token: %d", st)
	}
	if code, _, errs := admin("create", "gate-1", "--scope", "verify"); code != 1 || !strings.Contains(errs, api.CodeRelyingPartyExists) {
		t.Errorf("create again: exit %d %s", code, errs)
	}
	if code, _, errs := admin("create", "x"); code != 2 || !strings.Contains(errs, "--scope") {
		t.Errorf("create without --scope: exit %d %s", code, errs)
	}
	code, out, _ = admin("list", "-o", "json")
	var l api.RelyingPartyList
	if err := json.Unmarshal([]byte(out), &l); err != nil || code != 0 || len(l.RelyingParties) != 1 || l.RelyingParties[0].Token != "" || strings.Contains(out, tok) {
		t.Fatalf("list: exit %d %v %s", code, err, out)
	}
	if code, out, errs := admin("delete", "gate-1"); code != 0 || strings.TrimSpace(out) != "gate-1: deleted" {
		t.Fatalf("delete: exit %d %q %s", code, out, errs)
	}
	if st := feed(); st != 401 {
		t.Errorf("feed after delete: %d, want 401", st)
	}
	if code, _, errs := admin("delete", "gate-1"); code != 1 || !strings.Contains(errs, api.CodeUnknownRelyingParty) {
		t.Errorf("delete again: exit %d %s", code, errs)
	}
}
