package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/store"
)

// routes registers every endpoint and builds the wrapped handler.
func (s *Server) routes() {
	m := http.NewServeMux()
	// The agents' endpoints: anyone may call them, so each caller's
	// address has a budget of its own (Options.ClientRate) before any
	// work; an agent's own budget (Options.Rate) is spent only once a
	// request is proven to be the agent's, or (enrollment) names it.
	m.HandleFunc("POST "+api.PathEnroll, s.handle(s.perClient(s.enroll)))
	m.HandleFunc("POST "+api.PathActivate, s.handle(s.perClient(s.activate)))
	m.HandleFunc("POST "+api.PathChallenge, s.handle(s.perClient(s.challenge)))
	m.HandleFunc("POST "+api.PathAttest, s.handle(s.perClient(s.attest)))
	m.HandleFunc("GET "+api.PathAgents, s.admin(s.listAgents))
	m.HandleFunc("GET "+api.PathAgent, s.admin(s.getAgent))
	m.HandleFunc("POST "+api.PathApprove, s.admin(s.approve))
	m.HandleFunc("POST "+api.PathRevoke, s.admin(s.revoke))
	m.HandleFunc("GET "+api.PathEvents, s.admin(s.events))
	m.HandleFunc("POST "+api.PathRelyingParties, s.admin(s.createRelyingParty))
	m.HandleFunc("GET "+api.PathRelyingParties, s.admin(s.listRelyingParties))
	m.HandleFunc("DELETE "+api.PathRelyingParty, s.admin(s.deleteRelyingParty))
	// The relying parties' endpoints: a relying-party token with the
	// endpoint's scope, never the admin token.
	m.HandleFunc("POST "+api.PathVerify, s.handle(s.perClient(s.relyingParty(store.ScopeVerify, s.verify))))
	m.HandleFunc("GET "+api.PathFeed, s.handle(s.relyingParty(store.ScopeFeed, s.feed)))
	m.HandleFunc("GET "+api.PathJWKS, s.handle(s.jwks))
	m.HandleFunc("GET "+api.PathCA, s.handle(s.caPEM))
	m.HandleFunc("GET "+api.PathOpenAPI, s.handle(s.openAPI))
	if !s.o.MetricsSeparate {
		m.Handle("GET "+api.PathMetrics, s.metricsHTTP)
	}
	m.HandleFunc("GET "+api.PathHealthz, s.healthz)
	m.HandleFunc("GET "+api.PathReadyz, s.handle(s.readyz))
	s.mux = m
	s.handler = http.HandlerFunc(s.serve)
}

// handlerFunc is a handler that answers with a value or an error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle turns a handlerFunc into an http.HandlerFunc: an error becomes
// its problem response, logged when it is the service's fault.
func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		p := asProblem(err)
		if rc := r.Context().Err(); rc != nil && p.code == api.CodeInternal {
			p = storeFailure("", rc)
		}
		if p.code == api.CodeNonceInvalid || p.code == api.CodeNonceExpired ||
			p.code == api.CodeNonceWrongAgent || p.code == api.CodeNonceReplayed {
			s.metrics.nonceRejected.WithLabelValues(p.code).Inc()
		}
		if st := api.ProblemStatus[p.code]; st >= 500 {
			s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
				slog.String("code", p.code), slog.String("path", r.URL.Path), slog.Any("err", p))
		}
		if info := infoOf(r.Context()); info != nil {
			info.problem = p.code
		}
		writeProblem(w, r, p.code, p.detail)
	}
}

// requestInfo is what handlers tell the access log.
type requestInfo struct {
	agent   string
	problem string
	// origin says why a request was not taken as its agent's (operator
	// only: the caller got the uniform answer).
	origin string
}

type infoKey struct{}

func infoOf(ctx context.Context) *requestInfo {
	i, _ := ctx.Value(infoKey{}).(*requestInfo)
	return i
}

// setAgent names the request's agent in the access log.
func setAgent(r *http.Request, id string) {
	if i := infoOf(r.Context()); i != nil {
		i.agent = id
	}
}

// serve is the outermost handler: routing with problem answers for
// unknown paths and methods, the request timeout, panic recovery, the
// access log and the request metrics.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	sw := &statusWriter{ResponseWriter: w}
	info := &requestInfo{}
	ctx := context.WithValue(r.Context(), infoKey{}, info)
	route := "unmatched"
	_, pattern := s.mux.Handler(r)
	if pattern != "" {
		route = pattern
	}
	// The event stream lives as long as its client: no deadline.
	if pattern != "GET "+api.PathEvents && pattern != "GET "+api.PathFeed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.o.RequestTimeout)
		defer cancel()
	}
	r = r.WithContext(ctx)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.metrics.panics.Inc()
			s.log.LogAttrs(ctx, slog.LevelError, "handler panic", slog.String("path", r.URL.Path),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			if !sw.wrote {
				info.problem = api.CodeInternal
				writeProblem(sw, r, api.CodeInternal, "internal error")
			} else {
				// The answer has begun: cut the connection rather than
				// send a truncated body as if it were whole.
				defer func() { panic(http.ErrAbortHandler) }()
			}
		}
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		d := time.Since(start)
		cs := strconv.Itoa(code)
		s.metrics.requests.WithLabelValues(route, cs).Inc()
		s.metrics.latency.WithLabelValues(route, cs).Observe(d.Seconds())
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
			slog.Int("status", code), slog.Duration("duration", d), slog.Int64("bytes", sw.bytes),
		}
		if info.agent != "" {
			attrs = append(attrs, slog.String("agent", info.agent))
		}
		if info.problem != "" {
			attrs = append(attrs, slog.String("problem", info.problem))
		}
		if info.origin != "" {
			attrs = append(attrs, slog.String("not_from_agent", info.origin))
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "http", attrs...)
	}()
	if pattern == "" {
		s.unmatched(sw, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// unmatched answers a request no route takes: 404 or 405 as problems,
// and the mux's redirects (cleaned paths) as they are.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	info := infoOf(r.Context())
	switch rec.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		info.problem = api.CodeMethodNotAllowed
		writeProblem(w, r, api.CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed here; allowed: %s", r.Method, rec.header.Get("Allow")))
	case http.StatusNotFound, 0:
		info.problem = api.CodeNotFound
		writeProblem(w, r, api.CodeNotFound, "no such path")
	default:
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		w.Write(rec.body.Bytes())
	}
}

// headerRecorder records what the mux's own 404, 405 and redirect
// handlers write.
type headerRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	if h.body.Len() < 4096 {
		h.body.Write(b)
	}
	return len(b), nil
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets streaming handlers (SSE) flush through the wrapper.
func (w *statusWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// validAgentID checks an agent ID (api.ValidAgentID).
func validAgentID(id string) error {
	if !api.ValidAgentID(id) {
		return fail(api.CodeInvalidAgentID, "an agent ID is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
	}
	return nil
}

// pathAgent returns the validated {id} of the path.
func pathAgent(r *http.Request) (string, error) {
	id := r.PathValue("id")
	setAgent(r, id)
	return id, validAgentID(id)
}

// readBody reads a request body of at most limit bytes whose media type
// is one of types. An empty body is returned as nil when allowEmpty.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, allowEmpty bool, types ...string) ([]byte, error) {
	if allowEmpty && r.ContentLength == 0 {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, fail(api.CodeTooLarge, fmt.Sprintf("the body exceeds %d bytes", limit))
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	ok := false
	for _, t := range types {
		ok = ok || (err == nil && mt == t)
	}
	if !ok {
		return nil, fail(api.CodeUnsupportedMedia, fmt.Sprintf("Content-Type %q; want %v", ct, types))
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, fail(api.CodeTooLarge, fmt.Sprintf("the body exceeds %d bytes", limit))
		}
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return nil, storeFailure("", ctxErr)
		}
		return nil, failWith(api.CodeBadRequest, "reading the body failed", err)
	}
	if allowEmpty && len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

// decodeJSON reads a JSON body strictly into v: one object, no unknown
// fields, no trailing data, at most the server's MaxBody.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) error {
	b, err := readBody(w, r, s.o.MaxBody, allowEmpty, "application/json")
	if err != nil || b == nil {
		return err
	}
	return strictJSON(b, v)
}

// strictJSON decodes exactly one JSON object with only known fields.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(api.CodeBadRequest, "the body is not the expected JSON object: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(api.CodeBadRequest, "trailing data after the JSON object")
	}
	return nil
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return failWith(api.CodeInternal, "internal error", fmt.Errorf("encoding the response: %w", err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

// rateLimit takes a token from the agent's bucket or answers 429.
func (s *Server) rateLimit(w http.ResponseWriter, agentID string) error {
	return s.takeToken(w, s.limiter, agentID, "agent", "too many requests for this agent; retry later")
}

// perClient takes a token from the bucket of the request's client (its
// remote address; IPv6 by /64) before h runs, or answers 429.
func (s *Server) perClient(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.takeToken(w, s.clients, clientKey(r.RemoteAddr), "client", "too many requests from this address; retry later"); err != nil {
			return err
		}
		return h(w, r)
	}
}

func (s *Server) takeToken(w http.ResponseWriter, l *limiter, key, scope, detail string) error {
	ok, wait := l.allow(key, s.now())
	if ok {
		return nil
	}
	s.metrics.rateLimited.WithLabelValues(scope).Inc()
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	return fail(api.CodeRateLimited, detail)
}

// clientKey is the rate-limit key of a remote address: the IP, or for
// IPv6 its /64 (one host's share of addresses).
func clientKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "client:" + host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return "client:" + p.String()
		}
	}
	return "client:" + ip.String()
}
