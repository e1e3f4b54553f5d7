package events

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// newStream serves b's Handler on loopback. The bus closes before the
// server so open streams end.
func newStream(t *testing.T, b *Bus) string {
	t.Helper()
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() { _ = b.Close(); srv.Close() })
	return srv.URL
}

type sseClient struct {
	resp *http.Response
	r    *bufio.Reader
}

// sseFrame is one block of the stream: an event, or a comment.
type sseFrame struct {
	id      int64
	typ     string
	event   api.Event
	comment string
}

// dial opens the stream and waits for the ": connected" comment, so the
// subscription exists when it returns. header is added to the request.
func dial(t *testing.T, url string, header http.Header) *sseClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	maps := req.Header
	for k, v := range header {
		maps[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %q", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, r: bufio.NewReader(resp.Body)}
	if f, err := c.frame(); err != nil || f.comment != "connected" {
		t.Fatalf("first frame %+v, %v; want the connected comment", f, err)
	}
	return c
}

// frame reads one complete block.
func (c *sseClient) frame() (sseFrame, error) {
	var f sseFrame
	for n := 0; ; n++ {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return f, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && n > 0:
			return f, nil
		case strings.HasPrefix(line, ": "):
			f.comment = line[2:]
		case strings.HasPrefix(line, "id: "):
			f.id, err = strconv.ParseInt(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			f.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			err = json.Unmarshal([]byte(line[6:]), &f.event)
		default:
			err = fmt.Errorf("unexpected line %q", line)
		}
		if err != nil {
			return f, err
		}
	}
}

// event reads the next event, skipping comments.
func (c *sseClient) event(t *testing.T) api.Event {
	t.Helper()
	for {
		f, err := c.frame()
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		if f.comment != "" {
			continue
		}
		if f.id != f.event.ID || f.typ != f.event.Type {
			t.Fatalf("frame id %d event %q disagree with data %+v", f.id, f.typ, f.event)
		}
		return f.event
	}
}

// ids reads n events and returns their IDs.
func (c *sseClient) ids(t *testing.T, n int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		ids = append(ids, c.event(t).ID)
	}
	return ids
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func lastID(v string) http.Header { return http.Header{"Last-Event-Id": {v}} }

func TestSSEStreamsInOrder(t *testing.T) {
	b := newBus(t, Options{})
	url := newStream(t, b)
	c1, c2 := dial(t, url, nil), dial(t, url, nil)
	want := make([]api.Event, 0, 30)
	for i := range 30 {
		e := levelEvent(fmt.Sprintf("host-%d", i%3), i)
		if i%5 == 0 {
			e.Type, e.Status, e.PreviousStatus = api.EventStatus, "revoked", "approved"
		}
		e.Time = time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC)
		b.Publish(e)
		e.ID = int64(i + 1)
		want = append(want, e)
	}
	for _, c := range []*sseClient{c1, c2} {
		for _, w := range want {
			if got := c.event(t); got != w {
				t.Fatalf("got %+v\nwant %+v", got, w)
			}
		}
	}
	if st := b.Stats(); st.Subscribers != 2 || st.Published != 30 {
		t.Errorf("stats %+v", st)
	}
}

func TestSSEResume(t *testing.T) {
	b := newBus(t, Options{RingSize: 8})
	url := newStream(t, b)
	for i := range 5 {
		b.Publish(levelEvent("h", i))
	}
	// From 3: the retained 4 and 5, then live events.
	c := dial(t, url, lastID("3"))
	b.Publish(levelEvent("h", 5))
	if got := c.ids(t, 3); fmt.Sprint(got) != fmt.Sprint(seq(4, 6)) {
		t.Errorf("resume from 3: %v, want 4..6", got)
	}
	// Past the ring: only what it still holds (ring of 8).
	for i := range 10 {
		b.Publish(levelEvent("h", i))
	}
	c = dial(t, url, lastID("2"))
	b.Publish(levelEvent("h", 0))
	if got := c.ids(t, 9); fmt.Sprint(got) != fmt.Sprint(seq(9, 17)) {
		t.Errorf("resume from 2 with ring 8: %v, want 9..17", got)
	}
	// Up to date: nothing replayed.
	c = dial(t, url, lastID("17"))
	b.Publish(levelEvent("h", 0))
	if got := c.event(t).ID; got != 18 {
		t.Errorf("resume from the newest: first event %d, want 18", got)
	}
}

func TestSSEBadRequests(t *testing.T) {
	b := newBus(t, Options{})
	url := newStream(t, b)
	tests := []struct {
		name   string
		method string
		query  string
		header http.Header
		status int
		code   string
	}{
		{"letters", "GET", "", lastID("abc"), 400, api.CodeBadRequest},
		{"negative", "GET", "", lastID("-1"), 400, api.CodeBadRequest},
		{"plus", "GET", "", lastID("+1"), 400, api.CodeBadRequest},
		{"inner space", "GET", "", lastID("1 2"), 400, api.CodeBadRequest},
		{"empty", "GET", "", lastID(""), 400, api.CodeBadRequest},
		{"list", "GET", "", lastID("1,2"), 400, api.CodeBadRequest},
		{"too long", "GET", "", lastID(strings.Repeat("9", 19)), 400, api.CodeBadRequest},
		{"twice", "GET", "", http.Header{"Last-Event-Id": {"1", "2"}}, 400, api.CodeBadRequest},
		{"bad agent", "GET", "?agent=a/b", nil, 400, api.CodeInvalidAgentID},
		{"empty agent", "GET", "?agent=", nil, 400, api.CodeInvalidAgentID},
		{"long agent", "GET", "?agent=" + strings.Repeat("a", api.MaxAgentID+1), nil, 400, api.CodeInvalidAgentID},
		{"post", "POST", "", nil, 405, api.CodeMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url+tc.query, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p api.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatalf("problem body: %v", err)
			}
			if resp.StatusCode != tc.status || p.Code != tc.code || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %+v, want %d %s", resp.Status, p, tc.status, tc.code)
			}
		})
	}
}

func TestSSEAgentFilter(t *testing.T) {
	b := newBus(t, Options{})
	url := newStream(t, b)
	b.Publish(levelEvent("a", 1)) // 1
	b.Publish(levelEvent("b", 1)) // 2
	c := dial(t, url+"?agent=a", lastID("0"))
	b.Publish(levelEvent("b", 2)) // 3
	b.Publish(levelEvent("a", 2)) // 4
	b.Publish(levelEvent("a.b", 2))
	b.Publish(levelEvent("a", 3)) // 6
	var got []string
	for range 3 {
		e := c.event(t)
		got = append(got, fmt.Sprintf("%d:%s", e.ID, e.AgentID))
	}
	if fmt.Sprint(got) != "[1:a 4:a 6:a]" {
		t.Errorf("agent=a got %v", got)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	b := newBus(t, Options{Heartbeat: 20 * time.Millisecond})
	c := dial(t, newStream(t, b), nil)
	for range 2 {
		if f, err := c.frame(); err != nil || f.comment != "heartbeat" {
			t.Fatalf("frame %+v, %v; want a heartbeat", f, err)
		}
	}
}

func TestSSESlowSubscriberDisconnected(t *testing.T) {
	b := newBus(t, Options{SubscriberBuffer: 4, RingSize: 1 << 16, WriteTimeout: 200 * time.Millisecond})
	url := newStream(t, b)
	slow := dial(t, url, nil) // reads nothing until it has been cut off

	// Publish as fast as possible until the subscriber falls behind; no
	// Publish may wait for it.
	start := time.Now()
	published := 0
	for b.Stats().SlowClients == 0 {
		if published == 60_000 || time.Since(start) > 10*time.Second {
			t.Fatalf("no disconnect after %d events in %v", published, time.Since(start))
		}
		b.Publish(levelEvent("h", published))
		published++
	}
	if st := b.Stats(); st.Subscribers != 0 {
		t.Errorf("slow subscriber still registered: %+v", st)
	}
	// The stream ends after what was sent; the events it got are 1..last.
	var last int64
	for {
		f, err := slow.frame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("stream ended with %v, want EOF", err)
			}
			break
		}
		if f.comment == "" {
			if f.id != last+1 {
				t.Fatalf("event %d after %d", f.id, last)
			}
			last = f.id
		}
	}
	if last >= int64(published) {
		t.Fatalf("got all %d events, yet was disconnected", last)
	}
	// It resumes where it stopped.
	c := dial(t, url, lastID(strconv.FormatInt(last, 10)))
	b.Publish(levelEvent("h", 0))
	if got := c.ids(t, published+1-int(last)); got[0] != last+1 || got[len(got)-1] != int64(published+1) {
		t.Errorf("resumed with %v, want %d..%d", got, last+1, published+1)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	b := New(Options{})
	url := newStream(t, b)
	clients := []*sseClient{dial(t, url, nil), dial(t, url+"?agent=x", nil)}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, c := range clients {
		if f, err := c.frame(); !errors.Is(err, io.EOF) {
			t.Errorf("client %d after Close: %+v, %v; want EOF", i, f, err)
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET after Close: %s, want 503", resp.Status)
	}
}

func TestMaxSubscribers(t *testing.T) {
	b := newBus(t, Options{MaxSubscribers: 1})
	url := newStream(t, b)
	dial(t, url, nil)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second client: %s, want 503", resp.Status)
	}
}
