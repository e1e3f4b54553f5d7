package events

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
)

var secret = []byte("0123456789abcdef-webhook-secret")

// receiver is a webhook endpoint on loopback that records every request
// and answers with status(n) for the n-th (1-based).
type receiver struct {
	URL    string
	status func(n int, w http.ResponseWriter, r *http.Request) int

	mu  sync.Mutex
	got []delivery
}

type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
	status int
}

func newReceiver(t *testing.T, status func(n int, w http.ResponseWriter, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{status: status}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.got) + 1
		d := delivery{header: r.Header.Clone(), body: body, at: time.Now()}
		rc.got = append(rc.got, d)
		rc.mu.Unlock()
		code := http.StatusNoContent
		if rc.status != nil {
			code = rc.status(n, w, r)
		}
		rc.mu.Lock()
		rc.got[n-1].status = code
		rc.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

func (rc *receiver) requests() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// outcomes records OnDelivery calls.
type outcomes struct {
	mu  sync.Mutex
	got []outcome
}

type outcome struct {
	url     string
	ok      bool
	attempt int
}

func (o *outcomes) record(url string, ok bool, attempt int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, outcome{url, ok, attempt})
}

func (o *outcomes) list() []outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]outcome(nil), o.got...)
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newBus(t *testing.T, o Options) *Bus {
	t.Helper()
	if o.BackoffBase == 0 {
		o.BackoffBase, o.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	b := New(o)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func levelEvent(agent string, level int) api.Event {
	return api.Event{Type: api.EventLevel, AgentID: agent, Level: level, PreviousLevel: level - 1, Status: "approved"}
}

func TestWebhookSignedDelivery(t *testing.T) {
	all := newReceiver(t, nil)
	statusOnly := newReceiver(t, nil)
	var out outcomes
	b := newBus(t, Options{
		Webhooks: []Webhook{
			{URL: all.URL, Secret: secret},
			{URL: statusOnly.URL, Secret: []byte("another-secret-of-16+"), Types: []string{api.EventStatus}},
		},
		OnDelivery: out.record,
	})
	b.Publish(levelEvent("host-1", 3))
	b.Publish(api.Event{Type: api.EventStatus, AgentID: "host-1", Level: 3, PreviousLevel: 3, Status: "revoked", PreviousStatus: "approved"})
	eventually(t, "3 outcomes", func() bool { return len(out.list()) == 3 })

	got := all.requests()
	if len(got) != 2 {
		t.Fatalf("all-types webhook got %d requests, want 2", len(got))
	}
	for i, d := range got {
		if err := VerifySignature(secret, d.header, d.body, time.Now(), time.Minute); err != nil {
			t.Errorf("request %d: VerifySignature: %v", i, err)
		}
		var e api.Event
		if err := json.Unmarshal(d.body, &e); err != nil {
			t.Fatalf("request %d: body: %v", i, err)
		}
		wantID := int64(i + 1)
		if e.ID != wantID || d.header.Get(HeaderID) != strconv.FormatInt(wantID, 10) {
			t.Errorf("request %d: id %d, header %q; want %d", i, e.ID, d.header.Get(HeaderID), wantID)
		}
		if d.header.Get(HeaderType) != e.Type || d.header.Get("Content-Type") != "application/json" {
			t.Errorf("request %d: type header %q content type %q, event type %q", i, d.header.Get(HeaderType), d.header.Get("Content-Type"), e.Type)
		}
		if e.Time.IsZero() || e.AgentID != "host-1" {
			t.Errorf("request %d: event %+v", i, e)
		}
	}
	st := statusOnly.requests()
	if len(st) != 1 || st[0].header.Get(HeaderType) != api.EventStatus {
		t.Fatalf("status-only webhook got %d requests (%v), want 1 agent.status", len(st), st)
	}
	if err := VerifySignature(secret, st[0].header, st[0].body, time.Now(), time.Minute); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("verify with the other webhook's secret: %v, want ErrSignatureMismatch", err)
	}
	for _, o := range out.list() {
		if !o.ok || o.attempt != 1 {
			t.Errorf("outcome %+v, want ok at attempt 1", o)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	body := []byte(`{"id":7,"type":"agent.level"}`)
	hdr := func(ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		if sig != "" {
			h.Set(HeaderSignature, sig)
		}
		return h
	}
	ts := now.Unix()
	good := Sign(secret, ts, body)
	tests := []struct {
		name   string
		secret []byte
		header http.Header
		body   []byte
		want   error
	}{
		{"valid", secret, hdr(ts, good), body, nil},
		{"valid within tolerance", secret, hdr(ts-299, Sign(secret, ts-299, body)), body, nil},
		{"rotation list", secret, hdr(ts, "v1=00ff, "+good), body, nil},
		{"tampered body", secret, hdr(ts, good), []byte(`{"id":7,"type":"agent.status"}`), ErrSignatureMismatch},
		{"wrong secret", []byte("not-the-secret-0123"), hdr(ts, good), body, ErrSignatureMismatch},
		{"timestamp moved", secret, hdr(ts+1, good), body, ErrSignatureMismatch},
		{"stale", secret, hdr(ts-301, Sign(secret, ts-301, body)), body, ErrStaleTimestamp},
		{"future", secret, hdr(ts+301, Sign(secret, ts+301, body)), body, ErrStaleTimestamp},
		{"no signature", secret, hdr(ts, ""), body, ErrNoSignature},
		{"other scheme", secret, hdr(ts, "v0="+good[3:]), body, ErrSignatureMismatch},
		{"not hex", secret, hdr(ts, "v1=zz"), body, ErrSignatureMismatch},
		{"truncated", secret, hdr(ts, good[:len(good)-2]), body, ErrSignatureMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(tc.secret, tc.header, tc.body, now, 5*time.Minute)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("VerifySignature = %v, want %v", err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "+1750000000", " 1750000000", "1750000000.0", "1e9", "-5", "9999999999999999999"} {
		h := hdr(0, good)
		h.Set(HeaderTimestamp, bad)
		if err := VerifySignature(secret, h, body, now, 0); !errors.Is(err, ErrBadTimestamp) {
			t.Errorf("timestamp %q: %v, want ErrBadTimestamp", bad, err)
		}
	}
}

// statuses answers the listed codes in turn, then 200.
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) int {
	return func(n int, _ http.ResponseWriter, _ *http.Request) int {
		if n <= len(codes) {
			return codes[n-1]
		}
		return http.StatusOK
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name         string
		codes        []int
		maxAttempts  int
		wantRequests int
		wantOK       bool
	}{
		{"503 twice then 200", []int{503, 503}, 0, 3, true},
		{"500, 429, 502 then 200", []int{500, 429, 502}, 0, 4, true},
		{"400 is final", []int{400}, 0, 1, false},
		{"404 is final", []int{404}, 0, 1, false},
		{"redirect is not followed", []int{302}, 0, 1, false},
		{"out of attempts", []int{503, 503, 503, 503}, 3, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, statuses(tc.codes...))
			var out outcomes
			b := newBus(t, Options{Webhooks: []Webhook{{URL: rc.URL, Secret: secret}}, MaxAttempts: tc.maxAttempts, OnDelivery: out.record})
			b.Publish(levelEvent("h", 2))
			eventually(t, "an outcome", func() bool { return len(out.list()) == 1 })
			if got, want := out.list()[0], (outcome{rc.URL, tc.wantOK, tc.wantRequests}); got != want {
				t.Errorf("outcome %+v, want %+v", got, want)
			}
			reqs := rc.requests()
			if len(reqs) != tc.wantRequests {
				t.Fatalf("%d requests, want %d", len(reqs), tc.wantRequests)
			}
			for _, d := range reqs {
				if d.header.Get(HeaderID) != "1" {
					t.Errorf("retry carries event ID %q, want 1", d.header.Get(HeaderID))
				}
			}
			st := b.Stats().Webhooks[0]
			wantDelivered, wantFailed := uint64(0), uint64(1)
			if tc.wantOK {
				wantDelivered, wantFailed = 1, 0
			}
			if st.Delivered != wantDelivered || st.Failed != wantFailed || st.Retries != uint64(tc.wantRequests-1) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestWebhookRetryAfter(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	var out outcomes
	newBus(t, Options{Webhooks: []Webhook{{URL: rc.URL, Secret: secret}}, BackoffBase: time.Millisecond, BackoffMax: 3 * time.Second, OnDelivery: out.record}).
		Publish(levelEvent("h", 1))
	eventually(t, "an outcome", func() bool { return len(out.list()) == 1 })
	reqs := rc.requests()
	if len(reqs) != 2 || !out.list()[0].ok {
		t.Fatalf("%d requests, outcome %+v", len(reqs), out.list())
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retried after %v despite Retry-After: 1", gap)
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n <= 80; n++ {
		want := time.Minute
		if n <= 6 {
			want = time.Second << (n - 1)
		}
		for range 20 {
			if d := backoff(time.Second, time.Minute, n); d < want/2 || d > want {
				t.Fatalf("backoff(1s, 1m, %d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestWebhookOrder(t *testing.T) {
	// Every third event's first attempt fails: the worker retries it
	// before going on, so the receiver accepts 1..N in order.
	var mu sync.Mutex
	seen := map[string]bool{}
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) int {
		id := r.Header.Get(HeaderID)
		n, _ := strconv.Atoi(id)
		mu.Lock()
		defer mu.Unlock()
		if n%3 == 0 && !seen[id] {
			seen[id] = true
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var out outcomes
	b := newBus(t, Options{Webhooks: []Webhook{{URL: rc.URL, Secret: secret}}, OnDelivery: out.record})
	const n = 60
	for i := range n {
		b.Publish(levelEvent("h", i))
	}
	eventually(t, "all outcomes", func() bool { return len(out.list()) == n })
	var accepted []int64
	for _, d := range rc.requests() {
		if d.status == http.StatusOK {
			var e api.Event
			if err := json.Unmarshal(d.body, &e); err != nil {
				t.Fatal(err)
			}
			accepted = append(accepted, e.ID)
		}
	}
	for i, id := range accepted {
		if id != int64(i+1) {
			t.Fatalf("accepted order %v", accepted)
		}
	}
	if len(accepted) != n {
		t.Fatalf("accepted %d events, want %d", len(accepted), n)
	}
}

func TestPublishNeverBlocksOnHangingWebhook(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) })
	const queue, n = 4, 1000
	b := New(Options{Webhooks: []Webhook{{URL: rc.URL, Secret: secret}}, QueueSize: queue, DrainTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	b.Publish(levelEvent("h", 0))
	eventually(t, "the first delivery to hang", func() bool { return len(rc.requests()) == 1 })

	done := make(chan struct{})
	go func() {
		for i := 1; i < n; i++ {
			b.Publish(levelEvent("h", i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked behind a hanging webhook")
	}
	st := b.Stats().Webhooks[0]
	if st.Queued != queue || st.Dropped != n-1-queue {
		t.Errorf("queued %d dropped %d, want %d and %d", st.Queued, st.Dropped, queue, n-1-queue)
	}
	start := time.Now()
	err := b.Close()
	if err == nil {
		t.Error("Close abandoned events but returned nil")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with a 100ms drain timeout", d)
	}
	if st := b.Stats().Webhooks[0]; st.Dropped != n || st.Queued != 0 || st.Delivered != 0 {
		t.Errorf("after Close: %+v, want all %d dropped", st, n)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	rc := newReceiver(t, func(int, http.ResponseWriter, *http.Request) int {
		time.Sleep(5 * time.Millisecond)
		return http.StatusOK
	})
	b := New(Options{Webhooks: []Webhook{{URL: rc.URL, Secret: secret}}})
	for i := range 10 {
		b.Publish(levelEvent("h", i))
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := len(rc.requests()); got != 10 {
		t.Errorf("receiver got %d events before Close returned, want 10", got)
	}
	b.Publish(levelEvent("h", 99))
	if st := b.Stats(); st.Published != 10 {
		t.Errorf("Publish after Close counted: %d", st.Published)
	}
}

func TestWebhookValidate(t *testing.T) {
	tests := []struct {
		name string
		w    Webhook
		ok   bool
	}{
		{"good", Webhook{URL: "https://hooks.example/vigil", Secret: secret, Types: []string{api.EventLevel}}, true},
		{"relative url", Webhook{URL: "/hook", Secret: secret}, false},
		{"ftp", Webhook{URL: "ftp://hooks.example/", Secret: secret}, false},
		{"short secret", Webhook{URL: "https://hooks.example/", Secret: []byte("short")}, false},
		{"unknown type", Webhook{URL: "https://hooks.example/", Secret: secret, Types: []string{"agent.levle"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.w.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}

	// New disables an invalid webhook: nothing is sent, every event fails.
	rc := newReceiver(t, nil)
	var out outcomes
	o := Options{Webhooks: []Webhook{{URL: rc.URL, Secret: []byte("short")}}, OnDelivery: out.record}
	if o.Validate() == nil {
		t.Fatal("Options.Validate accepted a short secret")
	}
	b := newBus(t, o)
	b.Publish(levelEvent("h", 1))
	eventually(t, "an outcome", func() bool { return len(out.list()) == 1 })
	if o := out.list()[0]; o.ok || len(rc.requests()) != 0 || b.Stats().Webhooks[0].Failed != 1 {
		t.Errorf("invalid webhook: outcome %+v, %d requests", o, len(rc.requests()))
	}
}
