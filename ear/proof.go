package ear

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// The proof of possession (docs/session-report.md, "Proof of
// possession"): an RFC 9449 (DPoP)-shaped compact JWS whose protected
// header is exactly {"alg", "typ": ProofType, "jwk": the report key} and
// whose claims are exactly aud, iat, jti, ath and, when present, nonce,
// htm and htu. The host's enclave signs it with the report key; the
// relying party checks it against the session report it accompanies.
const (
	// ProofType is a proof's typ. Nothing else the report key signs is a
	// JWS of this type: evidence and key proofs are SHA-256 over a
	// NUL-labelled message (docs/evidence.md, "Domain separation").
	ProofType = "vigil-pop+jwt"
	// MaxProofSize bounds a proof VerifyProof reads (an RSA-4096 jwk and
	// long URLs fit well within it).
	MaxProofSize = 16 << 10
	// DefaultProofMaxAge is how old a proof's iat may be by default.
	DefaultProofMaxAge = 60 * time.Second
	// DefaultProofMaxSkew is how far in the future a proof's iat may be
	// by default (the host's clock running ahead).
	DefaultProofMaxSkew = 5 * time.Second
	// maxJTI bounds a proof's jti.
	maxJTI = 128
	// minRSABits and maxRSABits bound an RS256 proof key.
	minRSABits, maxRSABits = 2048, 8192
)

// ProofClaims are a proof's claims.
type ProofClaims struct {
	// Audience is "aud": the relying party the proof is for.
	Audience string `json:"aud"`
	// Method and URL are "htm" and "htu" (RFC 9449 §4.2) when the proof
	// is bound to an HTTP request: its method and its URL without query
	// and fragment. Both or neither.
	Method string `json:"htm,omitempty"`
	URL    string `json:"htu,omitempty"`
	// IssuedAt is "iat", in Unix seconds.
	IssuedAt int64 `json:"iat"`
	// Nonce is "nonce": the relying party's nonce, when it gave one.
	Nonce string `json:"nonce,omitempty"`
	// ID is "jti": unique per proof (the replay cache's key, with the
	// key's thumbprint).
	ID string `json:"jti"`
	// ReportHash is "ath": ReportHash of the session report the proof
	// accompanies.
	ReportHash string `json:"ath"`
}

// Proof is a proof whose signature verified with the key in its header.
type Proof struct {
	Claims ProofClaims
	// Alg is the header's alg: "ES256" or "RS256".
	Alg string
	// Key is the header's jwk; Thumbprint its RFC 7638 thumbprint.
	Key        crypto.PublicKey
	Thumbprint string
}

// ProofExpect is what the relying party requires of a proof.
type ProofExpect struct {
	// Audience is the relying party's name: the proof's aud must equal
	// it (required).
	Audience string
	// Nonce, when set, is the nonce the relying party gave the client:
	// the proof's nonce must equal it. Empty: the proof is fresh by its
	// iat and the replay cache alone, and its nonce is not read.
	Nonce string
	// Method and URL, when set, are the request's: the proof's htm must
	// equal Method, and its htu URL, both without query and fragment
	// (scheme and host compared case-insensitively, default ports
	// dropped). When both are empty the proof must carry neither.
	Method string
	URL    string
	// Now is the time of the check (required).
	Now time.Time
	// MaxAge bounds how old iat may be (default DefaultProofMaxAge), and
	// MaxSkew how far in the future (default DefaultProofMaxSkew).
	MaxAge  time.Duration
	MaxSkew time.Duration
	// RequireReportAudience refuses a session report that carries no
	// aud (ReportAudience). A report that carries aud must name Audience
	// whether or not this is set.
	RequireReportAudience bool
}

// ReplayCache remembers the proofs a relying party has admitted, so that
// each is admitted once. Implementations must be safe for concurrent use,
// and Record must check and record atomically.
type ReplayCache interface {
	// Record records id as used until until, and reports whether it was
	// unused (true) or already recorded and not yet expired at now
	// (false: a replay). An error refuses the proof
	// (ProofReplayUnavailable): a cache that cannot record must not
	// admit.
	Record(ctx context.Context, id string, now, until time.Time) (fresh bool, err error)
}

// ReportHash is a proof's ath for a session report: base64url (no
// padding) of SHA-256 over the report's compact JWS as ASCII.
func ReportHash(report string) string {
	h := sha256.Sum256([]byte(report))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// VerifyProof checks a proof of possession presented with a session
// report that Verify or VerifyJWKS accepted: the proof parses and its
// signature verifies with its jwk (ParseProof); the report is still
// unexpired at want.Now [Expired]; the report's cnf is the proof's key
// [ProofKeyMismatch]; ath hashes the report [ProofATHMismatch]; aud is
// want.Audience [ProofAudience] and the report's aud, if any, names it
// [ReportAudience]; nonce [ProofNonce], htm [ProofMethod] and htu
// [ProofURL] are as expected; iat is within the window [ProofStale,
// ProofFuture]; and replay has not seen the proof [ProofReplayed]. The
// first failing check decides. Misuse (no report, no audience, no time,
// no replay cache) is an error without a Code.
func VerifyProof(ctx context.Context, proof string, report *Verified, want ProofExpect, replay ReplayCache) (*Proof, error) {
	if report == nil || report.Token == "" || want.Audience == "" || want.Now.IsZero() || replay == nil {
		return nil, errors.New("ear: VerifyProof needs a verified report, an audience, the time and a replay cache")
	}
	if (want.Method == "") != (want.URL == "") {
		return nil, errors.New("ear: VerifyProof: ProofExpect needs both Method and URL, or neither")
	}
	maxAge, maxSkew := want.MaxAge, want.MaxSkew
	if maxAge <= 0 {
		maxAge = DefaultProofMaxAge
	}
	if maxSkew <= 0 {
		maxSkew = DefaultProofMaxSkew
	}
	p, err := ParseProof(proof)
	if err != nil {
		return nil, err
	}
	c := &p.Claims
	rc := &report.Claims
	if want.Now.After(rc.Expiry.Add(Leeway)) {
		return nil, fail(Expired, "the session report expired at %v", rc.Expiry.UTC())
	}
	if rc.ReportKey == nil {
		return nil, fail(ProofKeyMismatch, "the session report binds no key (no cnf): level %d", rc.Level)
	}
	cnf, err := Thumbprint(rc.ReportKey)
	if err != nil {
		return nil, fail(ProofKeyMismatch, "the session report's cnf: %v", err)
	}
	if subtle.ConstantTimeCompare([]byte(cnf), []byte(p.Thumbprint)) != 1 {
		return nil, fail(ProofKeyMismatch, "the proof is signed by key %s, the report binds %s", p.Thumbprint, cnf)
	}
	if subtle.ConstantTimeCompare([]byte(c.ReportHash), []byte(ReportHash(report.Token))) != 1 {
		return nil, fail(ProofATHMismatch, "ath %.60q is not the hash of the session report presented", c.ReportHash)
	}
	if c.Audience != want.Audience {
		return nil, fail(ProofAudience, "the proof is for %.100q, not %q", c.Audience, want.Audience)
	}
	if len(rc.Audience) > 0 || want.RequireReportAudience {
		if !contains(rc.Audience, want.Audience) {
			return nil, fail(ReportAudience, "the session report is for %.200q, not %q", rc.Audience, want.Audience)
		}
	}
	if want.Nonce != "" && subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(want.Nonce)) != 1 {
		if c.Nonce == "" {
			return nil, fail(ProofNonce, "the proof carries no nonce")
		}
		return nil, fail(ProofNonce, "the proof carries another nonce")
	}
	if c.Method != want.Method {
		return nil, fail(ProofMethod, "htm %.20q, want %q", c.Method, want.Method)
	}
	if want.URL != "" || c.URL != "" {
		got, gerr := NormalizeURL(c.URL)
		exp, werr := NormalizeURL(want.URL)
		if werr != nil && want.URL != "" {
			return nil, fmt.Errorf("ear: VerifyProof: ProofExpect.URL: %w", werr)
		}
		if gerr != nil || want.URL == "" || got != exp {
			return nil, fail(ProofURL, "htu %.200q, want %q", c.URL, exp)
		}
	}
	iat := time.Unix(c.IssuedAt, 0)
	if iat.Before(want.Now.Add(-maxAge)) {
		return nil, fail(ProofStale, "issued at %v, more than %v before %v", iat.UTC(), maxAge, want.Now.UTC())
	}
	if iat.After(want.Now.Add(maxSkew)) {
		return nil, fail(ProofFuture, "issued at %v, more than %v after %v", iat.UTC(), maxSkew, want.Now.UTC())
	}
	// Kept a second past the window's end: iat is in whole seconds and
	// the window includes its bounds.
	fresh, err := replay.Record(ctx, p.Thumbprint+"."+c.ID, want.Now, iat.Add(maxAge+time.Second))
	if err != nil {
		return nil, fail(ProofReplayUnavailable, "the replay cache: %v", err)
	}
	if !fresh {
		return nil, fail(ProofReplayed, "jti %.130q of key %s was already presented", c.ID, p.Thumbprint)
	}
	return p, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// NormalizeURL is u as htu compares it (RFC 9449 §4.3): an absolute http
// or https URL without query and fragment, scheme and host in lower case,
// the scheme's default port dropped, an empty path as "/".
func NormalizeURL(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(p.Scheme)
	if (scheme != "https" && scheme != "http") || p.Host == "" || p.User != nil || p.Opaque != "" {
		return "", fmt.Errorf("%.100q is not an absolute http(s) URL without user info", u)
	}
	host := strings.ToLower(p.Host)
	if port := p.Port(); scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		host = strings.TrimSuffix(host, ":"+port)
	}
	path := p.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

// proofHeader is a proof's protected header: exactly these members.
type proofHeader struct {
	Alg string          `json:"alg"`
	Typ string          `json:"typ"`
	JWK json.RawMessage `json:"jwk"`
}

// ParseProof decodes a proof and verifies its signature with the key its
// header carries: it says who signed what, not that the signer is the
// report's host (VerifyProof). Codes: ProofMissing, ProofMalformed,
// ProofWrongType, ProofAlg, ProofBadSignature.
func ParseProof(proof string) (*Proof, error) {
	if proof == "" {
		return nil, fail(ProofMissing, "no proof of possession")
	}
	hb, input, pl, s, err := segments(proof, MaxProofSize, ProofMalformed)
	if err != nil {
		return nil, err
	}
	var members map[string]json.RawMessage
	if err := strictJSON(hb, &members); err != nil {
		return nil, fail(ProofMalformed, "header: %v", err)
	}
	// typ first: a JWS of another type (a session report, say) is not a
	// proof, whatever else it holds.
	var hdr proofHeader
	if err := member(members, "typ", &hdr.Typ); err != nil || hdr.Typ != ProofType {
		return nil, fail(ProofWrongType, "typ %.40s, want %q", members["typ"], ProofType)
	}
	for name := range members {
		if name != "alg" && name != "typ" && name != "jwk" {
			return nil, fail(ProofMalformed, "header: member %.40q is not a proof's (alg, typ and jwk only)", name)
		}
	}
	if err := member(members, "alg", &hdr.Alg); err != nil {
		return nil, fail(ProofMalformed, "header: %v", err)
	}
	hdr.JWK = members["jwk"]
	if len(hdr.JWK) == 0 || hdr.JWK[0] != '{' {
		return nil, fail(ProofMalformed, "header: no jwk object")
	}
	key, err := ParsePublicJWK(hdr.JWK)
	if err != nil {
		return nil, fail(ProofMalformed, "header: jwk: %v", err)
	}
	if err := checkProofSignature(hdr.Alg, key, input, s); err != nil {
		return nil, err
	}
	c, err := decodeProofClaims(pl)
	if err != nil {
		return nil, err
	}
	tp, err := Thumbprint(key)
	if err != nil {
		return nil, fail(ProofMalformed, "header: jwk: %v", err)
	}
	return &Proof{Claims: *c, Alg: hdr.Alg, Key: key, Thumbprint: tp}, nil
}

// checkProofSignature verifies sig (base64url) over signingInput with
// key under alg: ES256 with a P-256 key (r‖s, low S), RS256 with an RSA
// key of 2048–8192 bits.
func checkProofSignature(alg string, key crypto.PublicKey, signingInput, sig string) error {
	raw, err := b64.DecodeString(sig)
	if err != nil {
		return fail(ProofBadSignature, "signature: %v", err)
	}
	digest := sha256.Sum256([]byte(signingInput))
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if alg != "ES256" || k.Curve != elliptic.P256() {
			return fail(ProofAlg, "alg %.20q with an ECDSA %s key, want ES256 with P-256", alg, k.Curve.Params().Name)
		}
		if len(raw) != es256Size {
			return fail(ProofBadSignature, "signature of %d bytes, want %d (ES256 r‖s)", len(raw), es256Size)
		}
		r, s := new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])
		if !ecdsa.Verify(k, digest[:], r, s) {
			return fail(ProofBadSignature, "the ES256 signature does not verify with the jwk")
		}
		if s.Cmp(p256HalfN) > 0 {
			return fail(ProofBadSignature, "the ES256 signature's s is above n/2 (the high-S twin of a valid signature)")
		}
		return nil
	case *rsa.PublicKey:
		if alg != "RS256" || k.N.BitLen() < minRSABits || k.N.BitLen() > maxRSABits {
			return fail(ProofAlg, "alg %.20q with an RSA-%d key, want RS256 with %d–%d bits", alg, k.N.BitLen(), minRSABits, maxRSABits)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], raw); err != nil {
			return fail(ProofBadSignature, "the RS256 signature does not verify with the jwk")
		}
		return nil
	}
	return fail(ProofAlg, "alg %.20q with a %T key, want ES256 or RS256", alg, key)
}

// proofClaimNames are the members a proof's claims may have.
var proofClaimNames = map[string]bool{"aud": true, "htm": true, "htu": true, "iat": true, "nonce": true, "jti": true, "ath": true}

func decodeProofClaims(seg string) (*ProofClaims, error) {
	payload, err := b64.DecodeString(seg)
	if err != nil {
		return nil, fail(ProofMalformed, "claims: %v", err)
	}
	var top map[string]json.RawMessage
	if err := strictJSON(payload, &top); err != nil {
		return nil, fail(ProofMalformed, "claims: %v", err)
	}
	for name := range top {
		if !proofClaimNames[name] {
			return nil, fail(ProofMalformed, "claims: member %.40q is not a proof's", name)
		}
	}
	for _, name := range []string{"aud", "iat", "jti", "ath"} {
		if _, ok := top[name]; !ok {
			return nil, fail(ProofMalformed, "claims: no %s", name)
		}
	}
	var c ProofClaims
	for name, dst := range map[string]*string{"aud": &c.Audience, "htm": &c.Method, "htu": &c.URL, "nonce": &c.Nonce, "jti": &c.ID, "ath": &c.ReportHash} {
		if err := member(top, name, dst); err != nil {
			return nil, fail(ProofMalformed, "claims: %v", err)
		}
		if _, ok := top[name]; ok && *dst == "" {
			return nil, fail(ProofMalformed, "claims: %s is empty", name)
		}
	}
	iat, err := unixTime(top["iat"])
	if err != nil {
		return nil, fail(ProofMalformed, "claims: iat: %v", err)
	}
	c.IssuedAt = iat.Unix()
	if len(c.ID) > maxJTI {
		return nil, fail(ProofMalformed, "claims: jti of %d bytes, more than %d", len(c.ID), maxJTI)
	}
	if (c.Method == "") != (c.URL == "") {
		return nil, fail(ProofMalformed, "claims: htm and htu go together")
	}
	if ath, err := b64.DecodeString(c.ReportHash); err != nil || len(ath) != sha256.Size {
		return nil, fail(ProofMalformed, "claims: ath is not a base64url SHA-256 digest")
	}
	return &c, nil
}

// SignFunc signs with the report key: the SHA-256 of message, returned
// as an ASN.1 DER ECDSA signature (EC keys) or an RSASSA-PKCS1-v1_5
// signature (RSA keys) — what an enclave's report key produces. The
// device side gives the JWS signing input, so that the enclave can check
// that it is a proof's (enclave.SignMessage).
type SignFunc func(ctx context.Context, message []byte) ([]byte, error)

// SignProof makes a proof for c with the report key pub, signed by sign:
// ES256 for a P-256 key, RS256 for an RSA key. c.IssuedAt, ID and
// ReportHash must be set.
func SignProof(ctx context.Context, pub crypto.PublicKey, c ProofClaims, sign SignFunc) (string, error) {
	if c.Audience == "" || c.ID == "" || c.ReportHash == "" || c.IssuedAt <= 0 {
		return "", errors.New("ear: a proof needs aud, jti, ath and iat")
	}
	var alg string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ear: a proof key on %s, want P-256", k.Curve.Params().Name)
		}
		alg = "ES256"
	case *rsa.PublicKey:
		alg = "RS256"
	default:
		return "", fmt.Errorf("ear: a %T cannot sign a proof", pub)
	}
	j, err := PublicJWK(pub)
	if err != nil {
		return "", err
	}
	hdr, err := json.Marshal(proofHeader{Alg: alg, Typ: ProofType, JWK: j})
	if err != nil {
		return "", fmt.Errorf("ear: proof header: %w", err)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("ear: proof claims: %w", err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sig, err := sign(ctx, []byte(input))
	if err != nil {
		return "", fmt.Errorf("ear: signing the proof: %w", err)
	}
	if alg == "ES256" {
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
			return "", errors.New("ear: the enclave's signature is not an ASN.1 ECDSA signature")
		}
		if rs.S.Cmp(p256HalfN) > 0 {
			rs.S = new(big.Int).Sub(elliptic.P256().Params().N, rs.S)
		}
		sig = make([]byte, es256Size)
		rs.R.FillBytes(sig[:32])
		rs.S.FillBytes(sig[32:])
	}
	proof := input + "." + enc.EncodeToString(sig)
	if _, err := ParseProof(proof); err != nil {
		return "", fmt.Errorf("ear: the proof made does not verify: %w", err)
	}
	return proof, nil
}
