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

	"github.com/vigil-attest/vigil/ear"
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
	sub := good["submods"].(map[string]any)[ear.SubmodName].(map[string]any)
	for _, tc := range []struct {
		name   string
		hdr    any
		claims any
		want   ear.Code
	}{
		{"genuine claims, forger's trusted leaf", g.header(), good, ""},
		{"no iat", g.header(), without(good, "iat"), ear.MissingClaim},
		{"no exp", g.header(), without(good, "exp"), ear.MissingClaim},
		{"no sub", g.header(), without(good, "sub"), ear.MissingClaim},
		{"empty sub", g.header(), with(good, "sub", ""), ear.MissingClaim},
		{"no eat_profile", g.header(), without(good, "eat_profile"), ear.MissingClaim},
		{"no verifier id", g.header(), without(good, "ear.verifier-id"), ear.MissingClaim},
		{"no level", g.header(), without(good, ear.ClaimLevel), ear.MissingClaim},
		{"no submods", g.header(), without(good, "submods"), ear.MissingClaim},
		{"no vigil submod", g.header(), with(good, "submods", map[string]any{"other": sub}), ear.MissingClaim},
		{"no ear.status", g.header(), with(good, "submods", map[string]any{ear.SubmodName: without(sub, "ear.status")}), ear.MissingClaim},
		{"level under another case", g.header(), with(without(good, ear.ClaimLevel), "VIGIL.LEVEL", 4), ear.MissingClaim},
		{"sub under another case", g.header(), with(without(good, "sub"), "Sub", "agent-7"), ear.MissingClaim},
		{"level 5", g.header(), with(good, ear.ClaimLevel, 5), ear.Malformed},
		{"level 2.5", g.header(), with(good, ear.ClaimLevel, 2.5), ear.Malformed},
		{"level null", g.header(), with(good, ear.ClaimLevel, nil), ear.Malformed},
		{"sub a number", g.header(), with(good, "sub", 7), ear.Malformed},
		{"level as string", g.header(), with(good, ear.ClaimLevel, "2"), ear.Malformed},
		{"exp not whole", g.header(), with(good, "exp", 1.5), ear.Malformed},
		{"exp as string", g.header(), with(good, "exp", "soon"), ear.Malformed},
		{"exp before iat", g.header(), with(good, "exp", good["iat"].(float64)-1), ear.Malformed},
		{"exp as numeric string", g.header(), with(good, "exp", "1900000000"), ear.Malformed},
		{"iat null", g.header(), with(good, "iat", nil), ear.Malformed},
		{"bad status", g.header(), with(good, "submods", map[string]any{ear.SubmodName: with(sub, "ear.status", "great")}), ear.Malformed},
		{"bad profile", g.header(), with(good, "eat_profile", "tag:evil"), ear.Malformed},
		{"bad nonce", g.header(), with(good, "eat_nonce", "!!!!!!!!!!"), ear.Malformed},
		{"failures not a list", g.header(), with(good, ear.ClaimFailures, "none"), ear.Malformed},
		{"private cnf key", g.header(), with(good, "cnf", map[string]any{"jwk": privateJWK(t)}), ear.Malformed},
		{"cnf not a JWK", g.header(), with(good, "cnf", map[string]any{"jwk": map[string]any{"kty": "EC"}}), ear.Malformed},
		{"EK hash upper case", g.header(), with(good, ear.ClaimEKSHA256, strings.ToUpper(sampleEK)), ear.Malformed},
		{"EK hash short", g.header(), with(good, ear.ClaimEKSHA256, sampleEK[:62]), ear.Malformed},
		{"EK hash empty", g.header(), with(good, ear.ClaimEKSHA256, ""), ear.Malformed},
		{"EK hash a number", g.header(), with(good, ear.ClaimEKSHA256, 7), ear.Malformed},
		{"EK hash null", g.header(), with(good, ear.ClaimEKSHA256, nil), ear.Malformed},
		{"no EK hash (software agent)", g.header(), without(good, ear.ClaimEKSHA256), ""},
		{"provenance tier outside the enum", g.header(), with(good, ear.ClaimProvenance, map[string]any{"secure_boot": "trusted"}), ear.Malformed},
		{"provenance not an object", g.header(), with(good, ear.ClaimProvenance, "attested"), ear.Malformed},
		{"provenance with an empty claim", g.header(), with(good, ear.ClaimProvenance, map[string]any{"": "asserted"}), ear.Malformed},
		{"provenance", g.header(), with(good, ear.ClaimProvenance, map[string]any{"secure_boot": "attested", "lockdown": "asserted"}), ""},
		{"claims not JSON", g.header(), "{not json", ear.Malformed},
		{"claims an array", g.header(), "[1,2]", ear.Malformed},
		{"trailing data", g.header(), `{"a":1} {"b":2}`, ear.Malformed},
		{"nbf in the future", g.header(), with(good, "nbf", float64(epoch.Add(time.Hour).Unix())), ear.NotYetValid},
		{"crit header", with(g.header(), "crit", []string{"b64"}), good, ear.Malformed},
		{"no x5c", without(g.header(), "x5c"), good, ear.Malformed},
		{"x5c not base64", with(g.header(), "x5c", []any{"***"}), good, ear.Malformed},
		{"x5c not a certificate", with(g.header(), "x5c", []any{"AAAA"}), good, ear.Malformed},
		{"x5c too long", with(g.header(), "x5c", x5cOf(g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf, g.leaf)), good, ear.Malformed},
		{"header not JSON", "{", good, ear.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, tc.hdr, tc.claims, g.leafKey)
			_, err := ear.Verify(tok, g.roots, epoch)
			if got := ear.Of(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("Verify: %v (reason %q), want %q", err, got, tc.want)
			}
		})
	}
}

func privateJWK(tb testing.TB) map[string]any {
	tb.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j, err := ear.PublicJWK(&k.PublicKey)
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
	raised := with(claims, ear.ClaimLevel, 4)

	hs256 := func(secret []byte) string {
		h := with(hdr, "alg", "HS256")
		in := b64json(t, h) + "." + parts[1]
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwkJSON, _ := ear.PublicJWK(leaf.PublicKey)

	derSig := func() string { // an ASN.1 DER signature (what some libraries emit)
		in := parts[0] + "." + parts[1]
		h := sha256.Sum256([]byte(in))
		sig, _ := ecdsa.SignASN1(rand.Reader, g.leafKey, h[:])
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}

	for _, tc := range []struct {
		name      string
		tok       string
		want      ear.Code
		wantJWKS  ear.Code // "" = same as want; "-" = not applicable
		verifyNow time.Time
	}{
		{name: "genuine", tok: genuine, want: ""},
		{name: "alg none", tok: b64json(t, with(hdr, "alg", "none")) + "." + parts[1] + ".", want: ear.BadAlg},
		{name: "alg none, no signature segment", tok: b64json(t, with(hdr, "alg", "none")) + "." + parts[1], want: ear.Malformed},
		{name: "HS256 keyed with the leaf's public key PEM", tok: hs256(pubPEM), want: ear.BadAlg},
		{name: "HS256 keyed with the leaf's public key DER", tok: hs256(pubDER), want: ear.BadAlg},
		{name: "HS256 keyed with the JWK", tok: hs256(jwkJSON), want: ear.BadAlg},
		{name: "alg missing", tok: b64json(t, without(hdr, "alg")) + "." + parts[1] + "." + parts[2], want: ear.BadAlg},
		{name: "alg ES384", tok: b64json(t, with(hdr, "alg", "ES384")) + "." + parts[1] + "." + parts[2], want: ear.BadAlg},
		{name: "alg RS256", tok: b64json(t, with(hdr, "alg", "RS256")) + "." + parts[1] + "." + parts[2], want: ear.BadAlg},
		{name: "alg es256 (case)", tok: b64json(t, with(hdr, "alg", "es256")) + "." + parts[1] + "." + parts[2], want: ear.BadAlg},
		{name: "level raised, signature kept", tok: parts[0] + "." + b64json(t, raised) + "." + parts[2], want: ear.BadSignature},
		{name: "agent changed, signature kept", tok: parts[0] + "." + b64json(t, with(claims, "sub", "agent-8")) + "." + parts[2], want: ear.BadSignature},
		{name: "exp extended, signature kept", tok: parts[0] + "." + b64json(t, with(claims, "exp", claims["exp"].(float64)+3600)) + "." + parts[2], want: ear.BadSignature},
		{name: "kid changed, signature kept", tok: b64json(t, with(hdr, "kid", "other")) + "." + parts[1] + "." + parts[2], want: ear.BadSignature, wantJWKS: ear.UnknownKey},
		{name: "signature from another token", tok: parts[0] + "." + parts[1] + "." + strings.Split(g.issue(t, &ear.Claims{AgentID: "agent-9", Status: "warning", Level: 1}), ".")[2], want: ear.BadSignature},
		{name: "DER signature", tok: derSig(), want: ear.BadSignature},
		{name: "empty signature", tok: parts[0] + "." + parts[1] + ".", want: ear.BadSignature},
		{name: "another CA's token", tok: foreign, want: ear.UntrustedChain, wantJWKS: ear.UnknownKey},
		{name: "level raised, re-signed under the attacker's CA", tok: mint(t, with(hdr, "x5c", x5cOf(evilLeaf, evilRoot.Cert)), raised, evilKey), want: ear.UntrustedChain, wantJWKS: ear.BadSignature},
		{name: "attacker's leaf presented with the trusted CA", tok: mint(t, with(hdr, "x5c", x5cOf(evilLeaf, g.root.Cert)), raised, evilKey), want: ear.UntrustedChain, wantJWKS: ear.BadSignature},
		{name: "attacker's key, the genuine x5c (swapped leaf)", tok: mint(t, hdr, raised, evilKey), want: ear.BadSignature},
		{name: "x5c order swapped (CA first)", tok: mint(t, with(hdr, "x5c", []any{hdr["x5c"].([]any)[1], hdr["x5c"].([]any)[0]}), claims, g.leafKey), want: ear.BadSignature},
		{name: "TLS server certificate of the trusted root", tok: mint(t, with(hdr, "x5c", x5cOf(tlsLeaf, g.root.Cert)), raised, tlsKey), want: ear.UntrustedChain, wantJWKS: ear.BadSignature},
		{name: "sub-CA of the trusted root signs directly", tok: mint(t, with(hdr, "x5c", x5cOf(subCA, g.root.Cert)), raised, caKey), want: ear.UntrustedChain, wantJWKS: ear.BadSignature},
		{name: "expired", tok: genuine, want: ear.Expired, verifyNow: epoch.Add(token.DefaultValidity + ear.Leeway + time.Second)},
		{name: "within the leeway after exp", tok: genuine, want: "", verifyNow: epoch.Add(token.DefaultValidity + ear.Leeway)},
		{name: "issued in the future", tok: genuine, want: ear.NotYetValid, verifyNow: epoch.Add(-ear.Leeway - time.Second)},
		{name: "long after: certificate expired too", tok: genuine, want: ear.Expired, wantJWKS: ear.Expired, verifyNow: epoch.Add(30 * 24 * time.Hour)},
		{name: "two segments", tok: parts[0] + "." + parts[1], want: ear.Malformed},
		{name: "four segments", tok: genuine + ".x", want: ear.Malformed},
		{name: "JSON serialization", tok: `{"payload":"` + parts[1] + `","signatures":[]}`, want: ear.Malformed},
		{name: "padded base64", tok: parts[0] + "=." + parts[1] + "." + parts[2], want: ear.Malformed},
		{name: "empty", tok: "", want: ear.Malformed},
		{name: "too large", tok: parts[0] + "." + strings.Repeat("A", ear.MaxSize) + "." + parts[2], want: ear.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.verifyNow
			if now.IsZero() {
				now = epoch
			}
			_, err := ear.Verify(tc.tok, g.roots, now)
			if got := ear.Of(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("Verify: %v (reason %q), want %q", err, got, tc.want)
			}
			want := tc.wantJWKS
			if want == "" {
				want = tc.want
			}
			_, err = ear.VerifyJWKS(tc.tok, jwks, now)
			if got := ear.Of(err); got != want || (want == "") != (err == nil) {
				t.Errorf("VerifyJWKS: %v (reason %q), want %q", err, got, want)
			}
		})
	}
	if _, err := ear.Verify(genuine, nil, epoch); ear.Of(err) != ear.UntrustedChain {
		t.Errorf("nil roots (never the system pool): %v", err)
	}
	if _, err := ear.Verify(genuine, x509.NewCertPool(), epoch); ear.Of(err) != ear.UntrustedChain {
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
	counts := map[ear.Code]int{}
	for i := 0; i < len(tok); i++ {
		if tok[i] == '.' {
			seg++
			for _, r := range []string{"", "x", ".."} { // a dot removed, replaced, doubled
				if _, err := ear.Verify(tok[:i]+r+tok[i+1:], f.roots, epoch); ear.Of(err) != ear.Malformed {
					t.Errorf("dot %d → %q: %v", i, r, err)
				}
			}
			continue
		}
		j := strings.IndexByte(alphabet, tok[i])
		flipped := tok[:i] + string(alphabet[(j+1)%64]) + tok[i+1:]
		_, err := ear.Verify(flipped, f.roots, epoch)
		got := ear.Of(err)
		counts[got]++
		switch {
		case seg > 0 && got != ear.BadSignature:
			t.Errorf("segment %d byte %d: %v, want bad-signature", seg, i, err)
		case seg == 0 && got != ear.Malformed && got != ear.BadAlg && got != ear.BadSignature:
			t.Errorf("header byte %d: %v", i, err)
		}
		if seg > 0 {
			if _, err := ear.VerifyJWKS(flipped, jwks, epoch); ear.Of(err) != ear.BadSignature {
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
	if _, err := ear.Verify(tok, f.roots, epoch); err != nil {
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
	v, err := ear.Verify(tok, f.roots, epoch)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(tok[:dot]))
	r, twinS := sigRS(t, twin)
	if !ecdsa.Verify(v.Chain[0].PublicKey.(*ecdsa.PublicKey), h[:], r, twinS) {
		t.Fatal("the twin does not verify under plain ECDSA")
	}
	if _, err := ear.Verify(twin, f.roots, epoch); ear.Of(err) != ear.HighS {
		t.Errorf("Verify(high-S twin) = %v, want %s", err, ear.HighS)
	}
	if _, err := ear.VerifyJWKS(twin, jwks, epoch); ear.Of(err) != ear.HighS {
		t.Errorf("VerifyJWKS(high-S twin) = %v, want %s", err, ear.HighS)
	}
	// A high s that does not verify is a bad signature, not high-s.
	forged := highSTwin(t, mint(t, headerOf(t, tok), with(claimsOf(t, tok), ear.ClaimLevel, 4), ecdsaKey(t)))
	if _, err := ear.Verify(forged, f.roots, epoch); ear.Of(err) != ear.BadSignature {
		t.Errorf("Verify(forged high-S) = %v, want %s", err, ear.BadSignature)
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
	j384, _ := ear.PublicJWK(&p384.PublicKey)
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
		want ear.Code
	}{
		{"the key", mk(k), ""},
		{"empty set", mk(), ear.UnknownKey},
		{"other kid", mk(with(k, "kid", "nope")), ear.UnknownKey},
		{"alg RS256", mk(with(k, "alg", "RS256")), ear.BadAlg},
		{"use enc", mk(with(k, "use", "enc")), ear.BadAlg},
		{"P-384 key under the kid", mk(m384), ear.BadAlg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ear.VerifyJWKS(tok, tc.jwks, epoch)
			if got := ear.Of(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Errorf("%v (reason %q), want %q", err, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "{", `{"keys":5}`} {
		if _, err := ear.VerifyJWKS(tok, []byte(bad), epoch); err == nil || ear.Of(err) != "" {
			t.Errorf("JWKS %q: %v", bad, err)
		}
	}
	noKid := b64json(t, without(headerOf(t, tok), "kid")) + tok[strings.IndexByte(tok, '.'):]
	if _, err := ear.VerifyJWKS(noKid, mk(k), epoch); ear.Of(err) != ear.UnknownKey {
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
