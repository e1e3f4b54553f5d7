package integrity_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// legacyTSA is a loopback server speaking Microsoft's legacy Authenticode
// timestamp protocol (what `osslsigncode sign -t URL` and signtool /t use):
// the request is a base64 TimeStampRequest holding the signature value, the
// answer a base64 PKCS#7 whose signer osslsigncode embeds as a PKCS#9
// countersignature.
func legacyTSA(t *testing.T, tsa *testpki.Cert, chain []*x509.Certificate, at time.Time) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		der, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(body)))
		if err != nil {
			http.Error(w, "bad base64", 400)
			return
		}
		var req struct {
			Type    asn1.ObjectIdentifier
			Content struct {
				Type asn1.ObjectIdentifier
				Data []byte `asn1:"explicit,tag:0"`
			}
		}
		if _, err := asn1.Unmarshal(der, &req); err != nil {
			http.Error(w, "bad request: "+err.Error(), 400)
			return
		}
		resp, err := cms.Sign(tsa.Key, tsa.Cert, cms.SignOptions{Hash: crypto.SHA256, Content: req.Content.Data, SigningTime: at, Chain: chain})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, base64.StdEncoding.EncodeToString(resp))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestPELegacyCountersignature: a PKCS#9 countersignature, embedded by
// osslsigncode from a legacy timestamp server, keeps an expired signer valid
// when its time falls inside the signer's validity; revocation after that
// time does not matter unless the key was compromised.
func TestPELegacyCountersignature(t *testing.T) {
	now := time.Now()
	e := newEnv(t, testpki.Options{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})
	at := now.AddDate(-1, -6, 0).Truncate(time.Second)
	srv := legacyTSA(t, e.tsa, []*x509.Certificate{e.tsaRoot.Cert}, at)
	in := testpe.Copy(t, testpe.Build(t, "amd64"), e.dir, "legacy.in.exe")
	out := testpe.OsslSign(t, in, filepath.Join(e.dir, "legacy.exe"), "-certs", e.chainPEM, "-key", e.leafKey, "-h", "sha256", "-t", srv.URL)

	// The peer agrees: the countersignature is valid and the signer was
	// valid at its time.
	testcmd.Run(t, "osslsigncode", "verify", "-CAfile", e.rootPEM, "-TSA-CAfile", e.tsaRootPEM, "-in", out)
	v := verify(t, e.policy(t, ""), out)
	want(t, v, true)
	s := v.Signatures[0]
	if s.Timestamp == nil || !s.Timestamp.Equal(at) || s.TimestampKind != "pkcs9" {
		t.Fatalf("timestamp %v kind %q, want %v pkcs9", s.Timestamp, s.TimestampKind, at)
	}
	// Untrusted TSA: the countersignature is ignored and expiry applies.
	p, err := parsePolicy(e.dir, "trust: [root.pem]\n")
	if err != nil {
		t.Fatal(err)
	}
	want(t, verify(t, p, out), false, reason.Expired, reason.BadTimestamp)

	// The countersignature's signature is checked: flip a byte of it.
	t.Run("tampered countersignature", func(t *testing.T) {
		c := testpe.Copy(t, out, t.TempDir(), "x.exe")
		raw := readFile(t, c)
		sd := peSignature(t, c)
		var tsSig []byte
		for _, a := range sd.Signers[0].UnsignedAttrs {
			if a.Type.Equal(cms.OIDAttrCounterSig) {
				tsSig = a.Values[0][len(a.Values[0])-40:]
			}
		}
		if tsSig == nil {
			t.Fatal("no countersignature attribute")
		}
		testpe.FlipByte(t, c, int64(indexUnique(t, raw, tsSig))+10)
		want(t, verify(t, e.policy(t, ""), c), false, reason.Expired, reason.BadTimestamp)
	})
}

// legacySign signs a fresh PE with osslsigncode and has it countersigned
// by tsa (PKCS#9, through legacyTSA) at time at.
func (e *env) legacySign(t *testing.T, name string, tsa *testpki.Cert, chain []*x509.Certificate, at time.Time) string {
	t.Helper()
	srv := legacyTSA(t, tsa, chain, at)
	return e.osslSign(t, name, "-h", "sha256", "-t", srv.URL)
}

// TestPETimestampAttacks: a timestamp is a trusted time only when a real
// timestamping authority made it, over this signature, at a time not later
// than now. Every file is made by osslsigncode.
func TestPETimestampAttacks(t *testing.T) {
	now := time.Now()
	// The publisher's certificate has no EKU extension (valid for any
	// purpose, RFC 5280 4.2.1.12); it was valid from 2 years ago to 1
	// year ago and was revoked (superseded, not a key compromise) 15
	// months ago. Signatures timestamped before the revocation stay good.
	e := newEnv(t, testpki.Options{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0), EKU: []x509.ExtKeyUsage{}})
	backdated := now.AddDate(-1, -6, 0).Truncate(time.Second)
	revokedAt := now.AddDate(-1, -3, 0).UTC().Format(time.RFC3339)
	revoked := e.policy(t, fmt.Sprintf("revocations:\n  - tbs_sha256: %s\n    revoked_at: %s\n    reason: superseded\n", tbsSHA256(e.h.Leaf), revokedAt))
	plain := e.policy(t, "")

	// The legitimate case: a real TSA countersigned before the
	// revocation. osslsigncode agrees.
	legit := e.legacySign(t, "legit", e.tsa, []*x509.Certificate{e.tsaRoot.Cert}, backdated)
	testcmd.Run(t, "osslsigncode", "verify", "-CAfile", e.rootPEM, "-TSA-CAfile", e.tsaRootPEM, "-in", legit)
	want(t, verify(t, revoked, legit), true)

	// The Atsiv case: the publisher kept its key after the revocation,
	// signs new code and countersigns it itself with a backdated time.
	t.Run("self-timestamp by the signer", func(t *testing.T) {
		f := e.legacySign(t, "atsiv", e.h.Leaf, nil, backdated)
		want(t, verify(t, revoked, f), false, reason.Expired, reason.Revoked, reason.BadTimestamp, reason.SelfTimestamp)
		want(t, verify(t, plain, f), false, reason.Expired, reason.BadTimestamp, reason.SelfTimestamp)
		// Only a policy that names the signer's key as a TSA lets its own
		// timestamp count (then the signature predates its revocation).
		spki := sha256.Sum256(e.h.Leaf.Cert.RawSubjectPublicKeyInfo)
		named := e.policy(t, fmt.Sprintf("revocations:\n  - tbs_sha256: %s\n    revoked_at: %s\n    reason: superseded\ntimestamp_authorities:\n  - spki_sha256: %x\n    comment: the publisher's own key\n", tbsSHA256(e.h.Leaf), revokedAt, spki))
		want(t, verify(t, named, f), true)
		// A future-dated timestamp stays refused, named or not.
		future := e.legacySign(t, "atsiv-future", e.h.Leaf, nil, now.Add(48*time.Hour).Truncate(time.Second))
		v := verify(t, named, future)
		if v.Allowed || !slices.Contains(v.Signatures[0].Reasons, reason.FutureTimestamp) {
			t.Fatalf("a future timestamp by a named TSA: %+v", v)
		}
	})
	// The signer's issuing CA (no EKU extension, in the signer's chain)
	// countersigns: still the signer's own chain.
	t.Run("self-timestamp by the signer's chain", func(t *testing.T) {
		f := e.legacySign(t, "atsiv-ca", e.h.Intermediate, nil, backdated)
		want(t, verify(t, revoked, f), false, reason.Expired, reason.Revoked, reason.BadTimestamp, reason.SelfTimestamp)
	})
	// Another end-entity certificate under a trusted anchor, without an
	// EKU extension, is not a TSA.
	t.Run("countersigner without EKU", func(t *testing.T) {
		noEKU := e.tsaRoot.NewLeaf(testpki.Options{CommonName: "Not A TSA", NotBefore: now.AddDate(-5, 0, 0), EKU: []x509.ExtKeyUsage{}})
		f := e.legacySign(t, "noeku", noEKU, []*x509.Certificate{e.tsaRoot.Cert}, backdated)
		want(t, verify(t, revoked, f), false, reason.Expired, reason.Revoked, reason.BadTimestamp)
	})
	// A TSA with the right EKU that chains to no anchor of the policy.
	t.Run("untrusted TSA", func(t *testing.T) {
		otherRoot := testpki.NewRoot(testpki.Options{CommonName: "Unknown TSA Root", NotBefore: now.AddDate(-5, 0, 0)})
		other := otherRoot.NewLeaf(testpki.Options{CommonName: "Unknown TSA", NotBefore: now.AddDate(-5, 0, 0), EKU: tsEKU, CriticalEKU: true})
		f := e.legacySign(t, "untrusted", other, []*x509.Certificate{otherRoot.Cert}, backdated)
		want(t, verify(t, revoked, f), false, reason.Expired, reason.Revoked, reason.BadTimestamp)
		// The RFC 3161 form, from osslsigncode's offline TSA.
		dir := t.TempDir()
		chain := testpki.WritePEMs(t, dir, "chain.pem", other, otherRoot)
		_, key := other.WriteFiles(t, dir, "other")
		g := e.osslSign(t, "untrusted3161", "-h", "sha256", "-TSA-certs", chain, "-TSA-key", key, "-TSA-time", fmt.Sprint(backdated.Unix()))
		want(t, verify(t, revoked, g), false, reason.Expired, reason.Revoked, reason.BadTimestamp)
	})
	// A real TSA's token over other bytes: its message imprint is not the
	// hash of this signature.
	t.Run("wrong-bytes timestamp", func(t *testing.T) {
		f := e.osslSign(t, "wrongbytes", append([]string{"-h", "sha256"}, e.tsArgs(backdated)...)...)
		want(t, verify(t, revoked, f), true)
		sd := peSignature(t, f)
		raw := readFile(t, f)
		imprint := cms.Digest(crypto.SHA256, sd.Signers[0].Signature)
		testpe.FlipByte(t, f, int64(indexUnique(t, raw, imprint)))
		if _, err := testcmd.Output("osslsigncode", "verify", "-CAfile", e.rootPEM, "-TSA-CAfile", e.tsaRootPEM, "-in", f); err == nil {
			t.Fatal("osslsigncode accepts a timestamp over other bytes")
		}
		want(t, verify(t, revoked, f), false, reason.Expired, reason.Revoked, reason.BadTimestamp)
	})
}

// TestPEFutureTimestamp: a certificate valid only from next quarter signs
// today and has a real TSA stamp a time inside that validity. The time is
// later than the check time, so it is refused, RFC 3161 and PKCS#9 alike.
func TestPEFutureTimestamp(t *testing.T) {
	now := time.Now()
	e := newEnv(t, testpki.Options{NotBefore: now.AddDate(0, 3, 0), NotAfter: now.AddDate(2, 0, 0)})
	future := now.AddDate(0, 6, 0).Truncate(time.Second)
	p := e.policy(t, "")
	rfc := e.osslSign(t, "future3161", append([]string{"-h", "sha256"}, e.tsArgs(future)...)...)
	want(t, verify(t, p, rfc), false, reason.NotYetValid, reason.BadTimestamp, reason.FutureTimestamp)
	legacy := e.legacySign(t, "future9", e.tsa, []*x509.Certificate{e.tsaRoot.Cert}, future)
	want(t, verify(t, p, legacy), false, reason.NotYetValid, reason.BadTimestamp, reason.FutureTimestamp)

	// Checked at a time after the stamped time (a clock, not today's
	// date, decides), the same file is good.
	eng := integrity.New(integrity.Options{Policy: p, Now: func() time.Time { return future.Add(time.Hour) }})
	v, err := eng.VerifyFile(context.Background(), rfc)
	if err != nil {
		t.Fatal(err)
	}
	want(t, v, true)
}
