package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/cli"
	"github.com/vigil-attest/vigil/internal/testserver"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGateCommand: `vigil gate` and `vigil admin rp` have --help; the
// gate's config file takes flag names and routes, and refuses unknown
// keys (also inside a route); a config without routes or audience is a
// usage error; and the gate runs from file, environment and flags (the
// upstream from VIGIL_UPSTREAM, the listener from the flag over the
// file's), refusing a request without a session report with its code.
func TestGateCommand(t *testing.T) {
	for _, c := range [][]string{{"gate"}, {"admin", "rp"}, {"admin", "rp", "create"}, {"admin", "rp", "list"}, {"admin", "rp", "delete"}} {
		if code, out, _ := vigil(t, append(c, "--help")...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("vigil %v --help: exit %d\n%s", c, code, out)
		}
	}
	svc := testserver.Start(t, testserver.Options{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	resp, err := http.Get(svc.URL + "/.well-known/vigil-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	var pemBuf bytes.Buffer
	pemBuf.ReadFrom(resp.Body)
	resp.Body.Close()
	os.WriteFile(ca, pemBuf.Bytes(), 0o644)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	base := "audience: app.test\nca: " + ca + "\nlisten: 127.0.0.1:1\n"
	for name, tc := range map[string]struct{ conf, want string }{
		"unknown key":          {base + "routes: [{path: /}]\nupstreams: http://x\n", "field upstreams not found"},
		"unknown route key":    {base + "routes: [{path: /, min_level: 2}]\n", "field min_level not found"},
		"no routes":            {base, "no routes"},
		"no audience":          {"ca: " + ca + "\nlisten: 127.0.0.1:1\nroutes: [{path: /}]\n", "audience is required"},
		"bad trust-vector":     {base + "routes: [{path: /, trust-vector: {hardware: great}}]\n", `tier "great"`},
		"level out of range":   {base + "routes: [{path: /, min-level: 7}]\n", "min-level 7"},
		"listen sans upstream": {base + "routes: [{path: /}]\n", "listen needs an upstream"},
	} {
		code, _, errs := vigil(t, "gate", "--config", write(strings.ReplaceAll(name, " ", "-")+".yaml", tc.conf))
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, want 2 and %q:\n%s", name, code, tc.want, errs)
		}
	}
	if code, _, errs := vigil(t, "gate", "--listen", "127.0.0.1:1"); code != 2 || !strings.Contains(errs, "routes live in --config") {
		t.Errorf("no config: exit %d %s", code, errs)
	}

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "upstream") }))
	defer up.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := write("gate.yaml", base+"routes:\n  - path: /\n    min-level: 1\n    max-age: 5m\n")
	t.Setenv("VIGIL_UPSTREAM", up.URL)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.RunContext(ctx, []string{"gate", "--config", conf, "--listen", addr, "--log-level", "info"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("vigil gate ended with exit %d: %s", code, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("vigil gate did not stop")
		}
	}()
	var got *http.Response
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err = http.Get("http://" + addr + "/x"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("vigil gate does not serve: %v\n%s", err, stderr.String())
	}
	defer got.Body.Close()
	var p struct{ Code string }
	json.NewDecoder(got.Body).Decode(&p)
	if got.StatusCode != 401 || p.Code != "token-missing" || !strings.Contains(stderr.String(), "proxy on "+addr+" to "+up.URL) {
		t.Errorf("through vigil gate: %d %q\n%s", got.StatusCode, p.Code, stderr.String())
	}
}
