package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// PathReport is the local socket's report resource: the latest Result.
const PathReport = "/v1/report"

// maxProofRequest bounds a POST PathProof body.
const maxProofRequest = 8 << 10

// SocketOptions configure the local socket.
type SocketOptions struct {
	// Group, when set, is the group (a name, or a numeric ID) that owns
	// the socket, and the mode is 0660: the service accounts in it may
	// read reports and ask for proofs. Empty: the agent's user alone
	// (0600).
	Group string
}

// DefaultSocket is where `vigil agent run` documents the socket.
const DefaultSocket = "/run/vigil/agent.sock"

// ServeSocket serves local clients over a unix socket at path until ctx
// ends: GET PathReport answers the latest Result as JSON, or a 503
// problem before the first one; POST PathProof answers a ProofRequest
// with a ProofAnswer (Prove). Clients on the host read the session report
// and get proofs of possession there.
//
// The socket is mode 0600 (0660 and owned by o.Group when set) from the
// moment it has its name (it is bound in a private 0700 directory, then
// renamed into place), so only the agent's user (and the group) connect. A directory others may write to without the sticky bit is
// refused (someone else could swap the socket); a stale socket left by a
// dead agent is replaced, a live one or any other file at path is not.
func (a *Agent) ServeSocket(ctx context.Context, path string, o SocketOptions) error {
	gid := -1
	if o.Group != "" {
		g, err := lookupGroup(o.Group)
		if err != nil {
			return fmt.Errorf("socket %s: group %q: %w", path, o.Group, err)
		}
		gid = g
	}
	ln, err := listenPrivate(path, gid)
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
	mux.HandleFunc("POST "+PathProof, a.serveProof)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathReport:
			writeProblem(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "use GET")
			return
		case PathProof:
			writeProblem(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "use POST")
			return
		}
		writeProblem(w, http.StatusNotFound, api.CodeNotFound, "the agent serves "+PathReport+" and "+PathProof)
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

// serveProof: POST PathProof, a ProofRequest as JSON (no unknown
// members), answered with a ProofAnswer.
func (a *Agent) serveProof(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeProblem(w, http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "send application/json")
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxProofRequest))
	dec.DisallowUnknownFields()
	var req ProofRequest
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeProblem(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("the body is not one proof request (aud, nonce, htm, htu): %v", err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), proofTimeout)
	defer cancel()
	ans, err := a.Prove(ctx, req)
	switch {
	case errors.Is(err, ErrProofRequest):
		writeProblem(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
	case errors.Is(err, ErrAudienceLimit):
		writeProblem(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
	case errors.Is(err, ErrNoReport):
		writeProblem(w, http.StatusServiceUnavailable, api.CodeUnavailable, err.Error())
	case err != nil:
		a.log.Warn("proof of possession failed", "err", err)
		writeProblem(w, http.StatusInternalServerError, api.CodeInternal, "the enclave could not sign the proof")
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(ans)
	}
}

// proofTimeout bounds a proof request, an attestation round included.
const proofTimeout = 2 * time.Minute

// lookupGroup resolves a group name or numeric ID.
func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil && id >= 0 {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(grp.Gid)
}

// listenPrivate binds a unix socket at path with mode 0600 (0660 and
// group gid when gid ≥ 0) and no window in which it has another mode or
// owner.
func listenPrivate(path string, gid int) (*net.UnixListener, error) {
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
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Chown(bound, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket %s: group %d: %w", path, gid, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(bound, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}
