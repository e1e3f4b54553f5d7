package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/hostfs"
)

// socketClient is an HTTP client over the unix socket at path.
func socketClient(path string) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// getReport GETs /v1/report over the socket.
func getReport(t *testing.T, path string) (int, *agent.Result, *api.Problem) {
	t.Helper()
	resp, err := socketClient(path).Get("http://agent" + agent.PathReport)
	if err != nil {
		t.Fatalf("GET %s: %v", agent.PathReport, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var p api.Problem
		if err := json.Unmarshal(b, &p); err != nil || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%d %s: not a problem (%v)", resp.StatusCode, b, err)
		}
		return resp.StatusCode, nil, &p
	}
	var r agent.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report %s: %v", b, err)
	}
	return resp.StatusCode, &r, nil
}

// idleAgent is an agent with no service behind it (nothing attests).
func idleAgent(t *testing.T) *agent.Agent {
	t.Helper()
	e, err := soft.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewClient("http://127.0.0.1:1", agent.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(context.Background(), agent.Options{
		Client: c, Enclave: e,
		Measure: func(context.Context) ([]byte, hostfs.Source, error) { return nil, nil, io.EOF },
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// serveSocket runs ServeSocket in the background and waits for the
// socket; the returned function stops it and returns its error.
func serveSocket(t *testing.T, a *agent.Agent, path string) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.ServeSocket(ctx, path, agent.SocketOptions{}) }()
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-errc:
			cancel()
			t.Fatalf("ServeSocket: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if i > 500 {
			t.Fatal("socket never came up")
		}
	}
	var stopped bool
	var serr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			serr = <-errc
		}
		return serr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestSocketSafety: the socket is 0600 from the start and answers 503
// before the first report; it refuses unsafe places and live sockets,
// replaces stale ones, and is removed when the agent stops.
func TestSocketSafety(t *testing.T) {
	a := idleAgent(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")
	stop := serveSocket(t, a, path)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want socket 0600", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".vs*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
	code, _, p := getReport(t, path)
	if code != http.StatusServiceUnavailable || p.Code != api.CodeUnavailable || p.Status != 503 {
		t.Errorf("before any report: %d %+v", code, p)
	}
	for _, tc := range []struct{ method, path string }{{"POST", agent.PathReport}, {"GET", "/v1/other"}} {
		req, _ := http.NewRequest(tc.method, "http://agent"+tc.path, nil)
		resp, err := socketClient(path).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 && resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	// A live socket is not taken over.
	if err := a.ServeSocket(context.Background(), path, agent.SocketOptions{}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second server on a live socket: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after stop: %v", err)
	}

	// A stale socket (its server died without removing it) is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	serveSocket(t, a, path)()

	// Unsafe places.
	world := filepath.Join(t.TempDir(), "world")
	os.Mkdir(world, 0o777)
	os.Chmod(world, 0o777)
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("keep me"), 0o600)
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(world, "agent.sock"), "writable by everyone"},
		{regular, "not a socket"},
		{filepath.Join(dir, "missing", "agent.sock"), "no such file"},
		{filepath.Join(regular, "agent.sock"), "not a directory"},
	} {
		if err := a.ServeSocket(context.Background(), tc.path, agent.SocketOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep me" {
		t.Error("a regular file in the way was changed")
	}
	// A world-writable directory with the sticky bit (/tmp) is fine.
	os.Chmod(world, 0o777|fs.ModeSticky)
	serveSocket(t, a, filepath.Join(world, "agent.sock"))()
}
