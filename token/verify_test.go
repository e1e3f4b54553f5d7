package token_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/token"
)

// forger holds an Issuer under an operator CA whose key the test also
// holds, so that it can mint tokens with any header and claims that do
// (or, by choice, do not) chain to the trusted root.
type forger struct {
	*fixture
	root *testpki.Cert
	// leafKey/leaf: a valid signing certificate of the root (no EKU,
	// digitalSignature) the test signs with.
	leafKey *ecdsa.PrivateKey
	leaf    *x509.Certificate
}

func newForger(tb testing.TB) *forger {
	tb.Helper()
	root := testpki.NewRoot(testpki.Options{CommonName: "Operator CA", Key: testpki.ECDSAP256, NotBefore: epoch.Add(-time.Hour), NotAfter: epoch.Add(24 * 365 * time.Hour)})
	f := newFixture(tb, token.Options{CA: root.Cert, CAKey: root.Key})
	g := &forger{fixture: f, root: root}
	g.leafKey, g.leaf = g.certify(tb, root, x509.KeyUsageDigitalSignature, nil, false)
	return g
}

// certify makes a P-256 certificate issued by parent.
func (g *forger) certify(tb testing.TB, parent *testpki.Cert, ku x509.KeyUsage, eku []x509.ExtKeyUsage, isCA bool) (*ecdsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "forged"},
		NotBefore:             epoch.Add(-time.Hour),
		NotAfter:              epoch.Add(24 * time.Hour),
		KeyUsage:              ku,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, &key.PublicKey, parent.Key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return key, c
}

// claimsOf decodes a genuine token's claims for editing.
func claimsOf(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	_, c := segments(tb, tok)
	return c
}

// headerOf decodes a genuine token's header for editing.
func headerOf(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	h, _ := segments(tb, tok)
	return h
}

func x5cOf(certs ...*x509.Certificate) []any {
	var out []any
	for _, c := range certs {
		out = append(out, base64.StdEncoding.EncodeToString(c.Raw))
	}
	return out
}

func b64json(tb testing.TB, v any) string {
	tb.Helper()
	if s, ok := v.(string); ok { // raw JSON text
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// mint signs ES256 with key, independently of the package (stdlib only).
func mint(tb testing.TB, hdr, claims any, key *ecdsa.PrivateKey) string {
	tb.Helper()
	in := b64json(tb, hdr) + "." + b64json(tb, claims)
	h := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		tb.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(token.ES256Signature(r, s))
}

// forged is a header for the forger's own trusted leaf.
func (g *forger) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "JWT", "kid": "forged", "x5c": x5cOf(g.leaf, g.root.Cert)}
}

func without(m map[string]any, key string) map[string]any {
	c := map[string]any{}
	for k, v := range m {
		if k != key {
			c[k] = v
		}
	}
	return c
}

func with(m map[string]any, key string, v any) map[string]any {
	c := without(m, key)
	c[key] = v
	return c
}

// TestVerifyForgedClaims: tokens signed by a trusted signing certificate
// whose claims are incomplete or ill-typed fail with the exact reason;
// the forger's untouched claims verify (the minting is sound).
func TestVerifyForgedClaims(t *testing.T) {
	g := newForger(t)
	good := claimsOf(t, g.issue(t, sampleClaims()))
	sub := good["submods"].(map[string]any)[token.SubmodName].(map[string]any)
	for _, tc := range []struct {
		name   string
		hdr    any
		claims any
		want   token.Reason
	}{
		{"genuine claims, forger's trusted leaf", g.header(), good, ""},
		{"no iat", g.header(), without(good, "iat"), token.MissingClaim},
		{"no exp", g.header(), without(good, "exp"), token.MissingClaim},
		{"no sub", g.header(), without(good, "sub"), token.MissingClaim},
		{"empty sub", g.header(), with(good, "sub", ""), token.MissingClaim},
		{"no eat_profile", g.header(), without(good, "eat_profile"), token.MissingClaim},
		{"no verifier id", g.header(), without(good, "ear.verifier-id"), token.MissingClaim},
		{"no level", g.header(), without(good, token.ClaimLevel), token.MissingClaim},
		{"no submods", g.header(), without(good, "submods"), token.MissingClaim},
		{"no vigil submod", g.header(), with(good, "submods", map[string]any{"other": sub}), token.MissingClaim},
		{"no ear.status", g.header(), with(good, "submods", map[string]any{token.SubmodName: without(sub, "ear.status")}), token.MissingClaim},
		{"level under another case", g.header(), with(without(good, token.ClaimLevel), "VIGIL.LEVEL", 4), token.MissingClaim},
		{"sub under another case", g.header(), with(without(good, "sub"), "Sub", "agent-7"), token.MissingClaim},
		{"level 5", g.header(), with(good, token.ClaimLevel, 5), token.Malformed},
		{"level 2.5", g.header(), with(good, token.ClaimLevel, 2.5), token.Malformed},
		{"level null", g.header(), with(good, token.ClaimLevel, nil), token.Malformed},
		{"sub a number", g.header(), with(good, "sub", 7), token.Malformed},
		{"level as string", g.header(), with(good, token.ClaimLevel, "2"), token.Malformed},
		{"exp not whole", g.header(), with(good, "exp", 1.5), token.Malformed},
		{"exp as string", g.header(), with(good, "exp", "soon"), token.Malformed},
		{"exp before iat", g.header(), with(good, "exp", good["iat"].(float64)-1), token.Malformed},
		{"exp as numeric string", g.header(), with(good, "exp", "1900000000"), token.Malformed},
		{"iat null", g.header(), with(good, "iat", nil), token.Malformed},
		{"bad status", g.header(), with(good, "submods", map[string]any{token.SubmodName: with(sub, "ear.status", "great")}), token.Malformed},
		{"bad profile", g.header(), with(good, "eat_profile", "tag:evil"), token.Malformed},
		{"bad nonce", g.header(), with(good, "eat_nonce", "!!!!!!!!!!"), token.Malformed},
		{"failures not a list", g.header(), with(good, token.ClaimFailures, "none"), token.Malformed},
		{"private cnf key", g.header(), with(good, "cnf", map[string]any{"jwk": privateJWK(t)}), token.Malformed},
		{"cnf not a JWK", g.header(), with(good, "cnf", map[string]any{"jwk": map[string]any{"kty": "EC"}}), token.Malformed},
		{"EK hash upper case", g.header(), with(good, token.ClaimEKSHA256, strings.ToUpper(sampleEK)), token.Malformed},
		{"EK hash short", g.header(), with(good, token.ClaimEKSHA256, sampleEK[:62]), token.Malformed},
		{"EK hash empty", g.header(), with(good, token.ClaimEKSHA256, ""), token.Malformed},
		{"EK hash a number", g.header(), with(good, token.ClaimEKSHA256, 7), token.Malformed},
		{"EK hash null", g.header(), with(good, token.ClaimEKSHA256, nil), token.Malformed},
		{"no EK hash (software agent)", g.header(), without(good, token.ClaimEKSHA256), ""},
		{"provenance tier outside the enum", g.header(), with(good, token.ClaimProvenance, map[string]any{"secure_boot": "trusted"}), token.Malformed},
		{"provenance not an object", g.header(), with(good, token.ClaimProvenance, "attested"), token.Malformed},
		{"provenance with an empty claim", g.header(), with(good, token.ClaimProvenance, map[string]any{"": "asserted"}), token.Malformed},
		{"provenance", g.header(), with(good, token.ClaimProvenance, map[string]any{"secure_boot": "attested", "lockdown": "asserted"}), ""},
		{"claims not JSON", g.header(), "{not json", token.Malformed},
		{"claims an array", g.header(), "[1,2]", token.Malformed},
		{"trailing data", g.header(), `{"a":1} {"b":2}`, token.Malformed},
		{"nbf in the future", g.header(), with(good, "nbf", float64(epoch.Add(time.Hour).Unix())), token.NotYetValid},
		{"crit header", with(g.header(), "crit", []string{"b64"}), good, token.Malformed},
		{"no x5c", without(g.header(), "x5c"), good, token.Malformed},
		{"x5c not base64", with(g.header(), "x5c", []any{"***"}), good, token.Malformed},
		{"x5c not a certificate", with(g.header(), "x5c", []any{"AAAA"}), good, token.Malformed},
		{"x5c too long", with(g.header(), "x5c", x5cOf(g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf)), good, token.Malformed},
		{"header not JSON", "{", good, token.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, tc.hdr, tc.claims, g.leafKey)
			_, err := token.Verify(tok, g.roots, epoch)
			if got := token.ReasonOf(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("Verify: %v (reason %q), want %q", err, got, tc.want)
			}
		})
	}
}

func privateJWK(tb testing.TB) map[string]any {
	tb.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j, err := token.PublicJWK(&k.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		tb.Fatal(err)
	}
	d, err := k.Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	m["d"] = base64.RawURLEncoding.EncodeToString(d)
	return m
}

// TestVerifyAttacks: the attacks of a party without the service's keys,
// each with its exact reason, against Verify and (where the JWKS applies)
// VerifyJWKS.
func TestVerifyAttacks(t *testing.T) {
	g := newForger(t)
	genuine := g.issue(t, sampleClaims())
	jwks := mustJWKS(t, g.iss)
	hdr, claims := headerOf(t, genuine), claimsOf(t, genuine)
	parts := strings.Split(genuine, ".")
	leaf, err := x509.ParseCertificate(mustB64Std(t, hdr["x5c"].([]any)[0].(string)))
	if err != nil {
		t.Fatal(err)
	}

	// Another Vigil service (another CA) issues a perfectly good token.
	other := newFixture(t, token.Options{})
	foreign := other.issue(t, sampleClaims())

	// The attacker's own self-signed CA and a leaf under it.
	evilRoot := testpki.NewRoot(testpki.Options{CommonName: "Evil CA", Key: testpki.ECDSAP256})
	evilKey, evilLeaf := g.certify(t, evilRoot, x509.KeyUsageDigitalSignature, nil, false)
	// A TLS server certificate and a sub-CA of the trusted root, whose
	// keys the attacker holds (say, a web server's key).
	tlsKey, tlsLeaf := g.certify(t, g.root, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false)
	caKey, subCA := g.certify(t, g.root, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign, nil, true)
	raised := with(claims, token.ClaimLevel, 4)

	hs256 := func(secret []byte) string {
		h := with(hdr, "alg", "HS256")
		in := b64json(t, h) + "." + parts[1]
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwkJSON, _ := token.PublicJWK(leaf.PublicKey)

	derSig := func() string { // an ASN.1 DER signature (what some libraries emit)
		in := parts[0] + "." + parts[1]
		h := sha256.Sum256([]byte(in))
		sig, _ := ecdsa.SignASN1(rand.Reader, g.leafKey, h[:])
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}

	for _, tc := range []struct {
		name      string
		tok       string
		want      token.Reason
		wantJWKS  token.Reason // "" = same as want; "-" = not applicable
		verifyNow time.Time
	}{
		{name: "genuine", tok: genuine, want: ""},
		{name: "alg none", tok: b64json(t, with(hdr, "alg", "none")) + "." + parts[1] + ".", want: token.BadAlg},
		{name: "alg none, no signature segment", tok: b64json(t, with(hdr, "alg", "none")) + "." + parts[1], want: token.Malformed},
		{name: "HS256 keyed with the leaf's public key PEM", tok: hs256(pubPEM), want: token.BadAlg},
		{name: "HS256 keyed with the leaf's public key DER", tok: hs256(pubDER), want: token.BadAlg},
		{name: "HS256 keyed with the JWK", tok: hs256(jwkJSON), want: token.BadAlg},
		{name: "alg missing", tok: b64json(t, without(hdr, "alg")) + "." + parts[1] + "." + parts[2], want: token.BadAlg},
		{name: "alg ES384", tok: b64json(t, with(hdr, "alg", "ES384")) + "." + parts[1] + "." + parts[2], want: token.BadAlg},
		{name: "alg RS256", tok: b64json(t, with(hdr, "alg", "RS256")) + "." + parts[1] + "." + parts[2], want: token.BadAlg},
		{name: "alg es256 (case)", tok: b64json(t, with(hdr, "alg", "es256")) + "." + parts[1] + "." + parts[2], want: token.BadAlg},
		{name: "level raised, signature kept", tok: parts[0] + "." + b64json(t, raised) + "." + parts[2], want: token.BadSignature},
		{name: "agent changed, signature kept", tok: parts[0] + "." + b64json(t, with(claims, "sub", "agent-8")) + "." + parts[2], want: token.BadSignature},
		{name: "exp extended, signature kept", tok: parts[0] + "." + b64json(t, with(claims, "exp", claims["exp"].(float64)+3600)) + "." + parts[2], want: token.BadSignature},
		{name: "kid changed, signature kept", tok: b64json(t, with(hdr, "kid", "other")) + "." + parts[1] + "." + parts[2], want: token.BadSignature, wantJWKS: token.UnknownKey},
		{name: "signature from another token", tok: parts[0] + "." + parts[1] + "." + strings.Split(g.issue(t, &token.Claims{AgentID: "agent-9", Status: "warning", Level: 1}), ".")[2], want: token.BadSignature},
		{name: "DER signature", tok: derSig(), want: token.BadSignature},
		{name: "empty signature", tok: parts[0] + "." + parts[1] + ".", want: token.BadSignature},
		{name: "another CA's token", tok: foreign, want: token.UntrustedChain, wantJWKS: token.UnknownKey},
		{name: "level raised, re-signed under the attacker's CA", tok: mint(t, with(hdr, "x5c", x5cOf(evilLeaf, evilRoot.Cert)), raised, evilKey), want: token.UntrustedChain, wantJWKS: token.BadSignature},
		{name: "attacker's leaf presented with the trusted CA", tok: mint(t, with(hdr, "x5c", x5cOf(evilLeaf, g.root.Cert)), raised, evilKey), want: token.UntrustedChain, wantJWKS: token.BadSignature},
		{name: "attacker's key, the genuine x5c (swapped leaf)", tok: mint(t, hdr, raised, evilKey), want: token.BadSignature},
		{name: "x5c order swapped (CA first)", tok: mint(t, with(hdr, "x5c", []any{hdr["x5c"].([]any)[1], hdr["x5c"].([]any)[0]}), claims, g.leafKey), want: token.BadSignature},
		{name: "TLS server certificate of the trusted root", tok: mint(t, with(hdr, "x5c", x5cOf(tlsLeaf, g.root.Cert)), raised, tlsKey), want: token.UntrustedChain, wantJWKS: token.BadSignature},
		{name: "sub-CA of the trusted root signs directly", tok: mint(t, with(hdr, "x5c", x5cOf(subCA, g.root.Cert)), raised, caKey), want: token.UntrustedChain, wantJWKS: token.BadSignature},
		{name: "expired", tok: genuine, want: token.Expired, verifyNow: epoch.Add(token.DefaultValidity + token.Leeway + time.Second)},
		{name: "within the leeway after exp", tok: genuine, want: "", verifyNow: epoch.Add(token.DefaultValidity + token.Leeway)},
		{name: "issued in the future", tok: genuine, want: token.NotYetValid, verifyNow: epoch.Add(-token.Leeway - time.Second)},
		{name: "long after: certificate expired too", tok: genuine, want: token.Expired, wantJWKS: token.Expired, verifyNow: epoch.Add(30 * 24 * time.Hour)},
		{name: "two segments", tok: parts[0] + "." + parts[1], want: token.Malformed},
		{name: "four segments", tok: genuine + ".x", want: token.Malformed},
		{name: "JSON serialization", tok: `{"payload":"` + parts[1] + `","signatures":[]}`, want: token.Malformed},
		{name: "padded base64", tok: parts[0] + "=." + parts[1] + "." + parts[2], want: token.Malformed},
		{name: "empty", tok: "", want: token.Malformed},
		{name: "too large", tok: parts[0] + "." + strings.Repeat("A", token.MaxSize) + "." + parts[2], want: token.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.verifyNow
			if now.IsZero() {
				now = epoch
			}
			_, err := token.Verify(tc.tok, g.roots, now)
			if got := token.ReasonOf(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("Verify: %v (reason %q), want %q", err, got, tc.want)
			}
			want := tc.wantJWKS
			if want == "" {
				want = tc.want
			}
			_, err = token.VerifyJWKS(tc.tok, jwks, now)
			if got := token.ReasonOf(err); got != want || (want == "") != (err == nil) {
				t.Errorf("VerifyJWKS: %v (reason %q), want %q", err, got, want)
			}
		})
	}
	if _, err := token.Verify(genuine, nil, epoch); token.ReasonOf(err) != token.UntrustedChain {
		t.Errorf("nil roots (never the system pool): %v", err)
	}
	if _, err := token.Verify(genuine, x509.NewCertPool(), epoch); token.ReasonOf(err) != token.UntrustedChain {
		t.Errorf("empty roots: %v", err)
	}
}

// TestVerifyFlippedBytes changes every character of a genuine token in
// turn: a changed claims or signature character is always bad-signature;
// a changed header character is malformed, bad-alg or bad-signature (and
// never accepted).
func TestVerifyFlippedBytes(t *testing.T) {
	f := newFixture(t, token.Options{})
	tok := f.issue(t, sampleClaims())
	jwks := mustJWKS(t, f.iss)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	seg := 0
	counts := map[token.Reason]int{}
	for i := 0; i < len(tok); i++ {
		if tok[i] == '.' {
			seg++
			for _, r := range []string{"", "x", ".."} { // a dot removed, replaced, doubled
				if _, err := token.Verify(tok[:i]+r+tok[i+1:], f.roots, epoch); token.ReasonOf(err) != token.Malformed {
					t.Errorf("dot %d → %q: %v", i, r, err)
				}
			}
			continue
		}
		j := strings.IndexByte(alphabet, tok[i])
		flipped := tok[:i] + string(alphabet[(j+1)%64]) + tok[i+1:]
		_, err := token.Verify(flipped, f.roots, epoch)
		got := token.ReasonOf(err)
		counts[got]++
		switch {
		case seg > 0 && got != token.BadSignature:
			t.Errorf("segment %d byte %d: %v, want bad-signature", seg, i, err)
		case seg == 0 && got != token.Malformed && got != token.BadAlg && got != token.BadSignature:
			t.Errorf("header byte %d: %v", i, err)
		}
		if seg > 0 {
			if _, err := token.VerifyJWKS(flipped, jwks, epoch); token.ReasonOf(err) != token.BadSignature {
				t.Errorf("JWKS: segment %d byte %d: %v", seg, i, err)
			}
		}
	}
	t.Logf("%d flips: %v", len(tok)-2, counts)
}

// TestHighS: every token the Issuer signs has a low s (≤ n/2), and the
// high-S twin of a valid token — (r, n−s), which ECDSA itself accepts —
// is refused with high-s by Verify and VerifyJWKS: one token string per
// signature.
func TestHighS(t *testing.T) {
	f := newFixture(t, token.Options{})
	jwks := mustJWKS(t, f.iss)
	half := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	// 64 tokens: were s not normalised, all low by chance has odds 2⁻⁶⁴.
	var tok string
	for i := 0; i < 64; i++ {
		tok = f.issue(t, sampleClaims())
		if _, s := sigRS(t, tok); s.Cmp(half) > 0 {
			t.Fatalf("token %d has a high s: %x", i, s)
		}
	}
	if _, err := token.Verify(tok, f.roots, epoch); err != nil {
		t.Fatal(err)
	}

	// The attacker re-encodes a genuine token: same header and claims,
	// signature (r, n−s).
	twin := highSTwin(t, tok)
	dot := strings.LastIndexByte(tok, '.')
	if twin[:dot] != tok[:dot] || twin == tok {
		t.Fatal("the twin is not the same signed bytes with another signature")
	}
	// It is a real twin: plain ECDSA verifies it with the signing key.
	v, err := token.Verify(tok, f.roots, epoch)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(tok[:dot]))
	r, twinS := sigRS(t, twin)
	if !ecdsa.Verify(v.Chain[0].PublicKey.(*ecdsa.PublicKey), h[:], r, twinS) {
		t.Fatal("the twin does not verify under plain ECDSA")
	}
	if _, err := token.Verify(twin, f.roots, epoch); token.ReasonOf(err) != token.HighS {
		t.Errorf("Verify(high-S twin) = %v, want %s", err, token.HighS)
	}
	if _, err := token.VerifyJWKS(twin, jwks, epoch); token.ReasonOf(err) != token.HighS {
		t.Errorf("VerifyJWKS(high-S twin) = %v, want %s", err, token.HighS)
	}
	// A high s that does not verify is a bad signature, not high-s.
	forged := highSTwin(t, mint(t, headerOf(t, tok), with(claimsOf(t, tok), token.ClaimLevel, 4), ecdsaKey(t)))
	if _, err := token.Verify(forged, f.roots, epoch); token.ReasonOf(err) != token.BadSignature {
		t.Errorf("Verify(forged high-S) = %v, want %s", err, token.BadSignature)
	}
}

// sigRS is a token's signature (r, s).
func sigRS(tb testing.TB, tok string) (r, s *big.Int) {
	tb.Helper()
	sig, err := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
	if err != nil || len(sig) != 64 {
		tb.Fatalf("signature %v (%d bytes)", err, len(sig))
	}
	return new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
}

func ecdsaKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestVerifyJWKSKeys: a JWKS without the kid, or whose key is not an
// ES256 key, refuses; an unusable JWKS is an error without a reason.
func TestVerifyJWKSKeys(t *testing.T) {
	f := newFixture(t, token.Options{})
	tok := f.issue(t, sampleClaims())
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(mustJWKS(t, f.iss), &set); err != nil {
		t.Fatal(err)
	}
	k := set.Keys[0]
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	j384, _ := token.PublicJWK(&p384.PublicKey)
	var m384 map[string]any
	_ = json.Unmarshal(j384, &m384)
	m384["kid"] = k["kid"]
	mk := func(keys ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	for _, tc := range []struct {
		name string
		jwks []byte
		want token.Reason
	}{
		{"the key", mk(k), ""},
		{"empty set", mk(), token.UnknownKey},
		{"other kid", mk(with(k, "kid", "nope")), token.UnknownKey},
		{"alg RS256", mk(with(k, "alg", "RS256")), token.BadAlg},
		{"use enc", mk(with(k, "use", "enc")), token.BadAlg},
		{"P-384 key under the kid", mk(m384), token.BadAlg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := token.VerifyJWKS(tok, tc.jwks, epoch)
			if got := token.ReasonOf(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("%v (reason %q), want %q", err, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "{", `{"keys":5}`} {
		if _, err := token.VerifyJWKS(tok, []byte(bad), epoch); err == nil || token.ReasonOf(err) != "" {
			t.Errorf("JWKS %q: %v", bad, err)
		}
	}
	noKid := b64json(t, without(headerOf(t, tok), "kid")) + tok[strings.IndexByte(tok, '.'):]
	if _, err := token.VerifyJWKS(noKid, mk(k), epoch); token.ReasonOf(err) != token.UnknownKey {
		t.Errorf("no kid: %v", err)
	}
}

func mustB64Std(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestReasons(t *testing.T) {
	all := token.AllReasons()
	seen := map[token.Reason]bool{}
	for i, r := range all {
		if seen[r] || (i > 0 && all[i-1] >= r) {
			t.Errorf("AllReasons not sorted and unique at %q", r)
		}
		seen[r] = true
	}
	if token.ReasonOf(nil) != "" || token.ReasonOf(errFoo) != "" {
		t.Error("ReasonOf of a non-token error")
	}
}

var errFoo = x509.ErrUnsupportedAlgorithm
