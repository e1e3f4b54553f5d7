package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/store/storetest"
)

// TestSoftwareFlow: a software agent enrolls, is approved by the "auto"
// mode, attests, and gets a level-1 session report that verifies against
// the service CA, with the result stored — on both back ends.
func TestSoftwareFlow(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		svc := testserver.Start(t, testserver.Options{DB: db})
		a := newSoftAgent(t, "soft-01")
		var er api.EnrollResponse
		r := do(t, svc.URL, "POST", api.PathEnroll, a.softEnroll(t))
		if r.status != http.StatusCreated {
			t.Fatalf("enroll: %d %s", r.status, r.body)
		}
		r.decode(t, &er)
		if er.Status != "approved" || er.AgentID != "soft-01" || er.CredentialBlob != nil {
			t.Fatalf("enroll: %+v", er)
		}
		res := a.round(t, svc.URL)
		if res.Level != appraise.LevelSoftware || res.Status != "warning" || res.ResultID == 0 || res.AgentID != "soft-01" {
			t.Fatalf("attest: %+v", res)
		}
		v, err := ear.Verify(res.Token, svc.CAPool, time.Now())
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		if v.Claims.AgentID != "soft-01" || v.Claims.Level != 1 || v.Claims.Status != "warning" || v.Claims.ReportKey == nil ||
			v.Claims.PolicyDigest == "" || v.Claims.PolicyID == "" {
			t.Fatalf("claims %+v", v.Claims)
		}
		stored, err := svc.Store.Results(t.Context(), "soft-01", 10)
		if err != nil || len(stored) != 1 || stored[0].ID != res.ResultID || stored[0].Token != res.Token {
			t.Fatalf("stored results %+v %v", stored, err)
		}
		ag, err := svc.Store.GetAgent(t.Context(), "soft-01")
		if err != nil || ag.Last == nil || ag.Last.Level != 1 || ag.Status != store.Approved {
			t.Fatalf("agent %+v %v", ag, err)
		}
		// The admin view shows it.
		var d api.AgentDetail
		admin(t, svc, "GET", agentPath(api.PathAgent, "soft-01"), nil).decode(t, &d)
		if d.Level != 1 || d.ResultStatus != "warning" || d.AttestedAt == nil || len(d.Results) != 1 || d.Results[0].ID != res.ResultID {
			t.Fatalf("admin view %+v", d)
		}
		// A second round works (the state carried over).
		if res2 := a.round(t, svc.URL); res2.Level != 1 || res2.ResultID <= res.ResultID {
			t.Fatalf("second round %+v", res2)
		}
	})
}
