package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// PathReport is the local socket's one resource: the latest Result.
const PathReport = "/v1/report"

// DefaultSocket is where `vigil agent run` documents the socket.
const DefaultSocket = "/run/vigil/agent.sock"

// ServeSocket serves the latest result to local clients over a unix socket
// at path until ctx ends: GET PathReport answers the Result as JSON, or a
// 503 problem before the first one. Relying parties on the host read the
// session report there.
//
// The socket is mode 0600 from the moment it has its name (it is bound in a
// private 0700 directory, then renamed into place), so only the agent's
// user connects. A directory others may write to without the sticky bit is
// refused (someone else could swap the socket); a stale socket left by a
// dead agent is replaced, a live one or any other file at path is not.
func (a *Agent) ServeSocket(ctx context.Context, path string) error {
	ln, err := listenPrivate(path)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.socketHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err = srv.Serve(ln)
	close(done)
	os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("socket %s: %w", path, err)
}

func (a *Agent) socketHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathReport, func(w http.ResponseWriter, _ *http.Request) {
		r := a.Latest()
		if r == nil {
			writeProblem(w, http.StatusServiceUnavailable, api.CodeUnavailable, "no session report yet: the agent has not attested")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathReport {
			writeProblem(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "use GET")
			return
		}
		writeProblem(w, http.StatusNotFound, api.CodeNotFound, "the agent serves "+PathReport)
	})
	return mux
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Problem{
		Type: api.ProblemType + code, Title: http.StatusText(status), Status: status, Detail: detail, Code: code,
	})
}

// listenPrivate binds a unix socket at path with mode 0600 and no window
// in which it has another mode.
func listenPrivate(path string) (*net.UnixListener, error) {
	path = filepath.Clean(path)
	parent := filepath.Dir(path)
	fi, err := os.Stat(parent)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("socket %s: %s is not a directory", path, parent)
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return nil, fmt.Errorf("socket %s: %s is writable by everyone and not sticky", path, parent)
	}
	if li, err := os.Lstat(path); err == nil {
		if li.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another process is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %s: remove the stale socket: %w", path, err)
		}
	}
	tmp, err := os.MkdirTemp(parent, ".vs")
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// The name it was bound to is gone after the rename; ServeSocket
	// removes path itself.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}
