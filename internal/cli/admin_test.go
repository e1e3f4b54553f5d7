package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/server"
)

// TestAdmin drives an agent's life through `vigil admin` against a real
// service: pending after enrollment, approved by the operator, attested,
// then revoked and refused at once.
func TestAdmin(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Software: server.SoftwarePending})
	work := t.TempDir()
	tokFile := filepath.Join(work, "admin-token")
	os.WriteFile(tokFile, []byte(svc.AdminToken+"\n"), 0o600)
	admin := func(args ...string) (int, string, string) {
		return vigil(t, append(append([]string{"admin"}, args...), "--server", svc.URL, "--admin-token-file", tokFile)...)
	}
	agentArgs := []string{"--server", svc.URL, "--soft", filepath.Join(work, "agent.key"), "--root", testhost.Base().WriteDir(t), "--no-verify", "--agent-id", "db-07"}
	if code, _, errs := runOnce(t, agentArgs...); code != 1 {
		t.Fatalf("enrolling: exit %d, want 1 (pending) %s", code, errs)
	}

	code, out, errs := admin("agents", "--status", "pending")
	if code != 0 || !strings.Contains(out, "db-07") || !strings.Contains(out, "pending") {
		t.Fatalf("agents --status pending: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := admin("agents", "--status", "approved"); code != 0 || strings.Contains(out, "db-07") {
		t.Errorf("agents --status approved lists a pending agent:\n%s", out)
	}
	if code, out, errs := admin("approve", "db-07", "--reason", "ticket 42"); code != 0 || strings.TrimSpace(out) != "db-07: approved" {
		t.Fatalf("approve: exit %d %q %s", code, out, errs)
	}
	if code, r, errs := runOnce(t, agentArgs...); code != 0 || r.Level != 1 {
		t.Fatalf("after approval: exit %d %+v %s", code, r, errs)
	}
	code, out, errs = admin("agents", "-o", "json")
	var list api.AgentList
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list.Agents) != 1 {
		t.Fatalf("agents -o json: exit %d %v\n%s%s", code, err, out, errs)
	}
	if a := list.Agents[0]; a.ID != "db-07" || a.Status != "approved" || a.Level != 1 || a.ResultStatus != "warning" || a.AttestedAt == nil {
		t.Errorf("listed %+v", a)
	}
	code, out, _ = admin("agent", "db-07")
	for _, w := range []string{"status    approved (approved by operator: ticket 42)", "level     1 software-rooted", "(software-enclave)"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("agent db-07 lacks %q:\n%s", w, out)
		}
	}

	if code, out, errs := admin("revoke", "db-07", "--reason", "stolen laptop"); code != 0 || strings.TrimSpace(out) != "db-07: revoked" {
		t.Fatalf("revoke: exit %d %q %s", code, out, errs)
	}
	code, r, _ := runOnce(t, agentArgs...)
	if code != 1 || r.Code != api.CodeAgentRevoked {
		t.Errorf("a revoked agent attests: exit %d %+v", code, r)
	}
	// Errors: an unknown agent is exit 1, a wrong token exit 2.
	if code, _, errs := admin("agent", "nobody"); code != 1 || !strings.Contains(errs, api.CodeUnknownAgent) {
		t.Errorf("unknown agent: exit %d %s", code, errs)
	}
	os.WriteFile(tokFile, []byte("0123456789abcdef-wrong"), 0o600)
	if code, _, errs := admin("agents"); code != 2 || !strings.Contains(errs, api.CodeUnauthorized) {
		t.Errorf("wrong token: exit %d %s", code, errs)
	}
}
