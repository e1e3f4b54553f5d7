package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/cert"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	veraison "github.com/veraison/ear"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/store"
	"github.com/vigil-attest/vigil/verdict"
)

// KeyStore is what the Issuer keeps in the service's store: the CA (a
// secret) and the signing keys. store.Store satisfies it.
type KeyStore interface {
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
	AddSigningKey(ctx context.Context, k *store.SigningKey) error
	SigningKeys(ctx context.Context, now time.Time) ([]*store.SigningKey, error)
}

var _ KeyStore = store.Store(nil)

const (
	// DefaultValidity is a session report's default lifetime.
	DefaultValidity = 10 * time.Minute
	// DefaultKeyLifetime is how long a signing key signs by default.
	DefaultKeyLifetime = 24 * time.Hour
	// CertMargin is added to a signing certificate's lifetime beyond the
	// last report its key may sign (RetireAt + Validity), for clock skew.
	CertMargin = time.Hour
	// RefreshInterval is how often an Issuer reloads the signing keys
	// from the store, so that replicas pick up each other's keys.
	RefreshInterval = 5 * time.Second
	// SigningKeyName is the common name of signing certificates.
	SigningKeyName = "Vigil session report signing key"
)

// Options configure an Issuer.
type Options struct {
	// Issuer is the "iss" claim, used when Claims.Issuer is empty:
	// one name for every replica (configured: the `issuer` key). Empty
	// means ear.IssuerOf(the CA), derived from the report CA's key, so
	// replicas sharing the CA agree without configuration.
	Issuer string
	// Validity is a report's lifetime (default DefaultValidity).
	Validity time.Duration
	// KeyLifetime is how long a signing key signs before the next one
	// takes over (default DefaultKeyLifetime).
	KeyLifetime time.Duration
	// CA and CAKey, when set, are the service CA (loaded from files by
	// the caller). Otherwise the Issuer makes one on first use and keeps
	// it in the KeyStore secret CASecret, shared by every replica.
	CA    *x509.Certificate
	CAKey crypto.Signer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger reports store failures the Issuer rides out (default
	// slog.Default()).
	Logger *slog.Logger
}

// Issuer signs session reports. It is safe for concurrent use; replicas
// sharing one store share the CA and the signing keys.
type Issuer struct {
	ks        KeyStore
	o         Options
	ca        *x509.Certificate
	caKey     crypto.Signer
	caPEM     []byte
	build     string
	developer string

	mu    sync.Mutex // serializes loads and rotations
	state atomic.Pointer[keyState]
}

// keyState is a loaded key set; never modified once published.
type keyState struct {
	loaded  time.Time
	current *signingKey // nil when no key may sign now
	keys    []*signingKey
	jwks    []byte
}

// signingKey is a parsed store.SigningKey.
type signingKey struct {
	kid      string
	key      *ecdsa.PrivateKey
	cert     *x509.Certificate
	created  time.Time
	retire   time.Time
	notAfter time.Time
	// x5c is the header's chain: the key's certificate and the CA's.
	x5c *cert.Chain
	// header is the encoded JWS protected header (alg, kid, typ, x5c),
	// the same for every token the key signs.
	header string
	// jwk is the public JWK published in the JWKS.
	jwk json.RawMessage
}

// NewIssuer loads (or makes) the service CA and the current signing key.
func NewIssuer(ctx context.Context, ks KeyStore, o Options) (*Issuer, error) {
	if ks == nil {
		return nil, errors.New("token: NewIssuer needs a KeyStore")
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.KeyLifetime == 0 {
		o.KeyLifetime = DefaultKeyLifetime
	}
	if o.Validity < 0 || o.KeyLifetime < 0 {
		return nil, fmt.Errorf("token: negative validity (%v) or key lifetime (%v)", o.Validity, o.KeyLifetime)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	i := &Issuer{ks: ks, o: o, build: buildName(), developer: "https://github.com/vigil-attest/vigil"}
	if o.CA != nil || o.CAKey != nil {
		i.ca, i.caKey = o.CA, o.CAKey
	} else {
		b, err := ks.Secret(ctx, CASecret, func() ([]byte, error) { return newCA(o.Now()) })
		if err != nil {
			return nil, fmt.Errorf("token: loading the service CA: %w", err)
		}
		if i.ca, i.caKey, err = decodeCA(b); err != nil {
			return nil, fmt.Errorf("token: secret %q: %w", CASecret, err)
		}
	}
	if err := checkCA(i.ca, i.caKey); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	i.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.ca.Raw})
	if i.o.Issuer == "" {
		i.o.Issuer = ear.IssuerOf(i.ca)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, err := i.loadLocked(ctx, o.Now(), true); err != nil {
		return nil, err
	}
	return i, nil
}

// buildName is the verifier build named in "ear.verifier-id".
func buildName() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == "github.com/vigil-attest/vigil" && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "vigil " + v
}

// IssuerName is the "iss" the Issuer signs reports with by default.
func (i *Issuer) IssuerName() string { return i.o.Issuer }

// CA returns the service CA certificate.
func (i *Issuer) CA() *x509.Certificate { return i.ca }

// CAPEM returns the service CA certificate as PEM (what the service serves
// at /.well-known/vigil-ca.pem).
func (i *Issuer) CAPEM() []byte { return bytes.Clone(i.caPEM) }

// JWKS returns the public signing keys (RFC 7517), newest first: every
// key whose certificate has not expired, so that reports signed by a
// retired key keep verifying until they expire. Each key has kid, alg
// ES256, use sig and x5c (its certificate, then the CA's). The set is
// reloaded from the store at most every RefreshInterval.
func (i *Issuer) JWKS() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := i.fresh(ctx, i.o.Now())
	if st == nil {
		return nil, err
	}
	return bytes.Clone(st.jwks), nil
}

// Rotate makes a new signing key, which signs from now on; the old ones
// stay published until their certificates expire.
func (i *Issuer) Rotate(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	now := i.o.Now()
	if _, err := i.newKeyLocked(ctx, now); err != nil {
		return err
	}
	_, err := i.loadLocked(ctx, now, false)
	return err
}

// Refresh reloads the signing keys from the store now (another replica
// rotated), making a new key when none may sign.
func (i *Issuer) Refresh(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	_, err := i.loadLocked(ctx, i.o.Now(), true)
	return err
}

// fresh returns a key state whose current key may sign at now, reloading
// it when it is older than RefreshInterval or its key retired. When a
// periodic reload fails but the cached key may still sign, the cached
// state is used (and the failure logged); the error is returned only with
// a nil state.
func (i *Issuer) fresh(ctx context.Context, now time.Time) (*keyState, error) {
	st := i.state.Load()
	usable := st != nil && st.current != nil && now.Before(st.current.retire) && !now.Before(st.current.cert.NotBefore)
	if usable && now.Sub(st.loaded) < RefreshInterval && !now.Before(st.loaded) {
		return st, nil
	}
	if usable {
		// A periodic reload: one caller does it, the others go on.
		if !i.mu.TryLock() {
			return st, nil
		}
		defer i.mu.Unlock()
		nst, err := i.loadLocked(ctx, now, true)
		if err != nil {
			i.o.Logger.Warn("session report keys: reload failed, signing with the cached key", "kid", st.current.kid, "err", err)
			return st, nil
		}
		return nst, nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if st2 := i.state.Load(); st2 != st && st2 != nil && st2.current != nil && now.Before(st2.current.retire) {
		return st2, nil // another caller reloaded meanwhile
	}
	return i.loadLocked(ctx, now, true)
}

// loadLocked reads the signing keys from the store and publishes them;
// with rotate, it makes a new key when none may sign at now.
func (i *Issuer) loadLocked(ctx context.Context, now time.Time, rotate bool) (*keyState, error) {
	st, err := i.readLocked(ctx, now)
	if err != nil {
		return nil, err
	}
	if st.current == nil && rotate {
		if _, err := i.newKeyLocked(ctx, now); err != nil {
			return nil, err
		}
		if st, err = i.readLocked(ctx, now); err != nil {
			return nil, err
		}
		if st.current == nil {
			return nil, errors.New("token: the signing key just stored is not in the store's key set")
		}
	}
	i.state.Store(st)
	return st, nil
}

func (i *Issuer) readLocked(ctx context.Context, now time.Time) (*keyState, error) {
	rows, err := i.ks.SigningKeys(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("token: loading the signing keys: %w", err)
	}
	known := map[string]*signingKey{}
	if prev := i.state.Load(); prev != nil {
		for _, k := range prev.keys {
			known[k.kid] = k
		}
	}
	st := &keyState{loaded: now}
	for _, r := range rows {
		k := known[r.KID]
		if k == nil || !bytes.Equal(k.cert.Raw, r.CertDER) {
			if k, err = i.parseKey(r); err != nil {
				// Not ours (another CA) or damaged: never sign with it
				// nor publish it.
				i.o.Logger.Warn("session report keys: skipping a stored signing key", "kid", r.KID, "err", err)
				continue
			}
		}
		if !now.Before(k.notAfter) {
			continue
		}
		st.keys = append(st.keys, k)
	}
	sort.SliceStable(st.keys, func(a, b int) bool {
		ka, kb := st.keys[a], st.keys[b]
		if !ka.created.Equal(kb.created) {
			return ka.created.After(kb.created)
		}
		return ka.kid < kb.kid // the same choice on every replica
	})
	for _, k := range st.keys {
		if now.Before(k.retire) && !now.Before(k.cert.NotBefore) {
			st.current = k
			break
		}
	}
	set := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: []json.RawMessage{}}
	for _, k := range st.keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	if st.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("token: encoding the JWKS: %w", err)
	}
	return st, nil
}

// parseKey checks a stored key: a P-256 key, its certificate issued by
// this CA for it, its kid the key's thumbprint.
func (i *Issuer) parseKey(r *store.SigningKey) (*signingKey, error) {
	crt, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate: %w", err)
	}
	if err := crt.CheckSignatureFrom(i.ca); err != nil {
		return nil, fmt.Errorf("the certificate is not issued by the service CA: %w", err)
	}
	raw, err := x509.ParsePKCS8PrivateKey(r.KeyDER)
	if err != nil {
		return nil, fmt.Errorf("parsing the key: %w", err)
	}
	key, ok := raw.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("the key is a %T, not ECDSA P-256", raw)
	}
	if !key.PublicKey.Equal(crt.PublicKey) {
		return nil, errors.New("the certificate is for another key")
	}
	kid, err := ear.Thumbprint(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if kid != r.KID {
		return nil, fmt.Errorf("kid %q is not the key's thumbprint %q", r.KID, kid)
	}
	k := &signingKey{
		kid:      kid,
		key:      key,
		cert:     crt,
		created:  r.CreatedAt,
		retire:   r.RetireAt,
		notAfter: crt.NotAfter,
		x5c:      &cert.Chain{},
	}
	for _, der := range [][]byte{crt.Raw, i.ca.Raw} {
		// cert.Chain holds base64 (RFC 7515 §4.1.6), not DER.
		if err := k.x5c.AddString(base64.StdEncoding.EncodeToString(der)); err != nil {
			return nil, fmt.Errorf("x5c: %w", err)
		}
	}
	if r.NotAfter.Before(k.notAfter) {
		k.notAfter = r.NotAfter
	}
	if k.jwk, err = signingJWK(k); err != nil {
		return nil, err
	}
	if k.header, err = protectedHeader(k); err != nil {
		return nil, err
	}
	return k, nil
}

// newKeyLocked makes a signing key, has the CA certify it and stores it.
func (i *Issuer) newKeyLocked(ctx context.Context, now time.Time) (string, error) {
	if !now.Before(i.ca.NotAfter) {
		return "", fmt.Errorf("token: the service CA expired at %v", i.ca.NotAfter)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("token: generating a signing key: %w", err)
	}
	kid, err := ear.Thumbprint(&key.PublicKey)
	if err != nil {
		return "", err
	}
	// Replicas sign with the newest key by CreatedAt: keep it a second
	// after the newest known one, so that a store keeping whole seconds
	// still orders them.
	created := now
	if st := i.state.Load(); st != nil && len(st.keys) > 0 && created.Sub(st.keys[0].created) < time.Second {
		created = st.keys[0].created.Add(time.Second)
	}
	retire := created.Add(i.o.KeyLifetime)
	notAfter := retire.Add(i.o.Validity + CertMargin)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: SigningKeyName + " " + kid, Organization: []string{"Vigil"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.ca, &key.PublicKey, i.caKey)
	if err != nil {
		return "", fmt.Errorf("token: certifying a signing key: %w", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("token: encoding a signing key: %w", err)
	}
	k := &store.SigningKey{KID: kid, CertDER: der, KeyDER: p8, CreatedAt: created, RetireAt: retire, NotAfter: notAfter}
	if err := i.ks.AddSigningKey(ctx, k); err != nil {
		return "", fmt.Errorf("token: storing signing key %s: %w", kid, err)
	}
	i.o.Logger.Info("session report keys: new signing key", "kid", kid, "retire_at", retire, "not_after", notAfter)
	return kid, nil
}

// vigilClaims are the claims Issue adds to EAR's. The names are the
// Claim* constants (a test holds them equal).
type vigilClaims struct {
	Sub            string            `json:"sub"`
	Iss            string            `json:"iss,omitempty"`
	Aud            any               `json:"aud,omitempty"`
	Exp            int64             `json:"exp"`
	Cnf            *confirmation     `json:"cnf,omitempty"`
	Level          int               `json:"vigil.level"`
	Failures       []verdict.Failure `json:"vigil.failures"`
	PolicyDigest   string            `json:"vigil.policy-digest,omitempty"`
	ContentVersion string            `json:"vigil.content-version,omitempty"`
	EKSHA256       string            `json:"vigil.ek-sha256,omitempty"`
	Provenance     map[string]string `json:"vigil.provenance,omitempty"`
}

// confirmation is RFC 7800's "cnf".
type confirmation struct {
	JWK json.RawMessage `json:"jwk"`
}

// Issue signs a session report for c. Zero IssuedAt, Expiry and Issuer
// are filled in (now, now + Validity, Options.Issuer) and c is updated to
// what the token says (times in whole seconds). EAR bounds the nonce to
// 6–66 bytes; Status must be an EAR tier name and TrustVector's names
// EAR's; Expiry may not pass the signing certificate's NotAfter.
func (i *Issuer) Issue(ctx context.Context, c *ear.Claims) (string, error) {
	if c == nil {
		return "", errors.New("token: Issue needs claims")
	}
	if c.AgentID == "" {
		return "", errors.New("token: the claims name no agent")
	}
	if !verdict.Level(c.Level).Valid() {
		return "", fmt.Errorf("token: level %d is not 0–%d", c.Level, int(verdict.MaxLevel))
	}
	tier, ok := veraison.StringToTrustTier[c.Status]
	if !ok {
		return "", fmt.Errorf("token: status %q is not an EAR tier", c.Status)
	}
	if c.EKSHA256 != "" && !ear.IsSHA256Hex(c.EKSHA256) {
		return "", fmt.Errorf("token: EK hash %q is not 64 lowercase hex digits", c.EKSHA256)
	}
	now := i.o.Now()
	st, err := i.fresh(ctx, now)
	if err != nil {
		return "", err
	}
	k := st.current
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = now
	}
	iat = iat.Truncate(time.Second)
	exp := c.Expiry
	if exp.IsZero() {
		exp = iat.Add(i.o.Validity)
	}
	exp = exp.Truncate(time.Second)
	if !exp.After(iat) {
		return "", fmt.Errorf("token: expiry %v is not after issuance %v", exp, iat)
	}
	if exp.After(k.notAfter) || iat.Before(k.cert.NotBefore) {
		return "", fmt.Errorf("token: %v–%v is outside signing certificate %s's validity", iat, exp, k.kid)
	}
	iss := c.Issuer
	if iss == "" {
		iss = i.o.Issuer
	}

	ar := veraison.NewAttestationResult(ear.SubmodName, i.build, i.developer)
	iatUnix := iat.Unix()
	ar.IssuedAt = &iatUnix
	app := ar.Submods[ear.SubmodName]
	app.Status = &tier
	if len(c.TrustVector) > 0 {
		m := make(map[string]any, len(c.TrustVector))
		for name, v := range c.TrustVector {
			m[name] = v
		}
		tv, err := veraison.ToTrustVector(m)
		if err != nil {
			return "", fmt.Errorf("token: trust vector: %w", err)
		}
		app.TrustVector = tv
	}
	if c.PolicyID != "" {
		p := c.PolicyID
		app.AppraisalPolicyID = &p
	}
	if len(c.Nonce) > 0 {
		n := base64.RawURLEncoding.EncodeToString(c.Nonce)
		ar.Nonce = &n
	}
	body, err := ar.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("token: EAR claims: %w", err)
	}

	vc := vigilClaims{
		Sub:            c.AgentID,
		Iss:            iss,
		Exp:            exp.Unix(),
		Level:          c.Level,
		Failures:       c.Failures,
		PolicyDigest:   c.PolicyDigest,
		ContentVersion: c.ContentVersion,
		EKSHA256:       c.EKSHA256,
		Provenance:     c.Provenance,
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		vc.Aud = c.Audience[0]
	default:
		vc.Aud = c.Audience
	}
	for _, a := range c.Audience {
		if a == "" || len(c.Audience) > ear.MaxAudiences {
			return "", fmt.Errorf("token: audience %q: want 1–%d non-empty names", c.Audience, ear.MaxAudiences)
		}
	}
	for k, v := range c.Provenance {
		if k == "" || !ear.ValidProvenance(v) {
			return "", fmt.Errorf("token: provenance %q: %q is not attested, corroborated or asserted", k, v)
		}
	}
	if vc.Failures == nil {
		vc.Failures = []verdict.Failure{}
	}
	if c.ReportKey != nil {
		j, err := ear.PublicJWK(c.ReportKey)
		if err != nil {
			return "", fmt.Errorf("token: cnf: %w", err)
		}
		vc.Cnf = &confirmation{JWK: j}
	}
	extra, err := json.Marshal(vc)
	if err != nil {
		return "", fmt.Errorf("token: Vigil claims: %w", err)
	}
	// Both are JSON objects with disjoint names: join them.
	payload := make([]byte, 0, len(body)+len(extra))
	payload = append(payload, body[:len(body)-1]...)
	payload = append(payload, ',')
	payload = append(payload, extra[1:]...)

	tok, err := i.sign(k, payload)
	if err != nil {
		return "", err
	}
	c.IssuedAt, c.Expiry, c.Issuer = iat, exp, iss
	return tok, nil
}

// protectedHeader encodes a key's JWS protected header: ES256 with kid,
// typ JWT and x5c.
func protectedHeader(k *signingKey) (string, error) {
	h := jws.NewHeaders()
	for _, kv := range [...]struct {
		name  string
		value any
	}{
		{jws.AlgorithmKey, jwa.ES256},
		{jws.KeyIDKey, k.kid},
		{jws.TypeKey, "JWT"},
		{jws.X509CertChainKey, k.x5c},
	} {
		if err := h.Set(kv.name, kv.value); err != nil {
			return "", fmt.Errorf("JWS header %s: %w", kv.name, err)
		}
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encoding the JWS header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sign makes the compact JWS (RFC 7515 §7.1) of payload under the key's
// protected header. jws.Sign would marshal the same header (1.3 kB with
// x5c) again for every token; this is the same serialization, with the
// header encoded once per key. The signature is ES256's r‖s with s
// low (s ≤ n/2), so that each token has one signature string: Verify
// refuses the high-S twin (HighS).
func (i *Issuer) sign(k *signingKey, payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(k.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(es256Size))
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	h := sha256.Sum256(buf)
	r, s, err := ecdsa.Sign(rand.Reader, k.key, h[:])
	if err != nil {
		return "", fmt.Errorf("token: signing with %s: %w", k.kid, err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, es256Signature(r, s))
	return string(buf), nil
}

// es256Size is an ES256 signature's length: r‖s, 32 bytes each (RFC 7518
// §3.4).
const es256Size = 64

// p256HalfN is ⌊n/2⌋ of P-256: s above it is high.
var p256HalfN = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// es256Signature encodes (r, s) as ES256's r‖s with s made low: (r, n−s)
// verifies as well as (r, s), and only the low one is the token's.
func es256Signature(r, s *big.Int) []byte {
	if s.Cmp(p256HalfN) > 0 {
		s = new(big.Int).Sub(elliptic.P256().Params().N, s)
	}
	sig := make([]byte, es256Size)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}
