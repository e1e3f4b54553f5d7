package integrity_test

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/cms"
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
