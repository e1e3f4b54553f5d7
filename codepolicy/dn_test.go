package codepolicy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"
)

// rawName builds a DER Name from RDNs of (OID, value) pairs; a value that is
// an asn1.RawValue is used as is, a string becomes a UTF8String.
func rawName(t testing.TB, rdns ...[]any) []byte {
	t.Helper()
	var seq []rawRDNSET
	for _, rdn := range rdns {
		var set rawRDNSET
		for i := 0; i+1 < len(rdn); i += 2 {
			oid := mustOID(rdn[i].(string))
			var rv asn1.RawValue
			switch v := rdn[i+1].(type) {
			case asn1.RawValue:
				rv = v
			case string:
				b, err := asn1.MarshalWithParams(v, "utf8")
				if err != nil {
					t.Fatal(err)
				}
				rv = asn1.RawValue{FullBytes: b}
			}
			set = append(set, rawATV{Type: oid, Value: rv})
		}
		seq = append(seq, set)
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func strVal(tag int, b []byte) asn1.RawValue {
	der, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: b})
	return asn1.RawValue{FullBytes: der}
}

const (
	oidCN = "2.5.4.3"
	oidO  = "2.5.4.10"
	oidC  = "2.5.4.6"
	oidST = "2.5.4.8"
)

func TestDNMatching(t *testing.T) {
	fooBar := rawName(t, []any{oidC, "US"}, []any{oidO, "Bar"}, []any{oidCN, "Foo"})
	multi := rawName(t, []any{oidO, "Bar", oidCN, "Foo"}) // one multi-valued RDN
	bmp := rawName(t, []any{oidCN, strVal(asn1.TagBMPString, []byte{0, 'F', 0, 'o', 0, 'o'})}, []any{oidO, strVal(asn1.TagPrintableString, []byte("Bar"))})
	t61 := rawName(t, []any{oidCN, strVal(asn1.TagT61String, []byte("Caf\xe9"))})
	quoted := rawName(t, []any{oidO, "Foo, Inc."}, []any{oidCN, `A+B "q" \ <x>;`})
	spaces := rawName(t, []any{oidCN, "  Foo   Bar "})
	state := rawName(t, []any{oidST, "Washington"}, []any{"1.2.840.113549.1.9.1", "a@b.c"})
	integer := rawName(t, []any{"1.2.3.4", asn1.RawValue{FullBytes: []byte{2, 1, 5}}}, []any{oidCN, "X"})

	for _, c := range []struct {
		text  string
		der   []byte
		match bool
	}{
		{"CN=Foo, O=Bar, C=US", fooBar, true},
		{"C=US,O=Bar,CN=Foo", fooBar, true},
		{"  o = Bar ;  cn = Foo ,c=US ", fooBar, true},
		{"/C=US/O=Bar/CN=Foo", fooBar, true},
		{"subject=C = US, O = Bar, CN = Foo", fooBar, true},
		{"issuer= C=US, O=Bar, CN=Foo", fooBar, true},
		{"2.5.4.3=Foo, OID.2.5.4.10=Bar, countryName=US", fooBar, true},
		{"CN=Foo+O=Bar+C=US", fooBar, true},
		{"CN=#0c03466f6f, O=Bar, C=US", fooBar, true}, // #hex UTF8String
		{"CN=foo, O=Bar, C=US", fooBar, false},        // values are case-sensitive
		{"CN=Foo, O=Bar", fooBar, false},              // no subset matches
		{"CN=Foo, O=Bar, C=US, C=US", fooBar, false},  // multiset
		{"CN=Foo, O=Baz, C=US", fooBar, false},
		{"O=Bar, CN=Foo", multi, true},
		{"CN=Foo+O=Bar", multi, true},
		{"CN=Foo, O=Bar", bmp, true},
		{"CN=Caf\u00e9", t61, true},
		{`CN=Caf\C3\A9`, t61, true},
		{`O="Foo, Inc.", CN=A\+B \"q\" \\ \<x\>\;`, quoted, true},
		{`O=Foo\, Inc., CN="A+B \"q\" \\ <x>;"`, quoted, true},
		{"CN=Foo Bar", spaces, true},
		{"CN=  Foo Bar", spaces, true},
		{"CN=FooBar", spaces, false},
		{"S=Washington, E=a@b.c", state, true},
		{"ST=Washington, emailAddress=a@b.c", state, true},
		{"1.2.3.4=#020105, CN=X", integer, true},
		{"1.2.3.4=#020106, CN=X", integer, false},
		{"1.2.3.4=5, CN=X", integer, false}, // a string never equals a non-string value
	} {
		want, err := keyOfRawDN(c.der)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseDN(c.text)
		if err != nil {
			t.Errorf("parseDN(%q): %v", c.text, err)
			continue
		}
		if (got == want) != c.match {
			t.Errorf("parseDN(%q) match = %v, want %v\n got  %q\n cert %q", c.text, got == want, c.match, got, want)
		}
	}
}

func TestDNErrors(t *testing.T) {
	for _, s := range []string{"", "   ", "CN", "XX=Foo", "CN=Foo,", "CN=Foo, ,O=Bar", `CN="Foo`, `CN="Foo" x`, "CN=#zz", "CN=#0c03466f", "CN=#0c03466f6f00", `CN=Foo\`, "=Foo", "OID.=x", "99.1=x"} {
		if _, err := parseDN(s); err == nil {
			t.Errorf("parseDN(%q): no error", s)
		}
	}
}

func TestFormatRawDNRoundTrip(t *testing.T) {
	for _, der := range [][]byte{
		rawName(t, []any{oidC, "US"}, []any{oidO, "Microsoft Corporation"}, []any{oidCN, "Microsoft Windows Production PCA 2011"}),
		rawName(t, []any{oidO, "Foo, Inc."}, []any{oidCN, `#lead "q" a+b\c <x>;`}),
		rawName(t, []any{oidO, "Bar", oidCN, "Foo"}),
		rawName(t, []any{"1.2.3.4", asn1.RawValue{FullBytes: []byte{2, 1, 5}}}, []any{"1.3.6.1.4.1.311.60.2.1.3", "US"}),
		rawName(t, []any{oidCN, "tab\there\x01"}),
	} {
		text, err := formatRawDN(der)
		if err != nil {
			t.Fatal(err)
		}
		k1, _ := keyOfRawDN(der)
		k2, err := parseDN(text)
		if err != nil || k1 != k2 {
			t.Errorf("formatRawDN → %q does not parse back (%v)", text, err)
		}
	}
	text, _ := formatRawDN(rawName(t, []any{oidC, "US"}, []any{oidO, "Microsoft Corporation"}, []any{oidCN, "Microsoft Windows Production PCA 2011"}))
	if text != "CN=Microsoft Windows Production PCA 2011, O=Microsoft Corporation, C=US" {
		t.Errorf("formatRawDN = %q (RFC 4514 order, last RDN first)", text)
	}
}

// selfSigned makes a certificate whose subject and issuer are the DER name.
func selfSigned(t testing.TB, name []byte) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), RawSubject: name, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDNMatchingOnCertificates(t *testing.T) {
	// A BMPString issuer and multi-valued RDN, through the public API.
	name := rawName(t, []any{oidC, "US"}, []any{oidO, strVal(asn1.TagBMPString, []byte{0, 'A', 0, 'c', 0, 'm', 0, 'e'}), oidCN, "Acme Signer"})
	cert := selfSigned(t, name)
	p := mustParse(t, `
revocations: [{issuer: "CN=Acme Signer, O=Acme, C=US", serial: "07"}]
allow_signers: [{subject: "C=US/O=Acme", comment: subset - never matches}, {subject: "  cn=Acme Signer+o=Acme ,C=US"}]
`, "")
	if p.Revocation(cert) == nil {
		t.Error("issuer+serial did not match a BMPString, multi-valued issuer")
	}
	if !p.SignerAllowed(cert) {
		t.Error("subject did not match")
	}
	if !strings.Contains(p.AllowSigners[1].Subject, "cn=Acme") {
		t.Error("subject text should be kept as written")
	}
}
