package gatekeeper

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// TestJWKSCache: the key set is fetched once and cached; a report naming
// an unknown kid fetches it again at most every MinRefresh, and then is
// refused with unknown-key; a service that cannot be reached, or answers
// what is not a JWKS, with nothing cached is keys-unavailable, and with a
// set cached that set serves.
func TestJWKSCache(t *testing.T) {
	ctx := context.Background()
	iss, err := token.NewIssuer(ctx, tokentest.NewKeyStore(), token.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	set, err := iss.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(set)
	}))
	defer srv.Close()
	j := NewJWKS(srv.URL, JWKSOptions{})
	now := time.Now()
	enc := base64.RawURLEncoding.EncodeToString
	unknown := enc([]byte(`{"alg":"ES256","kid":"not-a-key-of-the-set","typ":"JWT"}`)) + "." + enc([]byte(`{}`)) + "." + enc(make([]byte, 64))
	for i := range 5 {
		_, err := j.Verify(ctx, unknown, now.Add(time.Duration(i)*time.Second))
		if ear.Of(err) != ear.UnknownKey {
			t.Fatalf("an unknown kid: %v", err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches within MinRefresh of the first, want 1", n)
	}
	if _, err := j.Verify(ctx, unknown, now.Add(11*time.Second)); ear.Of(err) != ear.UnknownKey || fetches.Load() != 2 {
		t.Errorf("after MinRefresh: %v, %d fetches, want unknown-key and 2", err, fetches.Load())
	}
	// Down: the cached set serves (the report is refused for its kid, not
	// for want of keys) until MaxStale.
	down.Store(true)
	if _, err := j.Verify(ctx, unknown, now.Add(10*time.Minute)); ear.Of(err) != ear.UnknownKey {
		t.Errorf("down with a cached set: %v", err)
	}
	if _, err := j.Verify(ctx, unknown, now.Add(2*time.Hour)); refusal(err).Code != KeysUnavailable {
		t.Errorf("down past MaxStale: %v", err)
	}
	fresh := NewJWKS(srv.URL, JWKSOptions{})
	if _, err := fresh.Verify(ctx, unknown, now); refusal(err).Code != KeysUnavailable {
		t.Errorf("down with nothing cached: %v", err)
	}
	// A set that does not parse is a failed fetch, never cached.
	junk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"keys": 7}`)) }))
	defer junk.Close()
	if _, err := NewJWKS(junk.URL, JWKSOptions{}).Verify(ctx, unknown, now); refusal(err).Code != KeysUnavailable {
		t.Errorf("a JWKS that does not parse: %v", err)
	}
}
