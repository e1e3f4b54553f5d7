package evidence

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// goTPM decodes b with go-tpm, exactly: tpm2.Unmarshal, and tpm2.Marshal
// of the result must give b back. It is the reference the decoders of
// tpmstruct.go are held to.
func goTPM[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (t *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("go-tpm panicked: %v", r)
		}
	}()
	t, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*t), b) {
		return nil, errors.New("go-tpm re-encodes it differently")
	}
	return t, nil
}

// sameAttest compares our decoding of a TPMS_ATTEST with go-tpm's.
func sameAttest(a *attest, b []byte) error {
	g, err := goTPM[tpm2.TPMSAttest](b)
	if err != nil {
		return fmt.Errorf("go-tpm refuses what we accept: %v", err)
	}
	if g.Magic != tpm2.TPMGeneratedValue || g.Type != a.typ || !bytes.Equal(g.QualifiedSigner.Buffer, a.qualifiedSigner) ||
		!bytes.Equal(g.ExtraData.Buffer, a.extraData) || g.ClockInfo.Clock != a.clock.Clock ||
		g.ClockInfo.ResetCount != a.clock.ResetCount || g.ClockInfo.RestartCount != a.clock.RestartCount ||
		bool(g.ClockInfo.Safe) != a.clock.Safe || g.FirmwareVersion != a.clock.FirmwareVersion {
		return errors.New("header differs")
	}
	switch a.typ {
	case tpm2.TPMSTAttestQuote:
		q, err := g.Attested.Quote()
		if err != nil {
			return err
		}
		if len(q.PCRSelect.PCRSelections) != len(a.pcrSelect) || !bytes.Equal(q.PCRDigest.Buffer, a.pcrDigest) {
			return errors.New("quote info differs")
		}
		for i, s := range q.PCRSelect.PCRSelections {
			if tpm2.TPMAlgID(s.Hash) != a.pcrSelect[i].hash || !bytes.Equal(s.PCRSelect, a.pcrSelect[i].bitmap) {
				return fmt.Errorf("PCR selection %d differs", i)
			}
		}
	case tpm2.TPMSTAttestCertify:
		c, err := g.Attested.Certify()
		if err != nil {
			return err
		}
		if !bytes.Equal(c.Name.Buffer, a.name) || !bytes.Equal(c.QualifiedName.Buffer, a.qualifiedName) {
			return errors.New("certify info differs")
		}
	}
	return nil
}

func sameSignature(s *signature, b []byte) error {
	g, err := goTPM[tpm2.TPMTSignature](b)
	if err != nil {
		return fmt.Errorf("go-tpm refuses what we accept: %v", err)
	}
	if g.SigAlg != s.alg {
		return errors.New("sigAlg differs")
	}
	switch s.alg {
	case tpm2.TPMAlgECDSA:
		e, err := g.Signature.ECDSA()
		if err != nil {
			return err
		}
		if tpm2.TPMAlgID(e.Hash) != s.hash || !bytes.Equal(e.SignatureR.Buffer, s.r) || !bytes.Equal(e.SignatureS.Buffer, s.s) {
			return errors.New("ECDSA signature differs")
		}
	default:
		r, err := g.Signature.RSASSA()
		if s.alg == tpm2.TPMAlgRSAPSS {
			r, err = g.Signature.RSAPSS()
		}
		if err != nil {
			return err
		}
		if tpm2.TPMAlgID(r.Hash) != s.hash || !bytes.Equal(r.Sig.Buffer, s.sig) {
			return errors.New("RSA signature differs")
		}
	}
	return nil
}

func samePublic(p *public, b []byte) error {
	g, err := goTPM[tpm2.TPMTPublic](b)
	if err != nil {
		return fmt.Errorf("go-tpm refuses what we accept: %v", err)
	}
	a := g.ObjectAttributes
	var attrs uint32
	for _, f := range []struct {
		set bool
		bit uint32
	}{{a.FixedTPM, attrFixedTPM}, {a.FixedParent, attrFixedParent}, {a.SensitiveDataOrigin, attrSensitiveDataOrigin},
		{a.Restricted, attrRestricted}, {a.Decrypt, attrDecrypt}, {a.SignEncrypt, attrSign}} {
		if f.set {
			attrs |= f.bit
		}
	}
	const known = attrFixedTPM | attrFixedParent | attrSensitiveDataOrigin | attrRestricted | attrDecrypt | attrSign
	if g.Type != p.typ || g.NameAlg != p.nameAlg || p.attrs&known != attrs || !bytes.Equal(g.AuthPolicy.Buffer, p.authPolicy) {
		return fmt.Errorf("header differs: attributes %#x, go-tpm %#x", p.attrs&known, attrs)
	}
	if want := binary.BigEndian.Uint32(b[4:]); p.attrs != want {
		return errors.New("attribute bits differ")
	}
	gk, err := tpm2.Pub(*g)
	if err != nil {
		return err
	}
	switch k := p.key.(type) {
	case *rsa.PublicKey:
		d, err := g.Parameters.RSADetail()
		if err != nil {
			return err
		}
		if d.Symmetric.Algorithm != tpm2.TPMAlgNull || d.Scheme.Scheme != p.scheme || d.KeyBits != tpm2.TPMKeyBits(p.keyBits) || d.Exponent != p.exponent {
			return errors.New("RSA parameters differ")
		}
		if gr, ok := gk.(*rsa.PublicKey); !ok || !gr.Equal(k) {
			return errors.New("RSA key differs")
		}
	case *ecdsa.PublicKey:
		d, err := g.Parameters.ECCDetail()
		if err != nil {
			return err
		}
		if d.Symmetric.Algorithm != tpm2.TPMAlgNull || d.Scheme.Scheme != p.scheme || d.CurveID != p.curve || d.KDF.Scheme != tpm2.TPMAlgNull {
			return errors.New("ECC parameters differ")
		}
		if ge, ok := gk.(*ecdsa.PublicKey); !ok || !ge.Equal(k) {
			return errors.New("ECC key differs")
		}
	default:
		return fmt.Errorf("key %T", k)
	}
	if p.scheme != tpm2.TPMAlgNull {
		var h tpm2.TPMIAlgHash
		switch p.scheme {
		case tpm2.TPMAlgRSASSA:
			d, _ := g.Parameters.RSADetail()
			s, err := d.Scheme.Details.RSASSA()
			if err != nil {
				return err
			}
			h = s.HashAlg
		case tpm2.TPMAlgRSAPSS:
			d, _ := g.Parameters.RSADetail()
			s, err := d.Scheme.Details.RSAPSS()
			if err != nil {
				return err
			}
			h = s.HashAlg
		case tpm2.TPMAlgECDSA:
			d, _ := g.Parameters.ECCDetail()
			s, err := d.Scheme.Details.ECDSA()
			if err != nil {
				return err
			}
			h = s.HashAlg
		}
		if tpm2.TPMAlgID(h) != p.schemeHash {
			return errors.New("scheme hash differs")
		}
	}
	return nil
}

// checkTPMBytes decodes b as each structure; whatever our decoders
// accept go-tpm must accept and read the same way.
func checkTPMBytes(t testing.TB, b []byte) {
	for _, typ := range []tpm2.TPMST{tpm2.TPMSTAttestQuote, tpm2.TPMSTAttestCertify} {
		if a, err := decodeAttest(b, typ); err == nil {
			if err := sameAttest(a, b); err != nil {
				t.Fatalf("TPMS_ATTEST %x: %v", b, err)
			}
		}
	}
	if s, err := decodeSignature(b); err == nil {
		if err := sameSignature(s, b); err != nil {
			t.Fatalf("TPMT_SIGNATURE %x: %v", b, err)
		}
	}
	if p, err := decodePublic(b); err == nil {
		if err := samePublic(p, b); err != nil {
			t.Fatalf("TPMT_PUBLIC %x: %v", b, err)
		}
	}
	if n, err := ObjectName(b); err == nil {
		if g, gerr := goTPM[tpm2.TPMTPublic](b); gerr == nil {
			want, err := tpm2.ObjectName(g)
			if err != nil || !bytes.Equal(n, want.Buffer) {
				t.Fatalf("ObjectName %x differs from go-tpm's", b)
			}
		}
	}
}

// tpmCorpus is every TPM structure of the fixtures: quotes,
// certifications, signatures and public areas of each AK algorithm, RSA
// keys with the TPM's default exponent, ECC keys of other schemes.
func tpmCorpus(tb testing.TB) [][]byte {
	var out [][]byte
	for _, alg := range []akAlg{akECDSA, akRSASSA, akRSAPSS} {
		fx := newFixture(tb, fixtureOptions{alg: alg, logs: true})
		ev := fx.ev
		out = append(out, ev.Quote.Attest, ev.Quote.Signature, ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature,
			ev.ReportKey.TPMPublic, ev.AK.Public)
	}
	k := testKey(tb, "agent-a/ak/rsassa-2048", true)
	out = append(out,
		tpmPublic(k.Public(), tpm2.TPMAlgNull, false, nil),
		tpmPublic(k.Public(), tpm2.TPMAlgRSASSA, true, func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.RSADetail()
			d.Exponent = 65537
			p.AuthPolicy.Buffer = bytes.Repeat([]byte{7}, 32)
			p.ObjectAttributes.NoDA = true
		}),
		tpmPublic(testKey(tb, "agent-a/rk", false).Public(), tpm2.TPMAlgECDSA, false, func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
		}),
	)
	return out
}

func TestTPMStructuresAgainstGoTPM(t *testing.T) {
	corpus := tpmCorpus(t)
	for i, b := range corpus {
		checkTPMBytes(t, b)
		// Every structure decodes as what it is.
		ok := 0
		if _, err := decodeAttest(b, tpm2.TPMSTAttestQuote); err == nil {
			ok++
		}
		if _, err := decodeAttest(b, tpm2.TPMSTAttestCertify); err == nil {
			ok++
		}
		if _, err := decodeSignature(b); err == nil {
			ok++
		}
		if _, err := decodePublic(b); err == nil {
			ok++
		}
		if ok != 1 {
			t.Errorf("corpus %d decodes as %d structures", i, ok)
		}
		// Every truncation, extension and single-byte change too.
		for j := 0; j < len(b); j++ {
			checkTPMBytes(t, b[:j])
			checkTPMBytes(t, flip(b, j))
			c := bytes.Clone(b)
			c[j] = 0xff
			checkTPMBytes(t, c)
		}
		checkTPMBytes(t, append(bytes.Clone(b), 0))
	}
}

func TestDecodeTPMStructures(t *testing.T) {
	fx := newFixture(t, fixtureOptions{})
	q := fx.ev.Quote
	if _, err := decodeAttest(q.Attest, tpm2.TPMSTAttestQuote); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		b    []byte
		want error
	}{
		{nil, errTPMStructure},
		{q.Attest[:5], errTPMStructure},
		{flip(q.Attest, 0), errBadMagic},
		{flip(q.Attest, 5), errAttestType},
		{append(bytes.Clone(q.Attest), 0), errTPMStructure},
		{q.Attest[:len(q.Attest)-1], errTPMStructure},
		{append(bytes.Clone(q.Attest[:6]), bytes.Repeat([]byte{0xff}, 5000)...), errTPMStructure},
	} {
		if _, err := decodeAttest(c.b, tpm2.TPMSTAttestQuote); !errors.Is(err, c.want) {
			t.Errorf("decodeAttest(%x…) = %v, want %v", c.b[:min(8, len(c.b))], err, c.want)
		}
	}
	if _, err := decodeSignature(append(bytes.Clone(q.Signature), 0)); !errors.Is(err, errTPMStructure) {
		t.Error(err)
	}
	p, err := decodePublic(fx.ev.AK.Public)
	if err != nil || p.typ != tpm2.TPMAlgECC || !sameKey(p.key, fx.opts.AK) {
		t.Fatal(err)
	}
	// An RSA modulus shorter than its key bits.
	rsaPub := tpmPublic(newFakeTPM(t, "agent-a", akRSASSA).ak.Public(), tpm2.TPMAlgRSASSA, true, func(p *tpm2.TPMTPublic) {
		u, _ := p.Unique.RSA()
		u.Buffer = u.Buffer[1:]
	})
	if _, err := decodePublic(rsaPub); err == nil {
		t.Error("short modulus accepted")
	}
	// A signing key with a symmetric algorithm, a KDF, a decryption scheme.
	rk := &testKey(t, "agent-a/rk", false).(*ecdsa.PrivateKey).PublicKey
	for name, mod := range map[string]func(*tpm2.TPMTPublic){
		"symmetric": func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.Symmetric = tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgAES, KeyBits: tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
				Mode: tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB)}
		},
		"kdf": func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.KDF = tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgKDF2, Details: tpm2.NewTPMUKDFScheme(tpm2.TPMAlgKDF2, &tpm2.TPMSKDFSchemeKDF2{HashAlg: tpm2.TPMAlgSHA256})}
		},
		"ecdh": func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDH, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDH, &tpm2.TPMSKeySchemeECDH{HashAlg: tpm2.TPMAlgSHA256})}
		},
		"curve": func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.CurveID = tpm2.TPMECCBNP256
		},
	} {
		b := tpmPublic(rk, tpm2.TPMAlgECDSA, false, mod)
		if _, err := goTPM[tpm2.TPMTPublic](b); err != nil {
			t.Fatalf("%s: go-tpm: %v", name, err)
		}
		if _, err := decodePublic(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	name, err := ObjectName(fx.ev.ReportKey.TPMPublic)
	if err != nil || binary.BigEndian.Uint16(name) != uint16(tpm2.TPMAlgSHA256) || len(name) != 34 {
		t.Fatal(name, err)
	}
	if _, err := ObjectName([]byte{0, 0x23, 0x12, 0x34}); err == nil {
		t.Error("unknown nameAlg accepted")
	}
	if !slices.Equal(fx.ev.Quote.PCRSelection["sha256"], DefaultPCRs["sha256"]) {
		t.Fatal(fx.ev.Quote.PCRSelection)
	}
}
