package gatekeeper

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/vigil-attest/vigil/ear"
)

// Keys verifies session reports: against the service's report CA
// (CAKeys) or its JWKS (JWKS). A *Refusal error means the keys could not
// be had (KeysUnavailable); any other error is the report's (ear.Of).
type Keys interface {
	Verify(ctx context.Context, report string, now time.Time) (*ear.Verified, error)
}

// caKeys verifies by the report CA: offline, nothing to fetch.
type caKeys struct{ roots *x509.CertPool }

// CAKeys verifies session reports by their x5c chain to roots (the
// service's report CA, /.well-known/vigil-ca.pem).
func CAKeys(roots *x509.CertPool) Keys { return caKeys{roots: roots} }

// LoadCA reads the report CA (PEM) from path.
func LoadCA(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gatekeeper: the report CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("gatekeeper: the report CA %s holds no PEM certificate", path)
	}
	return CAKeys(pool), nil
}

func (k caKeys) Verify(_ context.Context, report string, now time.Time) (*ear.Verified, error) {
	return ear.Verify(report, k.roots, now)
}

// Defaults of JWKSOptions.
const (
	DefaultJWKSRefresh    = 5 * time.Minute
	DefaultJWKSMinRefresh = 10 * time.Second
	DefaultJWKSMaxStale   = time.Hour
)

// JWKSOptions tune a JWKS cache. Zero fields take the defaults.
type JWKSOptions struct {
	// Client fetches the key set (a client with a 10-second timeout when
	// nil).
	Client *http.Client
	// Refresh is how old the cached set may grow before the next report
	// fetches it again (DefaultJWKSRefresh).
	Refresh time.Duration
	// MinRefresh is the least time between two fetches caused by unknown
	// kids (DefaultJWKSMinRefresh): a stream of reports with made-up kids
	// cannot make the gate hammer the service.
	MinRefresh time.Duration
	// MaxStale is how long a cached set serves when fetching fails
	// (DefaultJWKSMaxStale); past it, KeysUnavailable.
	MaxStale time.Duration
}

// JWKS verifies session reports by the service's key set
// (/.well-known/jwks.json), parsed once per fetch (ear.KeySet) and
// cached: fetched on first use, again when it
// is older than Refresh, and at once (at most every MinRefresh) when a
// report names a kid the cached set lacks (the service rotated its key).
type JWKS struct {
	url string
	o   JWKSOptions

	mu      sync.Mutex
	set     *ear.KeySet
	fetched time.Time // when set was fetched
	tried   time.Time // the last fetch attempt
}

// NewJWKS makes a JWKS cache of the key set at url.
func NewJWKS(url string, o JWKSOptions) *JWKS {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultJWKSRefresh
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = DefaultJWKSMinRefresh
	}
	if o.MaxStale <= 0 {
		o.MaxStale = DefaultJWKSMaxStale
	}
	return &JWKS{url: url, o: o}
}

// Verify implements Keys.
func (j *JWKS) Verify(ctx context.Context, report string, now time.Time) (*ear.Verified, error) {
	set, err := j.current(ctx, now, false)
	if err != nil {
		return nil, err
	}
	v, err := set.Verify(report, now)
	if ear.Of(err) != ear.UnknownKey {
		return v, err
	}
	// An unknown kid: the service may have rotated. Fetch again (rate
	// limited) and retry once.
	fresh, ferr := j.current(ctx, now, true)
	if ferr != nil || fresh == set {
		return nil, err
	}
	return fresh.Verify(report, now)
}

// current returns the cached set, fetching it when there is none, when
// it is older than Refresh, or when force and MinRefresh has passed.
func (j *JWKS) current(ctx context.Context, now time.Time, force bool) (*ear.KeySet, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	due := j.set == nil || now.Sub(j.fetched) >= j.o.Refresh || force
	if due && (j.set == nil || now.Sub(j.tried) >= j.o.MinRefresh) {
		j.tried = now
		set, err := j.fetch(ctx)
		if err == nil {
			j.set, j.fetched = set, now
		} else if j.set == nil || now.Sub(j.fetched) > j.o.MaxStale {
			return nil, refuse(KeysUnavailable, err.Error())
		}
	}
	if j.set == nil {
		return nil, refuse(KeysUnavailable, "no key set fetched yet")
	}
	return j.set, nil
}

// fetch gets and parses the set (a set that does not parse is a failed
// fetch: the cached one stays).
func (j *JWKS) fetch(ctx context.Context) (*ear.KeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the JWKS %s: status %d", j.url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, ear.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the JWKS: %w", err)
	}
	if len(b) > ear.MaxSize {
		return nil, errors.New("the JWKS exceeds ear.MaxSize")
	}
	set, err := ear.ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("the JWKS of %s: %w", j.url, err)
	}
	return set, nil
}
