package ear

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	veraison "github.com/veraison/ear"

	"github.com/vigil-attest/vigil/verdict"
)

const (
	// MaxSize bounds a session report (and a JWKS) Verify reads.
	MaxSize = 1 << 20
	// Leeway is the clock skew Verify tolerates on exp, iat and nbf.
	Leeway = 30 * time.Second
	// maxChain bounds the x5c certificates.
	maxChain = 8
)

// Verified is a session report that passed Verify.
type Verified struct {
	// Claims are the report's claims (TrustVector holds the non-zero
	// claims only: EAR omits zeros).
	Claims Claims
	// KID is the signing key's ID (the header's kid).
	KID string
	// Chain is the verified chain, signing certificate first, root last
	// (nil from VerifyJWKS).
	Chain []*x509.Certificate
	// Raw is the whole claims set as decoded JSON.
	Raw map[string]any
	// Token is the session report as verified (a proof's ath hashes it).
	Token string
}

// b64 is base64url without padding, refusing non-zero trailing bits, so
// that each segment has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// header is the JWS protected header Verify reads.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	X5c  []string        `json:"x5c"`
	Crit json.RawMessage `json:"crit"`
}

// jws is a split compact JWS.
type compact struct {
	hdr          header
	signingInput string
	payload      string
	sig          string
}

// Verify checks a session report offline against the service CA (roots):
// the header's alg is ES256, its x5c chain leads to roots at the report's
// iat and is valid now, the signature verifies with the chain's leaf,
// and the report is valid at now (Leeway either side). Failures are
// *Error with a Code (Of).
func Verify(tok string, roots *x509.CertPool, now time.Time) (*Verified, error) {
	c, err := split(tok)
	if err != nil {
		return nil, err
	}
	certs, err := parseX5C(c.hdr.X5c)
	if err != nil {
		return nil, err
	}
	v, t, err := c.open(certs[0].PublicKey)
	if err != nil {
		return nil, err
	}
	if v.Chain, err = verifyChain(certs, roots, t, now); err != nil {
		return nil, err
	}
	if err := t.check(now); err != nil {
		return nil, err
	}
	v.Token = tok
	return v, nil
}

// VerifyJWKS checks a session report against a JWKS (the service's
// /.well-known/jwks.json) instead of the CA: the key is the JWKS key the
// header's kid names (UnknownKey when none: fetch the JWKS again). The
// x5c header is not used. An unusable JWKS is an error without a Code
// (checked after the token's header). To verify many reports, parse the
// JWKS once (ParseJWKS) and use KeySet.Verify.
func VerifyJWKS(tok string, jwks []byte, now time.Time) (*Verified, error) {
	c, err := split(tok)
	if err != nil {
		return nil, err
	}
	ks, err := ParseJWKS(jwks)
	if err != nil {
		return nil, err
	}
	return ks.verify(c, tok, now)
}

// KeySet is a parsed JWKS. It is immutable and safe for concurrent use.
type KeySet struct {
	keys map[string]jwksKey
	ids  []string
}

// jwksKey is a JWKS entry: its public key, or why it cannot sign reports.
type jwksKey struct {
	raw any
	bad error
}

// ParseJWKS parses a JWKS of at most MaxSize bytes (an error without a
// Code when it is not one). Entries without a kid are ignored; an entry
// for another alg or use is kept, and refuses the reports it would verify
// (BadAlg).
func ParseJWKS(jwks []byte) (*KeySet, error) {
	if len(jwks) > MaxSize {
		return nil, fmt.Errorf("the JWKS exceeds %d bytes", MaxSize)
	}
	set, err := jwk.Parse(jwks)
	if err != nil {
		return nil, fmt.Errorf("parsing the JWKS: %w", err)
	}
	ks := &KeySet{keys: map[string]jwksKey{}}
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid := k.KeyID()
		if kid == "" {
			continue
		}
		var e jwksKey
		if a := k.Algorithm().String(); a != "" && a != "ES256" {
			e.bad = fail(BadAlg, "JWKS key %q is for %s", kid, a)
		} else if u := k.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
			e.bad = fail(BadAlg, "JWKS key %q is for use %q", kid, u)
		} else if err := k.Raw(&e.raw); err != nil {
			e.bad = fail(BadAlg, "JWKS key %q: %v", kid, err)
		}
		if _, dup := ks.keys[kid]; !dup {
			ks.ids = append(ks.ids, kid)
			ks.keys[kid] = e
		}
	}
	return ks, nil
}

// KeyIDs are the kids of the set, in its order.
func (s *KeySet) KeyIDs() []string { return append([]string(nil), s.ids...) }

// Verify checks a session report against the set, as VerifyJWKS.
func (s *KeySet) Verify(tok string, now time.Time) (*Verified, error) {
	c, err := split(tok)
	if err != nil {
		return nil, err
	}
	return s.verify(c, tok, now)
}

func (s *KeySet) verify(c *compact, tok string, now time.Time) (*Verified, error) {
	if c.hdr.Kid == "" {
		return nil, fail(UnknownKey, "the header has no kid")
	}
	k, ok := s.keys[c.hdr.Kid]
	if !ok {
		return nil, fail(UnknownKey, "the JWKS has no key %q", c.hdr.Kid)
	}
	if k.bad != nil {
		return nil, k.bad
	}
	v, t, err := c.open(k.raw)
	if err != nil {
		return nil, err
	}
	if err := t.check(now); err != nil {
		return nil, err
	}
	v.Token = tok
	return v, nil
}

// open verifies the signature with key (an ES256 public key) and decodes
// the claims; their times are for the caller to check.
func (c *compact) open(key any) (*Verified, times, error) {
	pub, err := es256Key(key)
	if err != nil {
		return nil, times{}, err
	}
	if err := c.verifySignature(pub); err != nil {
		return nil, times{}, err
	}
	v, t, err := decodeClaims(c.payload)
	if err != nil {
		return nil, times{}, err
	}
	v.KID = c.hdr.Kid
	return v, t, nil
}

// segments splits a compact JWS of at most max bytes into its decoded
// header, its signing input, its payload and signature segments; a
// failure has code c.
func segments(tok string, max int, c Code) (hdr []byte, signingInput, payload, sig string, err error) {
	if len(tok) > max {
		return nil, "", "", "", fail(c, "%d bytes, more than %d", len(tok), max)
	}
	if strings.Count(tok, ".") != 2 {
		return nil, "", "", "", fail(c, "not a compact JWS (three dot-separated segments)")
	}
	h, rest, _ := strings.Cut(tok, ".")
	payload, sig, _ = strings.Cut(rest, ".")
	if hdr, err = b64.DecodeString(h); err != nil {
		return nil, "", "", "", fail(c, "header: %v", err)
	}
	return hdr, tok[:len(h)+1+len(payload)], payload, sig, nil
}

// split decodes the compact JWS's header and checks its alg.
func split(tok string) (*compact, error) {
	hb, in, p, s, err := segments(tok, MaxSize, Malformed)
	if err != nil {
		return nil, err
	}
	c := &compact{signingInput: in, payload: p, sig: s}
	if err := strictJSON(hb, &c.hdr); err != nil {
		return nil, fail(Malformed, "header: %v", err)
	}
	if c.hdr.Crit != nil {
		return nil, fail(Malformed, "header: crit %s is not understood", c.hdr.Crit)
	}
	if c.hdr.Alg != "ES256" {
		return nil, fail(BadAlg, "alg %q, want ES256", c.hdr.Alg)
	}
	return c, nil
}

// strictJSON decodes one JSON object into v: no trailing data.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

func parseX5C(x5c []string) ([]*x509.Certificate, error) {
	if len(x5c) == 0 {
		return nil, fail(Malformed, "header: no x5c")
	}
	if len(x5c) > maxChain {
		return nil, fail(Malformed, "header: %d x5c certificates, more than %d", len(x5c), maxChain)
	}
	certs := make([]*x509.Certificate, len(x5c))
	for i, s := range x5c {
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fail(Malformed, "x5c[%d]: %v", i, err)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fail(Malformed, "x5c[%d]: %v", i, err)
		}
	}
	return certs, nil
}

func es256Key(k any) (*ecdsa.PublicKey, error) {
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fail(BadAlg, "the signer's key is a %T, not ECDSA P-256", k)
	}
	return pub, nil
}

func (c *compact) verifySignature(pub *ecdsa.PublicKey) error {
	sig, err := b64.DecodeString(c.sig)
	if err != nil {
		return fail(BadSignature, "signature: %v", err)
	}
	if len(sig) != es256Size {
		return fail(BadSignature, "signature of %d bytes, want %d (ES256 r‖s)", len(sig), es256Size)
	}
	h := sha256.Sum256([]byte(c.signingInput))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, h[:], r, s) {
		return fail(BadSignature, "the ES256 signature does not verify")
	}
	// One string per token: require the low-S form Vigil signs.
	if s.Cmp(p256HalfN) > 0 {
		return fail(HighS, "the ES256 signature's s is above n/2 (the high-S twin of a valid signature)")
	}
	return nil
}

// verifyChain checks the x5c chain leads to roots at iat, is valid at now,
// and ends in a signing certificate.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, t times, now time.Time) ([]*x509.Certificate, error) {
	if roots == nil {
		return nil, fail(UntrustedChain, "no roots given")
	}
	leaf := certs[0]
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 ||
		len(leaf.ExtKeyUsage) != 0 || len(leaf.UnknownExtKeyUsage) != 0 {
		return nil, fail(UntrustedChain, "certificate %q is not a session report signing certificate (CA, key usage or extended key usage)", leaf.Subject)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   t.iat,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fail(UntrustedChain, "%v", err)
	}
	chain := chains[0]
	for _, c := range chain {
		if now.After(c.NotAfter.Add(Leeway)) {
			return nil, fail(Expired, "certificate %q expired at %v", c.Subject, c.NotAfter)
		}
		if now.Add(Leeway).Before(c.NotBefore) {
			return nil, fail(NotYetValid, "certificate %q is valid from %v", c.Subject, c.NotBefore)
		}
	}
	return chain, nil
}

// times are the report's validity claims.
type times struct {
	iat, exp, nbf time.Time
}

func (t times) check(now time.Time) error {
	if now.After(t.exp.Add(Leeway)) {
		return fail(Expired, "expired at %v", t.exp.UTC())
	}
	if now.Add(Leeway).Before(t.iat) {
		return fail(NotYetValid, "issued at %v, in the future", t.iat.UTC())
	}
	if !t.nbf.IsZero() && now.Add(Leeway).Before(t.nbf) {
		return fail(NotYetValid, "not before %v", t.nbf.UTC())
	}
	if !t.exp.After(t.iat) {
		return fail(Malformed, "exp %v is not after iat %v", t.exp.UTC(), t.iat.UTC())
	}
	return nil
}

// decodeClaims decodes and checks the signed claims set. Claim names
// match exactly (encoding/json's struct decoding would also take
// "VIGIL.LEVEL" for "vigil.level"); EAR's own claims are read by ear.
func decodeClaims(seg string) (*Verified, times, error) {
	var t times
	payload, err := b64.DecodeString(seg)
	if err != nil {
		return nil, t, fail(Malformed, "claims: %v", err)
	}
	var raw map[string]any
	if err := strictJSON(payload, &raw); err != nil {
		return nil, t, fail(Malformed, "claims: %v", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, t, fail(Malformed, "claims: %v", err)
	}
	for _, name := range []string{"iat", "exp", "sub", "eat_profile", "ear.verifier-id", ClaimLevel} {
		if _, ok := top[name]; !ok {
			return nil, t, fail(MissingClaim, "no %s", name)
		}
	}
	var submods map[string]map[string]json.RawMessage
	if err := member(top, "submods", &submods); err != nil {
		return nil, t, err
	}
	if _, ok := submods[SubmodName]["ear.status"]; !ok {
		return nil, t, fail(MissingClaim, "no submods.%s with ear.status", SubmodName)
	}
	var c Claims
	var cnf struct {
		JWK json.RawMessage `json:"jwk"`
	}
	for name, dst := range map[string]any{
		"sub":               &c.AgentID,
		"iss":               &c.Issuer,
		ClaimLevel:          &c.Level,
		ClaimFailures:       &c.Failures,
		ClaimPolicyDigest:   &c.PolicyDigest,
		ClaimContentVersion: &c.ContentVersion,
		ClaimEKSHA256:       &c.EKSHA256,
		ClaimProvenance:     &c.Provenance,
		"cnf":               &cnf,
	} {
		if err := member(top, name, dst); err != nil {
			return nil, t, err
		}
	}
	if c.AgentID == "" {
		return nil, t, fail(MissingClaim, "sub (the agent) is empty")
	}
	if c.Audience, err = audience(top); err != nil {
		return nil, t, err
	}
	if _, ok := top[ClaimEKSHA256]; ok && !IsSHA256Hex(c.EKSHA256) {
		return nil, t, fail(Malformed, "%s %.80q is not 64 lowercase hex digits", ClaimEKSHA256, c.EKSHA256)
	}
	for k, v := range c.Provenance {
		if k == "" || !provenanceTiers[v] {
			return nil, t, fail(Malformed, "%s: %.40q is %.40q, not attested, corroborated or asserted", ClaimProvenance, k, v)
		}
	}
	if t.iat, err = unixTime(top["iat"]); err != nil {
		return nil, t, fail(Malformed, "iat: %v", err)
	}
	if t.exp, err = unixTime(top["exp"]); err != nil {
		return nil, t, fail(Malformed, "exp: %v", err)
	}
	if nbf, ok := top["nbf"]; ok {
		if t.nbf, err = unixTime(nbf); err != nil {
			return nil, t, fail(Malformed, "nbf: %v", err)
		}
	}
	if !verdict.Level(c.Level).Valid() {
		return nil, t, fail(Malformed, "%s %d is not 0–%d", ClaimLevel, c.Level, int(verdict.MaxLevel))
	}
	c.IssuedAt, c.Expiry = t.iat, t.exp
	var ar veraison.AttestationResult
	if err := ar.UnmarshalJSON(payload); err != nil {
		return nil, t, fail(Malformed, "EAR claims: %v", err)
	}
	app := ar.Submods[SubmodName]
	if app == nil || app.Status == nil {
		return nil, t, fail(MissingClaim, "no submods.%s with ear.status", SubmodName)
	}
	if c.Status = veraison.TrustTierToString[*app.Status]; c.Status == "" {
		return nil, t, fail(Malformed, "ear.status %d is not a tier", *app.Status)
	}
	if app.AppraisalPolicyID != nil {
		c.PolicyID = *app.AppraisalPolicyID
	}
	if app.TrustVector != nil {
		for name, v := range app.TrustVector.AsMap() {
			if v != veraison.NoClaim {
				if c.TrustVector == nil {
					c.TrustVector = map[string]int{}
				}
				c.TrustVector[name] = int(v)
			}
		}
	}
	if ar.Nonce != nil {
		if c.Nonce, err = b64.DecodeString(*ar.Nonce); err != nil {
			return nil, t, fail(Malformed, "eat_nonce: %v", err)
		}
	}
	if _, ok := top["cnf"]; ok {
		if c.ReportKey, err = ParsePublicJWK(cnf.JWK); err != nil {
			return nil, t, fail(Malformed, "cnf.jwk: %v", err)
		}
	}
	return &Verified{Claims: c, Raw: raw}, t, nil
}

// member decodes the claim name, when present, into dst: a JSON null or a
// value of another type is Malformed.
func member(top map[string]json.RawMessage, name string, dst any) error {
	v, ok := top[name]
	if !ok {
		return nil
	}
	if string(v) == "null" {
		return fail(Malformed, "%s is null", name)
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fail(Malformed, "%s: %v", name, err)
	}
	return nil
}

// unixTime reads a NumericDate (RFC 7519 §2): a JSON number (not a
// string), here whole seconds.
func unixTime(raw json.RawMessage) (time.Time, error) {
	var f float64
	if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || f < 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("%.40s is not a date in whole seconds", raw)
	}
	return time.Unix(int64(f), 0), nil
}

// MaxAudiences bounds a report's aud.
const MaxAudiences = 16

// audience reads "aud" (RFC 7519 §4.1.3: a string or an array of
// strings), each a non-empty string.
func audience(top map[string]json.RawMessage) ([]string, error) {
	raw, ok := top["aud"]
	if !ok {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil && len(raw) > 0 && raw[0] == '"' {
		if one == "" {
			return nil, fail(Malformed, "aud is empty")
		}
		return []string{one}, nil
	}
	var many []string
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &many) != nil {
		return nil, fail(Malformed, "aud %.40s is neither a string nor an array of strings", raw)
	}
	if len(many) == 0 || len(many) > MaxAudiences {
		return nil, fail(Malformed, "aud has %d entries, want 1–%d", len(many), MaxAudiences)
	}
	for _, a := range many {
		if a == "" {
			return nil, fail(Malformed, "aud has an empty entry")
		}
	}
	return many, nil
}

// es256Size is an ES256 signature's length: r‖s, 32 bytes each (RFC 7518
// §3.4).
const es256Size = 64

// p256HalfN is ⌊n/2⌋ of P-256: s above it is high.
var p256HalfN = new(big.Int).Rsh(elliptic.P256().Params().N, 1)
