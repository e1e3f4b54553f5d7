package codepolicy

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
)

func ts(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func TestRevocationRejects(t *testing.T) {
	at := ts("2026-01-01T00:00:00Z")
	before, same, after := ts("2025-12-31T23:59:59Z"), ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:00:01Z")
	for _, c := range []struct {
		name string
		r    *Revocation
		ts   *time.Time
		want bool
	}{
		{"no revoked_at, no timestamp", &Revocation{}, nil, true},
		{"no revoked_at, early timestamp", &Revocation{}, ts("2000-01-01T00:00:00Z"), true},
		{"no revoked_at, keyCompromise", &Revocation{Reason: "keyCompromise"}, before, true},
		{"timestamp before revoked_at", &Revocation{RevokedAt: at}, before, false},
		{"timestamp at revoked_at", &Revocation{RevokedAt: at}, same, true},
		{"timestamp after revoked_at", &Revocation{RevokedAt: at}, after, true},
		{"no timestamp", &Revocation{RevokedAt: at}, nil, true},
		{"no timestamp, superseded", &Revocation{RevokedAt: at, Reason: "superseded"}, nil, true},
		{"superseded, timestamp before", &Revocation{RevokedAt: at, Reason: "superseded"}, before, false},
		{"cessationOfOperation, timestamp before", &Revocation{RevokedAt: at, Reason: "cessationOfOperation"}, before, false},
		{"certificateHold, timestamp before", &Revocation{RevokedAt: at, Reason: "certificateHold"}, before, false},
		{"keyCompromise, timestamp before", &Revocation{RevokedAt: at, Reason: "keyCompromise"}, before, true},
		{"keyCompromise, timestamp after", &Revocation{RevokedAt: at, Reason: "keyCompromise"}, after, true},
		{"cACompromise, timestamp before", &Revocation{RevokedAt: at, Reason: "cACompromise"}, before, true},
		{"aACompromise, timestamp before", &Revocation{RevokedAt: at, Reason: "aACompromise"}, before, true},
		{"nil entry", nil, nil, false},
	} {
		if got := c.r.Rejects(c.ts); got != c.want {
			t.Errorf("%s: Rejects = %v, want %v", c.name, got, c.want)
		}
	}
}

func sum256(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestRevocationLookup(t *testing.T) {
	root := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256})
	inter := root.NewIntermediate(testpki.Options{Key: testpki.ECDSAP256})
	leaf := inter.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x0a0bff)})
	other := inter.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x0a0c00)})
	sameKeyOtherIssuer := root.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(0x0a0bff)})

	issuers := []string{
		"CN=Vigil Test Intermediate CA, O=Vigil Test",
		"O=Vigil Test,CN=Vigil Test Intermediate CA",
		"/O=Vigil Test/CN=Vigil Test Intermediate CA",
		" o = Vigil Test ; CN = Vigil Test Intermediate CA ",
		// RFC 5280 7.1: letter case and white space runs do not matter.
		"CN=vigil test intermediate ca, O=VIGIL  TEST",
	}
	serials := []string{"0A:0b:FF", "0a0bff", "A0BFF", "00:0a:0B:ff", "0x0a0bff", "0a 0b ff"}
	for _, is := range issuers {
		for _, se := range serials {
			p := mustParse(t, fmt.Sprintf("revocations: [{issuer: %q, serial: %q}]", is, se), "")
			if p.Revocation(leaf.Cert) == nil {
				t.Errorf("issuer %q serial %q: no match", is, se)
			}
			if p.Revocation(other.Cert) != nil || p.Revocation(sameKeyOtherIssuer.Cert) != nil || p.Revocation(inter.Cert) != nil {
				t.Errorf("issuer %q serial %q: matched the wrong certificate", is, se)
			}
		}
	}
	for _, is := range []string{"CN=Vigil Test Intermediate CA", "CN=Vigil Test Root CA, O=Vigil Test", "CN=VigilTest Intermediate CA, O=Vigil Test"} {
		p := mustParse(t, fmt.Sprintf("revocations: [{issuer: %q, serial: '0a0bff'}]", is), "")
		if p.Revocation(leaf.Cert) != nil {
			t.Errorf("issuer %q matched", is)
		}
	}

	// tbs_sha256 names one certificate; spki_sha256 every certificate of a key.
	p := mustParse(t, fmt.Sprintf("revocations: [{tbs_sha256: %s}, {spki_sha256: %s, revoked_at: 2026-01-01T00:00:00Z}]",
		sum256(leaf.Cert.RawTBSCertificate), sum256(other.Cert.RawSubjectPublicKeyInfo)), "")
	if r := p.Revocation(leaf.Cert); r == nil || r.TBSSHA256 == "" || !r.Rejects(ts("2000-01-01T00:00:00Z")) {
		t.Errorf("tbs_sha256 lookup: %+v", r)
	}
	if r := p.Revocation(other.Cert); r == nil || r.SPKISHA256 == "" || r.Rejects(ts("2025-01-01T00:00:00Z")) {
		t.Errorf("spki_sha256 lookup: %+v", r)
	}
	if p.Revocation(inter.Cert) != nil || p.Revocation(nil) != nil {
		t.Error("unrelated certificate matched")
	}

	// Several entries for one certificate: the strictest wins.
	p = mustParse(t, fmt.Sprintf(`revocations:
  - {issuer: "CN=Vigil Test Intermediate CA, O=Vigil Test", serial: 0a0bff, revoked_at: 2026-03-01T00:00:00Z}
  - {issuer: "O=Vigil Test, CN=Vigil Test Intermediate CA", serial: 0a0bff, revoked_at: 2026-02-01T00:00:00Z, reason: superseded}
  - {spki_sha256: %s, revoked_at: 2026-04-01T00:00:00Z}
`, sum256(leaf.Cert.RawSubjectPublicKeyInfo)), "")
	if r := p.Revocation(leaf.Cert); r == nil || !r.RevokedAt.Equal(*ts("2026-02-01T00:00:00Z")) {
		t.Errorf("strictest of dated entries: %+v", r)
	}
	p = mustParse(t, fmt.Sprintf(`revocations:
  - {issuer: "CN=Vigil Test Intermediate CA, O=Vigil Test", serial: 0a0bff, revoked_at: 2026-02-01T00:00:00Z}
  - {tbs_sha256: %s, revoked_at: 2026-09-01T00:00:00Z, reason: keyCompromise}
`, sum256(leaf.Cert.RawTBSCertificate)), "")
	if r := p.Revocation(leaf.Cert); r == nil || r.Reason != "keyCompromise" {
		t.Errorf("a keyCompromise entry is stricter than any date: %+v", r)
	}
	// The result is a copy.
	r := p.Revocation(leaf.Cert)
	r.Reason = ""
	if p.Revocation(leaf.Cert).Reason != "keyCompromise" {
		t.Error("Revocation returned the index's own entry")
	}
}

func TestDenyHash(t *testing.T) {
	f := "9368e51ec98e2ad20893a5fc21e6a8b20c5bee158d5c49ca58649cff84db9d68"
	a1 := "0cb5fc2ee1ba75e5b8ed06f92d4edaf08b136333"
	a256 := "4ae065383a4ef5564a515d12adf18427f8d74cc15140edb95e5e2a51ca44fe42"
	p := mustParse(t, fmt.Sprintf("deny: {sha256: [%s], authentihash_sha1: [%s], authentihash_sha256: [%s]}", f, a1, a256), "")
	for _, c := range []struct {
		f, a1, a256 []byte
		rule        string
	}{
		{mustHex(f), nil, nil, "deny.sha256:" + f},
		{nil, mustHex(a1), nil, "deny.authentihash_sha1:" + a1},
		{nil, nil, mustHex(a256), "deny.authentihash_sha256:" + a256},
		{mustHex(a256), mustHex(f[:40]), mustHex(f), ""}, // right values, wrong lists
		{nil, nil, nil, ""},
		{mustHex(f[:62]), nil, nil, ""},
	} {
		rule, denied := p.DenyHash(c.f, c.a1, c.a256)
		if rule != c.rule || denied != (c.rule != "") {
			t.Errorf("DenyHash(%x, %x, %x) = %q, %v; want %q", c.f, c.a1, c.a256, rule, denied, c.rule)
		}
	}
}

func TestDenySigner(t *testing.T) {
	h := testpki.NewHierarchy(testpki.Options{Key: testpki.ECDSAP256})
	tbs := h.Intermediate.Cert.RawTBSCertificate
	s1, s256, s384, s512 := sha1.Sum(tbs), sha256.Sum256(tbs), sha512.Sum384(tbs), sha512.Sum512(tbs)
	for _, c := range []struct {
		key string
		sum []byte
	}{{"signer_tbs_sha1", s1[:]}, {"signer_tbs_sha256", s256[:]}, {"signer_tbs_sha384", s384[:]}, {"signer_tbs_sha512", s512[:]}} {
		p := mustParse(t, fmt.Sprintf("deny: {%s: [%X]}", c.key, c.sum), "")
		rule, denied := p.DenySigner(h.Intermediate.Cert)
		if !denied || rule != "deny."+c.key+":"+hex.EncodeToString(c.sum) {
			t.Errorf("%s: DenySigner = %q, %v", c.key, rule, denied)
		}
		if _, denied := p.DenySigner(h.Leaf.Cert); denied {
			t.Errorf("%s: the leaf was denied", c.key)
		}
	}
	if _, denied := Default().DenySigner(h.Leaf.Cert); denied {
		t.Error("empty policy denied a signer")
	}
}

func TestSignerAllowed(t *testing.T) {
	h := testpki.NewHierarchy(testpki.Options{Key: testpki.ECDSAP256, CommonName: "Contoso Driver Signing"})
	other := h.Intermediate.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, CommonName: "Someone Else"})
	leafTBS, leafSPKI := sum256(h.Leaf.Cert.RawTBSCertificate), sum256(h.Leaf.Cert.RawSubjectPublicKeyInfo)
	if !Default().SignerAllowed(other.Cert) {
		t.Error("no allow_signers must allow everyone")
	}
	for _, c := range []struct {
		entry         string
		leaf, another bool
	}{
		{`{subject: "CN=Contoso Driver Signing, O=Vigil Test"}`, true, false},
		{`{subject: "CN=Contoso Driver Signing"}`, false, false}, // no subset matches
		{`{issuer: "CN=Vigil Test Intermediate CA, O=Vigil Test"}`, true, true},
		{`{subject: "CN=Contoso Driver Signing, O=Vigil Test", issuer: "CN=Vigil Test Root CA, O=Vigil Test"}`, false, false},
		{`{tbs_sha256: ` + leafTBS + `}`, true, false},
		{`{spki_sha256: ` + leafSPKI + `}`, true, false},
		{`{subject: "CN=Someone Else, O=Vigil Test", spki_sha256: ` + leafSPKI + `}`, false, false},
	} {
		p := mustParse(t, "allow_signers: ["+c.entry+"]", "")
		if got := p.SignerAllowed(h.Leaf.Cert); got != c.leaf {
			t.Errorf("%s: leaf allowed = %v", c.entry, got)
		}
		if got := p.SignerAllowed(other.Cert); got != c.another {
			t.Errorf("%s: other allowed = %v", c.entry, got)
		}
		if p.SignerAllowed(nil) {
			t.Errorf("%s: nil allowed", c.entry)
		}
	}
	// Entries are alternatives.
	p := mustParse(t, `allow_signers: [{subject: "CN=Nobody"}, {subject: "CN=Someone Else, O=Vigil Test"}]`, "")
	if !p.SignerAllowed(other.Cert) || p.SignerAllowed(h.Leaf.Cert) {
		t.Error("allow_signers entries are not alternatives")
	}
}

func TestHashAllowed(t *testing.T) {
	for _, c := range []struct {
		min  string
		h    crypto.Hash
		want bool
	}{
		{"sha1", crypto.SHA1, true}, {"sha1", crypto.MD5, false}, {"sha256", crypto.SHA1, false},
		{"sha256", crypto.SHA256, true}, {"sha256", crypto.SHA384, true}, {"sha384", crypto.SHA256, false},
		{"sha512", crypto.SHA384, false}, {"sha512", crypto.SHA512, true}, {"sha1", crypto.SHA3_256, false},
	} {
		p := mustParse(t, "min_hash: "+c.min, "")
		if got := p.HashAllowed(c.h); got != c.want {
			t.Errorf("min %s, HashAllowed(%v) = %v", c.min, c.h, got)
		}
	}
}
