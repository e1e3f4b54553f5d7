package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-attest/vigil/api"
)

// Webhook is one receiver of events.
type Webhook struct {
	// URL is an absolute http or https URL.
	URL string
	// Secret keys the HMAC-SHA256 signature; at least MinSecretLen bytes.
	Secret []byte
	// Types selects the event types sent (api.EventLevel,
	// api.EventStatus); empty means all.
	Types []string
}

// MinSecretLen is the shortest webhook secret accepted.
const MinSecretLen = 16

// Validate checks the URL, the secret's length and the types.
func (w Webhook) Validate() error {
	u, err := url.Parse(w.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http or https URL", w.URL)
	}
	if len(w.Secret) < MinSecretLen {
		return fmt.Errorf("secret: %d bytes, want at least %d", len(w.Secret), MinSecretLen)
	}
	for _, t := range w.Types {
		if t != api.EventLevel && t != api.EventStatus {
			return fmt.Errorf("type %q: want %q or %q", t, api.EventLevel, api.EventStatus)
		}
	}
	return nil
}

// Webhook request headers.
const (
	HeaderID        = "Vigil-Event-Id"
	HeaderType      = "Vigil-Event-Type"
	HeaderTimestamp = "Vigil-Timestamp"
	HeaderSignature = "Vigil-Signature"
)

// DefaultTolerance is the signature age VerifySignature accepts when given
// a tolerance <= 0.
const DefaultTolerance = 5 * time.Minute

// Sign returns the Vigil-Signature value for body sent at timestamp ts
// (unix seconds): "v1=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret []byte, ts int64, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature errors.
var (
	ErrNoSignature       = errors.New("missing Vigil-Signature")
	ErrBadTimestamp      = errors.New("Vigil-Timestamp is not unix seconds")
	ErrStaleTimestamp    = errors.New("Vigil-Timestamp outside the tolerance")
	ErrSignatureMismatch = errors.New("no v1 signature matches")
)

// VerifySignature is for webhook receivers. It checks that the
// Vigil-Timestamp header is within tolerance of now (either way;
// tolerance <= 0 means DefaultTolerance) and that a v1 entry of the
// comma-separated Vigil-Signature header is the HMAC of timestamp "."
// body under secret, compared in constant time. Receivers should also
// drop Vigil-Event-Id values they have already processed.
func VerifySignature(secret []byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sig := header.Get(HeaderSignature)
	if sig == "" {
		return ErrNoSignature
	}
	tsText := header.Get(HeaderTimestamp)
	ts, ok := parseDecimal(tsText)
	if !ok {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, tsText)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %v old, tolerance %v", ErrStaleTimestamp, d.Truncate(time.Second), tolerance)
	}
	want := mac(secret, ts, body)
	for v := range strings.SplitSeq(sig, ",") {
		hexSig, ok := strings.CutPrefix(strings.TrimSpace(v), "v1=")
		if !ok {
			continue
		}
		got, err := hex.DecodeString(hexSig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}

// parseDecimal parses 1 to 18 ASCII digits (no sign, no spaces) as a
// non-negative int64.
func parseDecimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

type hook struct {
	w       Webhook
	invalid error
	queue   chan api.Event

	delivered, failed, retries, dropped atomic.Uint64
}

func defaultClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   2,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// work delivers h's events in order until its queue is closed and empty
// or ctx is cancelled (Close's deadline); what is left then is dropped.
func (b *Bus) work(ctx context.Context, h *hook) {
	for e := range h.queue {
		if ctx.Err() != nil {
			h.dropped.Add(1)
			continue
		}
		attempt, ok, abandoned := b.deliver(ctx, h, e)
		switch {
		case abandoned:
			h.dropped.Add(1)
		case ok:
			h.delivered.Add(1)
		default:
			h.failed.Add(1)
		}
		if b.o.OnDelivery != nil {
			b.o.OnDelivery(h.w.URL, ok, attempt)
		}
	}
}

// deliver tries e until it is accepted, refused for good, out of
// attempts, or ctx ends (abandoned).
func (b *Bus) deliver(ctx context.Context, h *hook, e api.Event) (attempt int, ok, abandoned bool) {
	if h.invalid != nil {
		return 0, false, false
	}
	body, err := json.Marshal(e)
	if err != nil {
		b.log.Error("events: encode event", "id", e.ID, "err", err)
		return 0, false, false
	}
	for attempt = 1; ; attempt++ {
		retry, wait, err := b.post(ctx, h.w, e, body)
		if err == nil {
			return attempt, true, false
		}
		if ctx.Err() != nil {
			return attempt, false, true
		}
		if !retry || attempt >= b.o.MaxAttempts {
			b.log.Warn("events: webhook delivery failed", "url", h.w.URL, "id", e.ID, "attempt", attempt, "final", true, "err", err)
			return attempt, false, false
		}
		if wait <= 0 {
			wait = backoff(b.o.BackoffBase, b.o.BackoffMax, attempt)
		}
		b.log.Info("events: webhook delivery failed", "url", h.w.URL, "id", e.ID, "attempt", attempt, "retry_in", wait, "err", err)
		h.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, false, true
		case <-t.C:
		}
	}
}

// post makes one attempt. It reports whether a failure is worth retrying
// and the receiver's Retry-After (capped at BackoffMax), if any.
func (b *Bus) post(ctx context.Context, w Webhook, e api.Event, body []byte) (retry bool, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("build request: %w", err)
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-webhook/1")
	req.Header.Set(HeaderID, strconv.FormatInt(e.ID, 10))
	req.Header.Set(HeaderType, e.Type)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.Secret, ts, body))
	resp, err := b.o.Client.Do(req)
	if err != nil {
		return true, 0, fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, 0, nil
	case c == http.StatusTooManyRequests || c >= 500:
		return true, min(retryAfter(resp.Header.Get("Retry-After"), time.Now()), b.o.BackoffMax), fmt.Errorf("receiver answered %s", resp.Status)
	default:
		return false, 0, fmt.Errorf("receiver answered %s", resp.Status)
	}
}

// backoff is the delay after failed attempt n (1-based): the exponential
// step d = min(max, base·2^(n-1)), jittered uniformly in [d/2, d].
func backoff(base, maxDelay time.Duration, n int) time.Duration {
	d := maxDelay
	if n-1 < 62 && base <= maxDelay>>(n-1) {
		d = base << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter parses a Retry-After value (delay seconds or HTTP date); 0
// when absent or malformed.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, ok := parseDecimal(v); ok {
		return time.Duration(min(s, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}
