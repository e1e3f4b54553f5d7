package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// Handler serves the event stream (api.PathEvents) as text/event-stream:
// one "id:", "event:" (the type) and "data:" (the JSON event) block per
// event, flushed at once, and a ": heartbeat" comment every
// Options.Heartbeat. A Last-Event-ID header (decimal) first replays the
// retained events after that ID; the query ?agent=ID keeps one agent's
// events. The stream ends when the client goes away, when the client falls
// SubscriberBuffer events behind (it should reconnect with Last-Event-ID),
// or when the bus closes. Authentication is the caller's business.
func (b *Bus) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.serveSSE(w, r, nil) })
}

// FeedHandler is Handler restricted to what a relying party may see
// (FeedEvent): level changes, approvals and revocations. Event IDs are
// the bus's, so Last-Event-ID resumes it as it resumes Handler.
func (b *Bus) FeedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.serveSSE(w, r, FeedEvent) })
}

// FeedEvent reports whether a relying party's feed carries e: a change
// of level (or result status), or an agent approved or revoked. Other
// status changes (activating, pending: enrollment in progress) are the
// operator's business only.
func FeedEvent(e api.Event) bool {
	switch e.Type {
	case api.EventLevel:
		return true
	case api.EventStatus:
		return e.Status == "approved" || e.Status == "revoked"
	}
	return false
}

func (b *Bus) serveSSE(w http.ResponseWriter, r *http.Request, keep func(api.Event) bool) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		api.WriteProblem(w, r, api.CodeMethodNotAllowed, "use GET")
		return
	}
	var lastID int64
	if v, ok := r.Header["Last-Event-Id"]; ok {
		id, valid := int64(0), len(v) == 1
		if valid {
			id, valid = parseDecimal(v[0])
		}
		if !valid {
			api.WriteProblem(w, r, api.CodeBadRequest, "Last-Event-ID must be one decimal event ID")
			return
		}
		lastID = id
	}
	agent := r.URL.Query().Get("agent")
	if r.URL.Query().Has("agent") && !api.ValidAgentID(agent) {
		api.WriteProblem(w, r, api.CodeInvalidAgentID, "agent must match [A-Za-z0-9._-]{1,128}")
		return
	}
	sub, backlog, err := b.subscribe(agent, keep, lastID)
	if err != nil {
		api.WriteProblem(w, r, api.CodeUnavailable, err.Error())
		return
	}
	defer b.unsubscribe(sub)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// write sends one block with a fresh write deadline and flushes it.
	write := func(p []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(b.o.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
		return rc.Flush()
	}
	if write([]byte(": connected\n\n")) != nil {
		return
	}
	for _, e := range backlog {
		if write(frame(e)) != nil {
			return
		}
	}
	tick := time.NewTicker(b.o.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-sub.ch:
			if !ok {
				return // too slow, or the bus closed
			}
			if write(frame(e)) != nil {
				return
			}
		case <-tick.C:
			if write([]byte(": heartbeat\n\n")) != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// frame is e's SSE block. json.Marshal never emits a newline, so data is
// one line.
func frame(e api.Event) []byte {
	data, err := json.Marshal(e)
	if err != nil { // api.Event has only plain fields
		data = []byte("{}")
	}
	return fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, sanitize(e.Type), data)
}

// sanitize keeps a type from breaking the frame.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}
