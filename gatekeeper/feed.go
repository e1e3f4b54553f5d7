package gatekeeper

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of FeedOptions.
const (
	DefaultFeedGrace   = 30 * time.Second
	DefaultFeedBackoff = 15 * time.Second
	// maxSSELine bounds one line of the stream, and maxFeedAgents the
	// hosts remembered.
	maxSSELine    = 64 << 10
	maxFeedAgents = 1 << 20
)

// FeedOptions configure a Feed.
type FeedOptions struct {
	// URL is the service's feed (…/v1/feed) and Token a relying party's
	// token with the scope feed (vigil admin rp create NAME --scope feed).
	URL   string
	Token string
	// Client connects (http.DefaultTransport without a timeout when nil:
	// the stream lasts).
	Client *http.Client
	// Grace is how long the feed may be disconnected before Healthy
	// fails (DefaultFeedGrace), and Backoff the longest wait between two
	// connection attempts (DefaultFeedBackoff).
	Grace   time.Duration
	Backoff time.Duration
	// Logger logs connections and losses (discard when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Standing is what the feed says of one host since the gate subscribed.
type Standing struct {
	// Level is the host's latest level (-1: no level event yet).
	Level int
	// Revoked: the host was revoked (final).
	Revoked bool
	// Updated is the time of the latest event.
	Updated time.Time
}

// Feed follows the service's relying-party feed (SSE, GET /v1/feed): level
// changes, approvals and revocations, resumed with Last-Event-ID after a
// loss. The gatekeeper asks it for each request's host, and refuses a host
// revoked or fallen below a route's level at once, before its report
// expires.
type Feed struct {
	o   FeedOptions
	log *slog.Logger

	mu        sync.Mutex
	agents    map[string]Standing
	lastID    int64
	connected bool
	// lost is when the feed was last connected (zero: never).
	lost  time.Time
	ready chan struct{}
	once  sync.Once
}

// NewFeed makes a Feed; Run connects it.
func NewFeed(o FeedOptions) (*Feed, error) {
	if o.URL == "" || o.Token == "" {
		return nil, errors.New("gatekeeper: the feed needs a URL and a relying party's token")
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Grace <= 0 {
		o.Grace = DefaultFeedGrace
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultFeedBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Feed{o: o, log: o.Logger, agents: map[string]Standing{}, ready: make(chan struct{})}, nil
}

// Ready is closed once the feed first connected.
func (f *Feed) Ready() <-chan struct{} { return f.ready }

// Standing returns what the feed says of agent (false: nothing yet).
func (f *Feed) Standing(agent string) (Standing, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.agents[agent]
	return s, ok
}

// Healthy is nil while the feed is connected, or lost for less than
// Grace; otherwise, and before it first connected, FeedUnavailable:
// revocations might be missed.
func (f *Feed) Healthy(now time.Time) *Refusal {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connected {
		return nil
	}
	if f.lost.IsZero() {
		return refuse(FeedUnavailable, "the revocation feed has not connected yet")
	}
	if now.Sub(f.lost) > f.o.Grace {
		return refuse(FeedUnavailable, "the revocation feed has been lost for more than "+f.o.Grace.String())
	}
	return nil
}

// Run follows the feed until ctx ends, reconnecting with backoff.
func (f *Feed) Run(ctx context.Context) {
	wait := time.Second / 4
	for ctx.Err() == nil {
		err := f.follow(ctx)
		f.mu.Lock()
		if f.connected {
			f.connected, f.lost = false, f.o.Now()
			wait = time.Second / 4
		}
		f.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("gatekeeper: the feed is lost; reconnecting", "url", f.o.URL, "err", err, "in", wait)
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, f.o.Backoff)
	}
}

// follow connects once and reads events until the stream ends.
func (f *Feed) follow(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.o.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+f.o.Token)
	req.Header.Set("Accept", "text/event-stream")
	f.mu.Lock()
	if f.lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(f.lastID, 10))
	}
	f.mu.Unlock()
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	f.mu.Lock()
	f.connected = true
	f.mu.Unlock()
	f.once.Do(func() { close(f.ready) })
	f.log.Info("gatekeeper: following the feed", "url", f.o.URL)
	return ParseSSE(resp.Body, func(id, _ string, data []byte) error {
		f.apply(id, data)
		return nil
	})
}

// feedEvent is the part of the service's event (api.Event) the feed reads.
type feedEvent struct {
	ID      int64     `json:"id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	AgentID string    `json:"agent_id"`
	Level   int       `json:"level"`
	Status  string    `json:"status"`
}

// apply records one event; what it cannot read it skips (logged).
func (f *Feed) apply(id string, data []byte) {
	var e feedEvent
	if err := json.Unmarshal(data, &e); err != nil || e.AgentID == "" || len(e.AgentID) > 128 {
		f.log.Warn("gatekeeper: an unreadable feed event", "id", id, "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		f.lastID = n
	}
	s, ok := f.agents[e.AgentID]
	if !ok {
		if len(f.agents) >= maxFeedAgents {
			f.log.Warn("gatekeeper: the feed remembers too many hosts; skipping", "agent", e.AgentID)
			return
		}
		s.Level = -1
	}
	switch {
	case e.Type == "agent.level":
		s.Level = e.Level
	case e.Type == "agent.status" && e.Status == "revoked":
		s.Revoked = true
	case e.Type == "agent.status":
	default:
		return
	}
	s.Updated = e.Time
	f.agents[e.AgentID] = s
	f.log.Info("gatekeeper: feed event", "agent", e.AgentID, "type", e.Type, "level", e.Level, "status", e.Status)
}

// ParseSSE reads a text/event-stream (the WHATWG format: "field: value"
// lines, a blank line ends an event, ':' starts a comment) and calls fn
// with each event's id, type and data (data lines joined by '\n'). It
// returns fn's first error, or the reader's (nil at EOF). A line longer
// than 64 KiB is an error: memory stays bounded.
func ParseSSE(r io.Reader, fn func(id, event string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxSSELine)
	var (
		id, event string
		data      []byte
		has       bool
	)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if has {
				if err := fn(id, event, data); err != nil {
					return err
				}
			}
			event, data, has = "", nil, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if !strings.ContainsRune(value, 0) {
				id = value
			}
		case "event":
			event = value
		case "data":
			if has {
				data = append(data, '\n')
			}
			data = append(data, value...)
			has = true
		}
	}
	return sc.Err()
}
