package service_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/events"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/service"
	"github.com/vigil-attest/vigil/store/storetest"
)

// TestServiceFromConfig assembles the service as `vigil server` does, on
// each database, with the development TLS CA and a webhook, and runs a
// software agent against it: the agent attests over TLS, the session
// report verifies offline against the service CA, the webhook receives
// the agent's level change signed with its secret, and a restart on the
// same data directory keeps the CA, the TLS CA and the admin token.
func TestServiceFromConfig(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		ctx := context.Background()
		secret := []byte("0123456789abcdef-webhook")
		var mu sync.Mutex
		var got []api.Event
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if err := events.VerifySignature(secret, r.Header, body, time.Now(), 0); err != nil {
				t.Errorf("webhook signature: %v", err)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			var e api.Event
			json.Unmarshal(body, &e)
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		}))
		defer hook.Close()

		data := t.TempDir()
		cfg := service.Config{
			Listen: "127.0.0.1:0", DataDir: data, DB: db.DSN, Software: "auto",
			Webhooks: []events.Webhook{{URL: hook.URL, Secret: secret}},
			Logger:   slog.New(slog.DiscardHandler),
		}
		s, err := service.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Serve(sctx) }()
		if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || s.TLSCAFile == "" {
			t.Fatalf("URL %s, TLS CA %q", s.URL(), s.TLSCAFile)
		}
		tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
		if err != nil || strings.TrimSpace(string(tok)) != s.AdminToken {
			t.Fatalf("admin token file: %v", err)
		}

		client, err := agent.NewClient(s.URL(), agent.ClientOptions{CAFile: s.TLSCAFile})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		e, _ := soft.New()
		host := testhost.Base()
		dir := host.WriteDir(t)
		a, err := agent.New(ctx, agent.Options{Client: client, Enclave: e, AgentID: "svc-01",
			Measure: agent.MeasureWith(measure.New(measure.Options{}), host.Source(dir))})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := a.Enroll(ctx); err != nil || st != agent.StatusApproved {
			t.Fatalf("enroll: %s %v", st, err)
		}
		res, err := a.AttestOnce(ctx)
		if err != nil || res.Level != 1 {
			t.Fatalf("attest: %+v %v", res, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(s.Issuer.CAPEM()) {
			t.Fatal("the service CA PEM does not parse")
		}
		v, err := ear.Verify(res.Token, roots, time.Now())
		if err != nil || v.Claims.AgentID != "svc-01" || v.Claims.Level != 1 {
			t.Fatalf("session report: %v", err)
		}
		// The approval's status event may come first: wait for the level.
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			level := len(got) > 0 && got[len(got)-1].Type == api.EventLevel
			mu.Unlock()
			if level || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		if len(got) == 0 || got[len(got)-1].AgentID != "svc-01" || got[len(got)-1].Type != api.EventLevel || got[len(got)-1].Level != 1 {
			t.Errorf("webhook events %+v", got)
		}
		mu.Unlock()

		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve: %v", err)
		}
		ca1, tls1 := s.Issuer.CA().Raw, readFile(t, s.TLSCAFile)
		s.Close()

		cfg.DBSyncFull = db.Name == "sqlite" // reopening with power-loss durability keeps everything
		s2, err := service.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if string(s2.Issuer.CA().Raw) != string(ca1) || string(readFile(t, s2.TLSCAFile)) != string(tls1) || s2.AdminToken != s.AdminToken {
			t.Error("a restart on the same data directory changed the CA, the TLS CA or the admin token")
		}
		if a2, err := s2.Store.GetAgent(ctx, "svc-01"); err != nil || a2.Last == nil || a2.Last.Level != 1 {
			t.Errorf("after the restart the agent's result is gone: %+v %v", a2, err)
		}
	})
}

func readFile(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
