package evidence

import (
	"context"
	"crypto"
	"slices"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/enclave"
)

// enrolled is a seed's enclave kind and enrolled key (the AK, or the
// software report key).
func enrolled(tb testing.TB, fx *fixture) (enclave.Kind, crypto.PublicKey) {
	tb.Helper()
	if fx.tpm != nil {
		return enclave.TPM, fx.opts.AK
	}
	pk, err := parsePublicPEM(fx.ev.ReportKey.Public)
	if err != nil {
		tb.Fatal(err)
	}
	return enclave.Software, pk
}

// TestOrigin: every seed is its key holder's; another key, another
// nonce, another enclave kind or evidence that is the key holder's only
// after a change of what the signatures bind is not. Evidence whose
// signed parts are intact is the holder's even when Verify refuses it.
func TestOrigin(t *testing.T) {
	other := newFixture(t, fixtureOptions{id: "someone-else", alg: akECDSA})
	otherSoft := newFixture(t, fixtureOptions{id: "someone-else", software: true})
	for _, fx := range seeds(t) {
		kind, key := enrolled(t, fx)
		t.Run(string(kind)+"-"+fx.ev.Enclave, func(t *testing.T) {
			if r, err := Origin(fx.ev, fx.nonce, kind, key); err != nil {
				t.Fatalf("the seed: %s %v", r, err)
			}
			okey := other.opts.AK
			if kind == enclave.Software {
				okey, _ = parsePublicPEM(otherSoft.ev.ReportKey.Public)
			}
			if r, _ := Origin(fx.ev, fx.nonce, kind, okey); r == "" {
				t.Fatal("another key's holder")
			}
			if r, _ := Origin(fx.ev, []byte("another nonce!!!"), kind, key); r == "" {
				t.Fatal("another nonce")
			}
			if r, _ := Origin(fx.ev, fx.nonce[:4], kind, key); r != NonceMismatch {
				t.Fatalf("a short nonce: %q", r)
			}
			wrongKind := enclave.Software
			if kind == enclave.Software {
				wrongKind = enclave.TPM
			}
			if r, _ := Origin(fx.ev, fx.nonce, wrongKind, key); r != EnclaveMismatch {
				t.Fatalf("another enclave: %q", r)
			}
			changed := clone(t, fx.ev)
			changed.Report = append(changed.Report, ' ')
			if r, _ := Origin(changed, fx.nonce, kind, key); r == "" {
				t.Fatal("a changed report")
			}
			if r, _ := Origin(nil, fx.nonce, kind, key); r != Malformed {
				t.Fatalf("no evidence: %q", r)
			}
			if kind != enclave.TPM {
				return
			}
			// Still the holder's: the quote altered (PCR values, its
			// signature), as long as the certification stands, or the
			// certification altered while the quote stands.
			q := clone(t, fx.ev)
			q.Quote.Signature = flip(q.Quote.Signature, -1)
			if r, err := Origin(q, fx.nonce, kind, key); err != nil {
				t.Fatalf("quote signature changed, certification intact: %s %v", r, err)
			}
			if res := Verify(context.Background(), q, fx.opts); res.Valid {
				t.Fatal("Verify accepts a changed quote")
			}
			c := clone(t, fx.ev)
			c.ReportKey.CertifySignature = flip(c.ReportKey.CertifySignature, -1)
			if r, err := Origin(c, fx.nonce, kind, key); err != nil {
				t.Fatalf("certification changed, quote intact: %s %v", r, err)
			}
			both := clone(t, q)
			both.ReportKey.CertifySignature = c.ReportKey.CertifySignature
			if r, _ := Origin(both, fx.nonce, kind, key); r != BadQuoteSignature {
				t.Fatalf("both changed: %q", r)
			}
			none := clone(t, fx.ev)
			none.Quote, none.ReportKey.CertifyInfo, none.ReportKey.CertifySignature = nil, nil, nil
			if r, _ := Origin(none, fx.nonce, kind, key); r != EnclaveMismatch {
				t.Fatalf("neither: %q", r)
			}
		})
	}
}

// TestKeyProof: a proof verifies for its purpose, agent, time and key
// only.
func TestKeyProof(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, fx := range seeds(t)[:2] {
		kind, key := enrolled(t, fx)
		var e enclave.Enclave = fx.tpm
		if fx.tpm == nil {
			e = newSoft(t, "agent-a")
		}
		t.Run(string(kind), func(t *testing.T) {
			p, err := ProveKey(context.Background(), e, "challenge", "agent-a", now)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := CheckKeyProof(p, "challenge", "agent-a", kind, key); err != nil {
				t.Fatalf("%s %v", r, err)
			}
			if r, _ := CheckKeyProof(p, "other", "agent-a", kind, key); r == "" {
				t.Fatal("another purpose")
			}
			if r, _ := CheckKeyProof(p, "challenge", "agent-b", kind, key); r == "" {
				t.Fatal("another agent")
			}
			later := *p
			later.Time = later.Time.Add(time.Second)
			if r, _ := CheckKeyProof(&later, "challenge", "agent-a", kind, key); r == "" {
				t.Fatal("another time")
			}
			if r, _ := CheckKeyProof(nil, "challenge", "agent-a", kind, key); r != Malformed {
				t.Fatalf("no proof: %q", r)
			}
			// An evidence signature is no key proof (different labels).
			ev := &KeyProof{Time: now, Signature: fx.ev.ReportSignature, CertifyInfo: fx.ev.ReportKey.CertifyInfo, CertifySignature: fx.ev.ReportKey.CertifySignature}
			if r, _ := CheckKeyProof(ev, "challenge", "agent-a", kind, key); r == "" {
				t.Fatal("an evidence signature passed as a key proof")
			}
		})
	}
}

// FuzzOrigin: Origin never panics, and it agrees with Verify: when it
// says the evidence is the enrolled key's, Verify found the signature it
// relied on good and bound (no bad-report-signature for software; for a
// TPM, the quote or the certification free of signature and binding
// failures).
func FuzzOrigin(f *testing.F) {
	list := seeds(f)
	for i, fx := range list {
		b, err := fx.ev.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i))
	}
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		fx := list[int(which)%len(list)]
		kind, key := enrolled(t, fx)
		if r, err := Origin(ev, fx.nonce, kind, key); err != nil || r != "" {
			return
		}
		res := Verify(context.Background(), ev, fx.opts)
		has := func(r Reason) bool { return slices.Contains(res.Reasons, r) }
		switch kind {
		case enclave.Software:
			if has(BadReportSignature) || has(EnclaveMismatch) {
				t.Fatalf("Origin holds, Verify says %v", res.Reasons)
			}
		case enclave.TPM:
			quoteOK := !has(BadQuoteSignature) && !has(QuoteBindingMismatch)
			certOK := !has(BadCertifySignature) && !has(CertifyBindingMismatch)
			if !quoteOK && !certOK {
				t.Fatalf("Origin holds, Verify says %v", res.Reasons)
			}
		}
	})
}
