package testserver_test

import (
	"net/http"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/store"
)

// TestRestart: the service answers at the same URL after Restart, on the
// same database (a new handle), with the same CA.
func TestRestart(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{})
	get := func(path string, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", svc.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := svc.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if err := svc.Store.CreateAgent(t.Context(), &store.Agent{ID: "a-1", Enclave: "software", Status: store.Pending, KeyPEM: "k"}, store.EnrollLimits{}); err != nil {
		t.Fatal(err)
	}
	url, ca, first := svc.URL, svc.CA, svc.Store
	svc.Restart()
	if svc.URL != url || !svc.CA.Equal(ca) || svc.Store == first {
		t.Fatalf("after Restart: URL %s (was %s), same CA %v, new store handle %v", svc.URL, url, svc.CA.Equal(ca), svc.Store != first)
	}
	if st := get(api.PathReadyz, ""); st != 200 {
		t.Fatalf("readyz %d", st)
	}
	if st := get("/v1/agents/a-1", svc.AdminToken); st != 200 {
		t.Fatalf("the agent is gone after the restart: %d", st)
	}
	svc.Stop()
	if _, err := svc.Client.Get(svc.URL + api.PathHealthz); err == nil {
		t.Fatal("the service answers after Stop")
	}
}
