package token_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/token"
)

// Peers: session reports checked by JOSE/EAR implementations we did not
// write — Veraison's arc (Go, jwx) and npm jose (JavaScript, under node).

// unavailable is testcmd.Unavailable.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	testcmd.Unavailable(t, format, args...)
}

// earVersion is the github.com/veraison/ear version this test binary
// links (go.mod's).
func earVersion(t *testing.T) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/veraison/ear" {
				return d.Version
			}
		}
	}
	out, err := testcmd.Output("go", "list", "-m", "-f", "{{.Version}}", "github.com/veraison/ear")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// buildArc builds Veraison's arc at go.mod's ear version into a temporary
// module (its own go.sum, so that arc's CLI dependencies stay out of ours).
func buildArc(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mod := fmt.Sprintf("module arcbuild\n\ngo 1.26\n\nrequire github.com/veraison/ear %s\n", earVersion(t))
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "arc")
	if out, err := testcmd.Output("go", "-C", dir, "build", "-mod=mod", "-o", bin, "github.com/veraison/ear/arc"); err != nil {
		unavailable(t, "building arc (needs the Go module proxy once): %v\n%s", err, out)
	}
	return bin
}

// TestArcVerify: `arc verify` (Veraison's EAR tool) verifies the session
// report with the signing key's JWK and prints its status; a tampered
// report fails it.
func TestArcVerify(t *testing.T) {
	arc := buildArc(t)
	f := newFixtureAt(t, time.Now(), token.Options{}) // arc checks times on the real clock
	tok := f.issue(t, sampleClaims())
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "key.jwk")
	key, err := json.Marshal(signingJWK(t, f.iss, tok))
	if err != nil {
		t.Fatal(err)
	}
	write(t, keyPath, key)
	tokPath := filepath.Join(dir, "token.jwt")
	write(t, tokPath, []byte(tok))

	out, err := testcmd.Output(arc, "verify", "-p", keyPath, tokPath)
	if err != nil {
		t.Fatalf("arc verify: %v", err)
	}
	for _, want := range []string{
		"signature successfully verified",
		`"ear.status": "affirming"`,
		`"ear.appraisal-policy-id": "vigil/default"`,
		"submod(" + ear.SubmodName + ")",
		"Hardware [affirming]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("arc verify output lacks %q:\n%s", want, out)
		}
	}

	// Level raised, signature kept.
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + b64json(t, with(claimsOf(t, tok), ear.ClaimLevel, 4)) + "." + parts[2]
	write(t, tokPath, []byte(tampered))
	if out, err := testcmd.Output(arc, "verify", "-p", keyPath, tokPath); err == nil {
		t.Errorf("arc verified a tampered report:\n%s", out)
	}
	// Another service's key.
	other := newFixtureAt(t, time.Now(), token.Options{})
	otherKey, _ := json.Marshal(signingJWK(t, other.iss, other.issue(t, sampleClaims())))
	write(t, keyPath, otherKey)
	write(t, tokPath, []byte(tok))
	if out, err := testcmd.Output(arc, "verify", "-p", keyPath, tokPath); err == nil {
		t.Errorf("arc verified with another service's key:\n%s", out)
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// joseDir is testdata/verify.mjs beside npm jose@5.
func joseDir(t *testing.T) string {
	t.Helper()
	script, err := os.ReadFile(filepath.Join("testdata", "verify.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	return testcmd.JoseScript(t, script)
}

type joseResult struct {
	Level *int   `json:"level"`
	Sub   string `json:"sub"`
	KID   string `json:"kid"`
	Error string `json:"error"`
}

// TestJoseVerify: npm jose verifies the session report with the JWKS
// (createLocalJWKSet + jwtVerify, ES256 only) and with the x5c leaf
// (importX509, its issuance by the CA checked by node:crypto), and reads
// the same level; tampered, foreign-CA, alg-none and expired reports fail.
func TestJoseVerify(t *testing.T) {
	script := joseDir(t)
	f := newFixture(t, token.Options{})
	g := newFixture(t, token.Options{}) // another service (another CA)
	dir := t.TempDir()
	jwksPath, caPath := filepath.Join(dir, "jwks.json"), filepath.Join(dir, "ca.pem")
	write(t, jwksPath, mustJWKS(t, f.iss))
	write(t, caPath, f.iss.CAPEM())

	c := sampleClaims()
	c.Level = 3
	tok := f.issue(t, c)
	parts := strings.Split(tok, ".")
	run := func(tok string, now time.Time) (jwks, x5c joseResult) {
		t.Helper()
		tokPath := filepath.Join(dir, "token.jwt")
		write(t, tokPath, []byte(tok))
		out, err := testcmd.Output("node", script, jwksPath, tokPath, caPath, fmt.Sprint(now.Unix()))
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ JWKS, X5C joseResult }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("node output %q: %v", out, err)
		}
		return r.JWKS, r.X5C
	}

	jw, x5 := run(tok, epoch.Add(time.Minute))
	for name, r := range map[string]joseResult{"JWKS": jw, "x5c": x5} {
		if r.Error != "" || r.Level == nil || *r.Level != 3 || r.Sub != "agent-7" || r.KID != kidOf(t, tok) {
			t.Errorf("jose with the %s: %+v, want level 3 of agent-7", name, r)
		}
	}

	for _, tc := range []struct {
		name           string
		tok            string
		now            time.Time
		wantJWKS, want string
	}{
		{"level raised", parts[0] + "." + b64json(t, with(claimsOf(t, tok), ear.ClaimLevel, 4)) + "." + parts[2], epoch, "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"},
		{"another CA", g.issue(t, sampleClaims()), epoch, "ERR_JWKS_NO_MATCHING_KEY", "UNTRUSTED_CHAIN"},
		{"alg none", b64json(t, with(headerOf(t, tok), "alg", "none")) + "." + parts[1] + ".", epoch, "ERR_JOSE_ALG_NOT_ALLOWED", "ERR_JOSE_ALG_NOT_ALLOWED"},
		{"expired", tok, epoch.Add(token.DefaultValidity + time.Minute), "ERR_JWT_EXPIRED", "ERR_JWT_EXPIRED"},
	} {
		jw, x5 := run(tc.tok, tc.now)
		if jw.Error != tc.wantJWKS || x5.Error != tc.want {
			t.Errorf("%s: jose says %q (JWKS) and %q (x5c), want %q and %q", tc.name, jw.Error, x5.Error, tc.wantJWKS, tc.want)
		}
	}
}
