package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	veraison "github.com/veraison/ear"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// epoch is the fake clock's start: tokens made at it are deterministic
// in time (fuzz seeds and the peers verify them "now" = epoch).
var epoch = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// clock is a fake time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is an Issuer on an in-memory KeyStore with a fake clock.
type fixture struct {
	ks    *tokentest.KeyStore
	clock *clock
	iss   *token.Issuer
	roots *x509.CertPool
}

func newFixture(tb testing.TB, o token.Options) *fixture {
	tb.Helper()
	return newFixtureAt(tb, epoch, o)
}

// newFixtureAt starts the clock at start (time.Now() for peers that
// check times against the real clock).
func newFixtureAt(tb testing.TB, start time.Time, o token.Options) *fixture {
	tb.Helper()
	f := &fixture{ks: tokentest.NewKeyStore(), clock: newClock(start.Truncate(time.Second))}
	f.iss = f.issuer(tb, o)
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.iss.CA())
	return f
}

// issuer is another replica on the fixture's store and clock.
func (f *fixture) issuer(tb testing.TB, o token.Options) *token.Issuer {
	tb.Helper()
	o.Now = f.clock.Now
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Issuer == "" {
		o.Issuer = "https://vigil.test"
	}
	iss, err := token.NewIssuer(context.Background(), f.ks, o)
	if err != nil {
		tb.Fatal(err)
	}
	return iss
}

// reportKey is a fixed P-256 report key (the enclave's).
var reportKey = func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

// sampleClaims is a level-2 report with a failure, a trust vector and a
// cnf key.
func sampleClaims() *ear.Claims {
	return &ear.Claims{
		AgentID: "agent-7",
		Nonce:   []byte("0123456789abcdef0123456789abcdef"),
		Level:   appraise.LevelHardware,
		Status:  "affirming",
		TrustVector: map[string]int{
			"instance-identity": 2,
			"hardware":          2,
			"executables":       33,
			"configuration":     32,
		},
		Failures: []appraise.Failure{
			{Claim: "report.boot.secure_boot", Reason: "secure-boot-off", Level: 3, Detail: "SecureBoot variable is 0", Provenance: "attested"},
			{Claim: "report.ima.active", Reason: "ima-inactive", Level: 4},
		},
		Provenance:     map[string]string{"secure_boot": "attested", "lockdown": "asserted", "sig_enforce": "corroborated"},
		PolicyID:       "vigil/default",
		PolicyDigest:   "sha256:9f2c",
		ContentVersion: "42",
		ReportKey:      &reportKey.PublicKey,
		EKSHA256:       sampleEK,
	}
}

// sampleEK is an EK hash (SHA-256 of a TPMT_PUBLIC, lowercase hex).
const sampleEK = "6b3fa1c0e4f8a2d9c17e5b04a3f62d8e9c1b7a4f0e2d6c8b5a3f1e9d7c4b2a08"

func (f *fixture) issue(tb testing.TB, c *ear.Claims) string {
	tb.Helper()
	tok, err := f.iss.Issue(context.Background(), c)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// segments decodes a token's header and claims.
func segments(tb testing.TB, tok string) (hdr, claims map[string]any) {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d segments", len(parts))
	}
	for i, dst := range []*map[string]any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			tb.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			tb.Fatal(err)
		}
	}
	return hdr, claims
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	f := newFixture(t, token.Options{})
	c := sampleClaims()
	tok := f.issue(t, c)
	if !c.IssuedAt.Equal(epoch) || !c.Expiry.Equal(epoch.Add(token.DefaultValidity)) || c.Issuer != "https://vigil.test" {
		t.Errorf("Issue filled iat %v exp %v iss %q", c.IssuedAt, c.Expiry, c.Issuer)
	}
	v, err := ear.Verify(tok, f.roots, epoch.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := v.Claims
	if !got.ReportKey.(*ecdsa.PublicKey).Equal(&reportKey.PublicKey) {
		t.Errorf("cnf key %v, want the report key", got.ReportKey)
	}
	got.ReportKey, c.ReportKey = nil, nil
	if !got.IssuedAt.Equal(c.IssuedAt) || !got.Expiry.Equal(c.Expiry) {
		t.Errorf("times %v–%v, want %v–%v", got.IssuedAt, got.Expiry, c.IssuedAt, c.Expiry)
	}
	got.IssuedAt, got.Expiry, c.IssuedAt, c.Expiry = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, *c) {
		t.Errorf("claims after verify:\n got %+v\nwant %+v", got, *c)
	}
	if len(v.Chain) != 2 || !v.Chain[1].Equal(f.iss.CA()) {
		t.Errorf("chain of %d, want leaf + CA", len(v.Chain))
	}

	hdr, claims := segments(t, tok)
	if hdr["alg"] != "ES256" || hdr["typ"] != "JWT" || hdr["kid"] != v.KID {
		t.Errorf("header %v", hdr)
	}
	x5c, _ := hdr["x5c"].([]any)
	if len(x5c) != 2 || x5c[1] != base64.StdEncoding.EncodeToString(f.iss.CA().Raw) {
		t.Errorf("x5c %v, want [signing cert, CA cert]", x5c)
	}
	want := map[string]any{
		"sub":                   "agent-7",
		"iss":                   "https://vigil.test",
		"iat":                   float64(epoch.Unix()),
		"exp":                   float64(epoch.Add(token.DefaultValidity).Unix()),
		"eat_profile":           veraison.EatProfile,
		"eat_nonce":             base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
		ear.ClaimLevel:          float64(2),
		ear.ClaimPolicyDigest:   "sha256:9f2c",
		ear.ClaimContentVersion: "42",
		ear.ClaimEKSHA256:       sampleEK,
	}
	for k, w := range want {
		if claims[k] != w {
			t.Errorf("claim %s = %v, want %v", k, claims[k], w)
		}
	}
	sub := claims["submods"].(map[string]any)[ear.SubmodName].(map[string]any)
	if sub["ear.status"] != "affirming" || sub["ear.appraisal-policy-id"] != "vigil/default" {
		t.Errorf("submod %v", sub)
	}
	if fl := claims[ear.ClaimFailures].([]any); len(fl) != 2 || fl[0].(map[string]any)["reason"] != "secure-boot-off" {
		t.Errorf("failures %v", fl)
	}
	cnf := claims["cnf"].(map[string]any)["jwk"].(map[string]any)
	if cnf["kty"] != "EC" || cnf["crv"] != "P-256" || cnf["d"] != nil {
		t.Errorf("cnf.jwk %v", cnf)
	}
	if !reflect.DeepEqual(v.Raw, claims) {
		t.Errorf("Verified.Raw differs from the claims set")
	}
}

// TestIssueMinimal: a level-0 report of invalid evidence (no report key,
// no trust vector, no nonce, no failures list) still issues and verifies.
func TestIssueMinimal(t *testing.T) {
	f := newFixture(t, token.Options{})
	tok := f.issue(t, &ear.Claims{AgentID: "a", Status: "contraindicated"})
	v, err := ear.Verify(tok, f.roots, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if v.Claims.Level != 0 || v.Claims.ReportKey != nil || v.Claims.Nonce != nil || len(v.Claims.Failures) != 0 {
		t.Errorf("claims %+v", v.Claims)
	}
	_, claims := segments(t, tok)
	if fl, ok := claims[ear.ClaimFailures].([]any); !ok || len(fl) != 0 {
		t.Errorf("vigil.failures = %#v, want []", claims[ear.ClaimFailures])
	}
	if _, ok := claims["cnf"]; ok {
		t.Error("cnf present without a report key")
	}
	if _, ok := claims[ear.ClaimEKSHA256]; ok || v.Claims.EKSHA256 != "" {
		t.Error("an EK hash present without an EK (a software agent has none)")
	}
}

func TestIssueRefuses(t *testing.T) {
	f := newFixture(t, token.Options{})
	_, priv := ed25519Key()
	for name, c := range map[string]*ear.Claims{
		"no agent":         {Status: "affirming"},
		"level 5":          {AgentID: "a", Level: 5, Status: "affirming"},
		"level -1":         {AgentID: "a", Level: -1, Status: "affirming"},
		"bad status":       {AgentID: "a", Status: "fine"},
		"bad trust claim":  {AgentID: "a", Status: "affirming", TrustVector: map[string]int{"hardware": 1000}},
		"unknown vector":   {AgentID: "a", Status: "affirming", TrustVector: map[string]int{"mood": 2}},
		"nonce too short":  {AgentID: "a", Status: "affirming", Nonce: []byte("abc")},
		"nonce too long":   {AgentID: "a", Status: "affirming", Nonce: make([]byte, 67)},
		"private cnf key":  {AgentID: "a", Status: "affirming", ReportKey: priv},
		"exp before iat":   {AgentID: "a", Status: "affirming", IssuedAt: epoch, Expiry: epoch.Add(-time.Second)},
		"exp beyond cert":  {AgentID: "a", Status: "affirming", Expiry: epoch.Add(token.DefaultKeyLifetime + 2*token.CertMargin + token.DefaultValidity)},
		"iat before cert":  {AgentID: "a", Status: "affirming", IssuedAt: epoch.Add(-time.Hour)},
		"EK hash upper":    {AgentID: "a", Status: "affirming", EKSHA256: strings.ToUpper(sampleEK)},
		"EK hash short":    {AgentID: "a", Status: "affirming", EKSHA256: sampleEK[:62]},
		"EK hash not hex":  {AgentID: "a", Status: "affirming", EKSHA256: "sha256:" + sampleEK[7:]},
		"bad provenance":   {AgentID: "a", Status: "affirming", Provenance: map[string]string{"secure_boot": "trusted"}},
		"nil report claim": nil,
	} {
		t.Run(name, func(t *testing.T) {
			if tok, err := f.iss.Issue(context.Background(), c); err == nil {
				t.Errorf("issued %s", tok)
			}
		})
	}
}

// TestClaimNames holds the wire names to the exported constants.
func TestClaimNames(t *testing.T) {
	f := newFixture(t, token.Options{})
	_, claims := segments(t, f.issue(t, sampleClaims()))
	for _, name := range []string{ear.ClaimLevel, ear.ClaimFailures, ear.ClaimPolicyDigest, ear.ClaimContentVersion, ear.ClaimEKSHA256, ear.ClaimProvenance, "sub", "iss", "exp", "iat", "cnf", "eat_nonce", "eat_profile", "ear.verifier-id", "submods"} {
		if _, ok := claims[name]; !ok {
			t.Errorf("claim %q missing", name)
		}
	}
	if len(claims) != 15 {
		t.Errorf("%d claims, want 15: %v", len(claims), claims)
	}
}

// TestEARVerify: Veraison's own veraison.AttestationResult.Verify accepts the
// token with the signing key and reads back status, vector and nonce.
func TestEARVerify(t *testing.T) {
	// The real clock: ear (jwx) checks iat and exp against it.
	f := newFixtureAt(t, time.Now(), token.Options{})
	c := sampleClaims()
	tok := f.issue(t, c)
	k := signingJWK(t, f.iss, tok)
	var ar veraison.AttestationResult
	if err := ar.Verify([]byte(tok), jwa.ES256, k); err != nil {
		t.Fatal(err)
	}
	app := ar.Submods[ear.SubmodName]
	if *app.Status != veraison.TrustTierAffirming || app.TrustVector.Hardware != veraison.GenuineHardwareClaim ||
		app.TrustVector.Executables != veraison.UnrecognizedRuntimeClaim || *app.AppraisalPolicyID != "vigil/default" {
		t.Errorf("ear read status %v vector %+v policy %v", *app.Status, *app.TrustVector, *app.AppraisalPolicyID)
	}
	if *ar.Nonce != base64.RawURLEncoding.EncodeToString(c.Nonce) || *ar.IssuedAt != c.IssuedAt.Unix() {
		t.Errorf("ear read nonce %v iat %v", *ar.Nonce, *ar.IssuedAt)
	}
	// Another key: ear refuses.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := ar.Verify([]byte(tok), jwa.ES256, &other.PublicKey); err == nil {
		t.Error("ear verified with another key")
	}
}

// signingJWK returns the JWKS key that signed tok.
func signingJWK(tb testing.TB, iss *token.Issuer, tok string) jwk.Key {
	tb.Helper()
	b, err := iss.JWKS()
	if err != nil {
		tb.Fatal(err)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		tb.Fatal(err)
	}
	hdr, _ := segments(tb, tok)
	k, ok := set.LookupKeyID(hdr["kid"].(string))
	if !ok {
		tb.Fatalf("kid %v not in the JWKS", hdr["kid"])
	}
	return k
}

func TestJWKS(t *testing.T) {
	f := newFixture(t, token.Options{})
	tok := f.issue(t, sampleClaims())
	b, err := f.iss.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["d"] != nil {
		t.Errorf("JWK %v", k)
	}
	// kid is the RFC 7638 thumbprint, computed here by the RFC's recipe.
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, k["x"], k["y"])
	sum := sha256.Sum256([]byte(canon))
	if k["kid"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Errorf("kid %v is not the RFC 7638 thumbprint", k["kid"])
	}
	hdr, _ := segments(t, tok)
	if hdr["kid"] != k["kid"] || !reflect.DeepEqual(hdr["x5c"], k["x5c"]) {
		t.Errorf("header kid/x5c differ from the JWKS")
	}
	if _, err := ear.VerifyJWKS(tok, b, epoch); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(f.iss.CAPEM())
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !ca.Equal(f.iss.CA()) || ca.Subject.CommonName != token.CAName || !ca.IsCA {
		t.Errorf("CAPEM: %v %v", ca.Subject, err)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() || ca.NotAfter.Before(epoch.Add(10*365*24*time.Hour)) {
		t.Errorf("CA key %T, valid until %v", ca.PublicKey, ca.NotAfter)
	}
}

// TestRotation: keys rotate when they retire and on Rotate; the old keys
// stay in the JWKS until their certificate expires, so their unexpired
// tokens keep verifying both ways.
func TestRotation(t *testing.T) {
	f := newFixture(t, token.Options{KeyLifetime: time.Hour, Validity: 10 * time.Minute})
	tok1 := f.issue(t, sampleClaims())
	kid1 := kidOf(t, tok1)

	if err := f.iss.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok2 := f.issue(t, sampleClaims())
	kid2 := kidOf(t, tok2)
	if kid2 == kid1 {
		t.Fatal("Rotate kept the key")
	}
	f.clock.Advance(5 * time.Minute)
	jwks := mustJWKS(t, f.iss)
	for _, tok := range []string{tok1, tok2} {
		if _, err := ear.Verify(tok, f.roots, f.clock.Now()); err != nil {
			t.Errorf("after rotation, Verify: %v", err)
		}
		if _, err := ear.VerifyJWKS(tok, jwks, f.clock.Now()); err != nil {
			t.Errorf("after rotation, VerifyJWKS: %v", err)
		}
	}
	if got := kidsOf(t, jwks); !reflect.DeepEqual(got, []string{kid2, kid1}) {
		t.Errorf("JWKS kids %v, want [%s %s]", got, kid2, kid1)
	}

	// Past key 2's retirement: Issue rotates by itself.
	f.clock.Advance(time.Hour)
	tok3 := f.issue(t, sampleClaims())
	kid3 := kidOf(t, tok3)
	if kid3 == kid2 || kid3 == kid1 {
		t.Fatal("no automatic rotation after retirement")
	}
	// Retired keys are still published (their certificates hold).
	if got := kidsOf(t, mustJWKS(t, f.iss)); !reflect.DeepEqual(got, []string{kid3, kid2, kid1}) {
		t.Errorf("JWKS kids %v", got)
	}
	// Past keys 1 and 2's certificates (retire + validity + margin): they
	// leave the JWKS; key 3 retired too, so a key 4 signs.
	f.clock.Advance(70 * time.Minute)
	got := kidsOf(t, mustJWKS(t, f.iss))
	if len(got) != 2 || got[1] != kid3 || got[0] == kid1 || got[0] == kid2 {
		t.Errorf("JWKS kids %v, want [new, %s]", got, kid3)
	}
	if _, err := ear.VerifyJWKS(tok1, mustJWKS(t, f.iss), f.clock.Now()); ear.Of(err) != ear.UnknownKey {
		t.Errorf("a token of an expired key: %v", err)
	}
	if len(f.ks.Keys()) != 4 {
		t.Errorf("%d keys made, want 4", len(f.ks.Keys()))
	}
}

// TestReplicas: replicas on one store share the CA and pick up each
// other's keys within RefreshInterval.
func TestReplicas(t *testing.T) {
	f := newFixture(t, token.Options{})
	b := f.issuer(t, token.Options{})
	if !b.CA().Equal(f.iss.CA()) {
		t.Fatal("replicas made two CAs")
	}
	kidA, kidB := kidOf(t, f.issue(t, sampleClaims())), kidOfIssuer(t, b)
	if kidA != kidB {
		t.Fatalf("replica b signs with %s, a with %s", kidB, kidA)
	}
	if err := f.iss.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	kidA2 := kidOf(t, f.issue(t, sampleClaims()))
	if kidOfIssuer(t, b) != kidB {
		t.Error("replica b reloaded before RefreshInterval")
	}
	loads := f.ks.Loads()
	f.clock.Advance(token.RefreshInterval)
	if got := kidOfIssuer(t, b); got != kidA2 {
		t.Errorf("replica b signs with %s after refresh, want the new key %s", got, kidA2)
	}
	if f.ks.Loads() != loads+1 {
		t.Errorf("%d store loads for one refresh", f.ks.Loads()-loads)
	}
	if got := kidsOf(t, mustJWKS(t, b)); len(got) != 2 || got[0] != kidA2 {
		t.Errorf("replica b's JWKS %v", got)
	}
}

// TestStoreOutage: while the store fails, an Issuer keeps signing with
// its unretired key; with no usable key it fails (never signs unsigned).
func TestStoreOutage(t *testing.T) {
	f := newFixture(t, token.Options{KeyLifetime: time.Hour})
	kid := kidOf(t, f.issue(t, sampleClaims()))
	outage := fmt.Errorf("db down: %w", store.ErrUnavailable)
	f.ks.SetFail(outage)
	f.clock.Advance(10 * time.Minute)
	if got := kidOf(t, f.issue(t, sampleClaims())); got != kid {
		t.Errorf("signed with %s during the outage", got)
	}
	if _, err := f.iss.JWKS(); err != nil {
		t.Errorf("JWKS during the outage: %v", err)
	}
	f.clock.Advance(time.Hour)
	if _, err := f.iss.Issue(context.Background(), sampleClaims()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Issue with a retired key and no store: %v, want ErrUnavailable", err)
	}
	f.ks.SetFail(nil)
	if got := kidOf(t, f.issue(t, sampleClaims())); got == kid {
		t.Error("no new key after the outage")
	}
	if _, err := token.NewIssuer(context.Background(), func() token.KeyStore {
		ks := tokentest.NewKeyStore()
		ks.SetFail(outage)
		return ks
	}(), token.Options{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("NewIssuer on a failing store: %v", err)
	}
}

// TestOptionsCA: a CA from the operator signs the keys; the stored CA
// secret is neither made nor used, and keys of another CA in the store
// are skipped.
func TestOptionsCA(t *testing.T) {
	f := newFixture(t, token.Options{}) // stores keys of the generated CA
	// Minted from the test's clock, never from today's date.
	from, until := epoch.Add(-time.Hour), epoch.AddDate(10, 0, 0)
	root := testpki.NewRoot(testpki.Options{CommonName: "Operator CA", Key: testpki.ECDSAP384, NotBefore: from, NotAfter: until})
	op, err := token.NewIssuer(context.Background(), f.ks, token.Options{CA: root.Cert, CAKey: root.Key, Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := op.Issue(context.Background(), sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	if _, err := ear.Verify(tok, pool, epoch); err != nil {
		t.Errorf("operator CA: %v", err)
	}
	if _, err := ear.Verify(tok, f.roots, epoch); ear.Of(err) != ear.UntrustedChain {
		t.Errorf("generated CA verified the operator CA's token: %v", err)
	}
	if got := kidsOf(t, mustJWKS(t, op)); len(got) != 1 || got[0] != kidOf(t, tok) {
		t.Errorf("operator issuer publishes %v: keys of another CA leaked", got)
	}
	leaf := root.NewLeaf(testpki.Options{CommonName: "not a CA", Key: testpki.ECDSAP256, NotBefore: from, NotAfter: until})
	if _, err := token.NewIssuer(context.Background(), f.ks, token.Options{CA: leaf.Cert, CAKey: leaf.Key}); err == nil {
		t.Error("a leaf certificate was accepted as the CA")
	}
	if _, err := token.NewIssuer(context.Background(), f.ks, token.Options{CA: root.Cert, CAKey: leaf.Key}); err == nil {
		t.Error("a CA with another key was accepted")
	}
}

// TestConcurrentIssue: many goroutines across a retirement and refreshes
// (go test -race) all get verifying tokens.
func TestConcurrentIssue(t *testing.T) {
	f := newFixture(t, token.Options{KeyLifetime: time.Minute, Validity: time.Minute})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 50; n++ {
				if g == 0 {
					f.clock.Advance(2 * time.Second)
				}
				tok, err := f.iss.Issue(context.Background(), sampleClaims())
				if err == nil {
					_, err = ear.Verify(tok, f.roots, f.clock.Now())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(f.ks.Keys()); n < 2 || n > 4 {
		t.Errorf("%d keys over 100 s of 60 s keys", n)
	}
}

func ed25519Key() (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return pub, priv
}

func kidOf(tb testing.TB, tok string) string {
	tb.Helper()
	hdr, _ := segments(tb, tok)
	return hdr["kid"].(string)
}

func kidOfIssuer(tb testing.TB, iss *token.Issuer) string {
	tb.Helper()
	tok, err := iss.Issue(context.Background(), sampleClaims())
	if err != nil {
		tb.Fatal(err)
	}
	return kidOf(tb, tok)
}

func mustJWKS(tb testing.TB, iss *token.Issuer) []byte {
	tb.Helper()
	b, err := iss.JWKS()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func kidsOf(tb testing.TB, jwks []byte) []string {
	tb.Helper()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KID)
	}
	return out
}

// BenchmarkIssue: one session report (the sample: level 2, a trust
// vector, two failures, a cnf key) per op; "parallel" uses every core.
func BenchmarkIssue(b *testing.B) {
	f := newFixture(b, token.Options{})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.iss.Issue(ctx, sampleClaims()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.iss.Issue(ctx, sampleClaims()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkVerify: a relying party's offline check (chain + signature +
// claims).
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, token.Options{})
	tok := f.issue(b, sampleClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ear.Verify(tok, f.roots, epoch); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDefaultIssuer: with no Issuer configured, iss is derived from the
// report CA, so that replicas sharing the CA sign the same iss.
func TestDefaultIssuer(t *testing.T) {
	ks := tokentest.NewKeyStore()
	var names []string
	for range 2 {
		iss, err := token.NewIssuer(context.Background(), ks, token.Options{Now: func() time.Time { return epoch }, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		c := &ear.Claims{AgentID: "a", Level: 1, Status: "warning"}
		if _, err := iss.Issue(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		if c.Issuer != ear.IssuerOf(iss.CA()) || !strings.HasPrefix(c.Issuer, "urn:vigil:ca:") || iss.IssuerName() != c.Issuer {
			t.Fatalf("iss %q, want %q", c.Issuer, ear.IssuerOf(iss.CA()))
		}
		names = append(names, c.Issuer)
	}
	if names[0] != names[1] {
		t.Fatalf("two replicas: %q and %q", names[0], names[1])
	}
}
