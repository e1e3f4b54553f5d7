package evidence

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// The TPM structures of evidence are decoded here, on Verify's hot path,
// by a small strict decoder of the three structures it needs (TPM 2.0
// Part 2: TPMS_ATTEST 10.12.12, TPMT_SIGNATURE 11.3.4, TPMT_PUBLIC
// 12.2.4). It accepts a subset of what go-tpm's reflective
// tpm2.Unmarshal accepts — exactly one structure, nothing after it, only
// the algorithms a signing key of an attestation can have — and reads
// the same values: the tests and FuzzTPMStructures hold it to go-tpm's
// decoding (tpm2.Unmarshal, then tpm2.Marshal giving the same bytes). It
// is about 50 times faster, which is most of a verification's time when
// the logs are short.

// maxTPMStructure bounds the size of one TPM structure in evidence. A
// TPMT_PUBLIC of an RSA-4096 key with a policy is under 700 bytes, a
// TPMS_ATTEST of a quote over every PCR of four banks under 300.
const maxTPMStructure = 4096

// maxPCRBanks bounds the banks of a TPML_PCR_SELECTION (HASH_COUNT of
// the reference implementation is at most a handful).
const maxPCRBanks = 16

var (
	errBadMagic     = errors.New("TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
	errAttestType   = errors.New("TPMS_ATTEST of an unexpected type")
	errTPMStructure = errors.New("malformed TPM structure")
	errUnsupported  = errors.New("unsupported key type")
)

// tpmReader reads big-endian TPM fields; the first failure sticks.
type tpmReader struct {
	b   []byte
	off int
	err error
}

func (r *tpmReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: %s: %d bytes at offset %d, %d left", errTPMStructure, what, n, r.off, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *tpmReader) u8(what string) uint8 {
	if s := r.take(1, what); s != nil {
		return s[0]
	}
	return 0
}

func (r *tpmReader) u16(what string) uint16 {
	if s := r.take(2, what); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}

func (r *tpmReader) u32(what string) uint32 {
	if s := r.take(4, what); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (r *tpmReader) u64(what string) uint64 {
	if s := r.take(8, what); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}

// sized reads a TPM2B: a 16-bit size and that many bytes. The result
// aliases the input.
func (r *tpmReader) sized(what string) []byte {
	n := r.u16(what + " size")
	if r.err != nil {
		return nil
	}
	if s := r.take(int(n), what); s != nil {
		return s
	}
	return nil
}

func (r *tpmReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errTPMStructure, fmt.Sprintf(format, args...))
	}
}

// done checks that the structure ended exactly at the end of the input.
func (r *tpmReader) done(what string) error {
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%s: %w: %d bytes after the structure", what, errTPMStructure, len(r.b)-r.off)
	}
	return nil
}

func newTPMReader(b []byte, what string) (*tpmReader, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: %w: empty", what, errTPMStructure)
	}
	if len(b) > maxTPMStructure {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than %d", what, errTPMStructure, len(b), maxTPMStructure)
	}
	return &tpmReader{b: b}, nil
}

// pcrSelect is one TPMS_PCR_SELECTION.
type pcrSelect struct {
	hash   tpm2.TPMAlgID
	bitmap []byte
}

// attest is a decoded TPMS_ATTEST of a quote or a certification.
type attest struct {
	typ             tpm2.TPMST
	qualifiedSigner []byte
	extraData       []byte
	clock           Clock
	// TPMS_QUOTE_INFO
	pcrSelect []pcrSelect
	pcrDigest []byte
	// TPMS_CERTIFY_INFO
	name, qualifiedName []byte
}

// decodeAttest decodes a TPMS_ATTEST of type typ (TPM_ST_ATTEST_QUOTE or
// TPM_ST_ATTEST_CERTIFY) exactly as a TPM emits it. It checks the magic
// (errBadMagic) and the type (errAttestType) before the rest; other
// failures wrap errTPMStructure.
func decodeAttest(b []byte, typ tpm2.TPMST) (*attest, error) {
	const what = "TPMS_ATTEST"
	r, err := newTPMReader(b, what)
	if err != nil {
		return nil, err
	}
	if len(b) < 6 {
		return nil, fmt.Errorf("%s: %w: %d bytes", what, errTPMStructure, len(b))
	}
	if m := r.u32("magic"); m != uint32(tpm2.TPMGeneratedValue) {
		return nil, fmt.Errorf("%w: 0x%08x", errBadMagic, m)
	}
	a := &attest{typ: tpm2.TPMST(r.u16("type"))}
	if a.typ != typ {
		return nil, fmt.Errorf("%w: 0x%04x, want 0x%04x", errAttestType, uint16(a.typ), uint16(typ))
	}
	a.qualifiedSigner = r.sized("qualifiedSigner")
	a.extraData = r.sized("extraData")
	a.clock.Clock = r.u64("clock")
	a.clock.ResetCount = r.u32("resetCount")
	a.clock.RestartCount = r.u32("restartCount")
	switch safe := r.u8("safe"); safe {
	case 0, 1:
		a.clock.Safe = safe == 1
	default:
		r.fail("safe is %d, not YES or NO", safe)
	}
	a.clock.FirmwareVersion = r.u64("firmwareVersion")
	switch typ {
	case tpm2.TPMSTAttestQuote:
		n := r.u32("TPML_PCR_SELECTION count")
		if n > maxPCRBanks {
			r.fail("%d PCR banks, more than %d", n, maxPCRBanks)
		}
		for i := uint32(0); i < n && r.err == nil; i++ {
			h := tpm2.TPMAlgID(r.u16("TPMS_PCR_SELECTION hash"))
			size := r.u8("sizeofSelect")
			a.pcrSelect = append(a.pcrSelect, pcrSelect{hash: h, bitmap: r.take(int(size), "pcrSelect")})
		}
		a.pcrDigest = r.sized("pcrDigest")
	case tpm2.TPMSTAttestCertify:
		a.name = r.sized("name")
		a.qualifiedName = r.sized("qualifiedName")
	default:
		return nil, fmt.Errorf("%s: %w: type 0x%04x not decoded here", what, errTPMStructure, uint16(typ))
	}
	if err := r.done(what); err != nil {
		return nil, err
	}
	return a, nil
}

// signature is a decoded TPMT_SIGNATURE of a scheme Verify supports.
type signature struct {
	alg  tpm2.TPMAlgID // TPM_ALG_ECDSA, TPM_ALG_RSASSA or TPM_ALG_RSAPSS
	hash tpm2.TPMAlgID
	r, s []byte // ECDSA
	sig  []byte // RSA
}

// decodeSignature decodes a TPMT_SIGNATURE exactly: ECDSA (hash, r, s),
// RSASSA or RSAPSS (hash, signature). Other schemes are refused.
func decodeSignature(b []byte) (*signature, error) {
	const what = "TPMT_SIGNATURE"
	r, err := newTPMReader(b, what)
	if err != nil {
		return nil, err
	}
	s := &signature{alg: tpm2.TPMAlgID(r.u16("sigAlg"))}
	switch s.alg {
	case tpm2.TPMAlgECDSA:
		s.hash = tpm2.TPMAlgID(r.u16("hash"))
		s.r = r.sized("signatureR")
		s.s = r.sized("signatureS")
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		s.hash = tpm2.TPMAlgID(r.u16("hash"))
		s.sig = r.sized("sig")
	default:
		r.fail("signature scheme 0x%04x not supported", uint16(s.alg))
	}
	if err := r.done(what); err != nil {
		return nil, err
	}
	return s, nil
}

// TPMA_OBJECT bits (Part 2, 8.3).
const (
	attrFixedTPM            = 1 << 1
	attrFixedParent         = 1 << 4
	attrSensitiveDataOrigin = 1 << 5
	attrRestricted          = 1 << 16
	attrDecrypt             = 1 << 17
	attrSign                = 1 << 18
)

// public is a decoded TPMT_PUBLIC of an RSA or ECC key.
type public struct {
	typ        tpm2.TPMAlgID
	nameAlg    tpm2.TPMAlgID
	attrs      uint32
	authPolicy []byte
	scheme     tpm2.TPMAlgID // the signing scheme, or TPM_ALG_NULL
	schemeHash tpm2.TPMAlgID // its hash (0 for TPM_ALG_NULL)
	// RSA
	keyBits  uint16
	exponent uint32
	modulus  []byte
	// ECC
	curve tpm2.TPMECCCurve
	x, y  []byte
	// key is the public key: *ecdsa.PublicKey or *rsa.PublicKey.
	key crypto.PublicKey
}

// decodePublic decodes a TPMT_PUBLIC exactly and returns its public key.
// Only what a signing key can be is accepted: RSA or ECC, no symmetric
// algorithm, a NULL KDF, and the scheme NULL, RSASSA or RSAPSS (RSA) or
// NULL or ECDSA (ECC) with its hash. An ECC point must be on a NIST
// curve; an RSA modulus must have the stated number of bits.
func decodePublic(b []byte) (*public, error) {
	const what = "TPMT_PUBLIC"
	r, err := newTPMReader(b, what)
	if err != nil {
		return nil, err
	}
	p := &public{}
	p.typ = tpm2.TPMAlgID(r.u16("type"))
	p.nameAlg = tpm2.TPMAlgID(r.u16("nameAlg"))
	p.attrs = r.u32("objectAttributes")
	p.authPolicy = r.sized("authPolicy")
	if sym := tpm2.TPMAlgID(r.u16("symmetric")); r.err == nil && sym != tpm2.TPMAlgNull {
		r.fail("symmetric algorithm 0x%04x in a signing key", uint16(sym))
	}
	p.scheme = tpm2.TPMAlgID(r.u16("scheme"))
	switch p.typ {
	case tpm2.TPMAlgRSA:
		switch p.scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
			p.schemeHash = tpm2.TPMAlgID(r.u16("scheme hash"))
		default:
			r.fail("RSA scheme 0x%04x is not a signing scheme", uint16(p.scheme))
		}
		p.keyBits = r.u16("keyBits")
		p.exponent = r.u32("exponent")
		p.modulus = r.sized("unique")
	case tpm2.TPMAlgECC:
		switch p.scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgECDSA:
			p.schemeHash = tpm2.TPMAlgID(r.u16("scheme hash"))
		default:
			r.fail("ECC scheme 0x%04x is not ECDSA", uint16(p.scheme))
		}
		p.curve = tpm2.TPMECCCurve(r.u16("curveID"))
		if kdf := tpm2.TPMAlgID(r.u16("kdf")); r.err == nil && kdf != tpm2.TPMAlgNull {
			r.fail("KDF 0x%04x in a signing key", uint16(kdf))
		}
		p.x = r.sized("unique.x")
		p.y = r.sized("unique.y")
	default:
		r.fail("key type 0x%04x is not RSA or ECC", uint16(p.typ))
	}
	if err := r.done(what); err != nil {
		return nil, err
	}
	if p.key, err = p.publicKey(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

func (p *public) publicKey() (crypto.PublicKey, error) {
	if p.typ == tpm2.TPMAlgRSA {
		n := p.modulus
		if len(n) == 0 || n[0] == 0 || len(n)*8 != int(p.keyBits) {
			return nil, fmt.Errorf("%w: RSA modulus of %d bytes for %d key bits", errTPMStructure, len(n), p.keyBits)
		}
		e := int64(p.exponent)
		if e == 0 {
			e = 65537 // the TPM's default exponent
		}
		if e < 3 || e&1 == 0 || e > 1<<31-1 {
			return nil, fmt.Errorf("%w: RSA exponent %d", errTPMStructure, e)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(e)}, nil
	}
	var c elliptic.Curve
	switch p.curve {
	case tpm2.TPMECCNistP256:
		c = elliptic.P256()
	case tpm2.TPMECCNistP384:
		c = elliptic.P384()
	case tpm2.TPMECCNistP521:
		c = elliptic.P521()
	default:
		return nil, fmt.Errorf("%w: ECC curve 0x%04x", errUnsupported, uint16(p.curve))
	}
	size := (c.Params().BitSize + 7) / 8
	if len(p.x) > size || len(p.y) > size {
		return nil, fmt.Errorf("%w: ECC coordinate longer than the curve", errTPMStructure)
	}
	// As an uncompressed point, parsed: this checks it is on the curve.
	raw := make([]byte, 1+2*size)
	raw[0] = 4
	copy(raw[1+size-len(p.x):1+size], p.x)
	copy(raw[1+2*size-len(p.y):], p.y)
	k, err := ecdsa.ParseUncompressedPublicKey(c, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: ECC point: %v", errTPMStructure, err)
	}
	return k, nil
}

// ObjectName is the TPM Name of an object: its nameAlg (2 bytes, big
// endian) followed by the nameAlg digest of its TPMT_PUBLIC bytes,
// hashed as given (they must be the TPMT_PUBLIC exactly as the TPM
// emitted it).
func ObjectName(tpmPublic []byte) ([]byte, error) {
	if len(tpmPublic) < 4 {
		return nil, fmt.Errorf("TPMT_PUBLIC: %w: %d bytes", errTPMStructure, len(tpmPublic))
	}
	alg := tpm2.TPMIAlgHash(binary.BigEndian.Uint16(tpmPublic[2:]))
	h, err := alg.Hash()
	if err != nil {
		return nil, fmt.Errorf("TPMT_PUBLIC: %w: nameAlg 0x%04x", errTPMStructure, uint16(alg))
	}
	out := make([]byte, 2, 2+h.Size())
	binary.BigEndian.PutUint16(out, uint16(alg))
	hh := h.New()
	hh.Write(tpmPublic)
	return hh.Sum(out), nil
}

// signatureHash is the hash of a signature scheme; SHA-1 is refused.
func signatureHash(alg tpm2.TPMAlgID) (crypto.Hash, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, nil
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, nil
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, nil
	case tpm2.TPMAlgSHA1:
		return 0, errors.New("SHA-1 signature refused")
	}
	return 0, fmt.Errorf("signature hash 0x%04x not supported", uint16(alg))
}

// verifyTPMSignature checks a TPMT_SIGNATURE by key over the bytes
// signed (a TPMS_ATTEST): ECDSA (r, s), RSASSA-PKCS1-v1_5 or RSASSA-PSS
// (any salt length: a TPM uses the largest, or the hash's size), the
// digest taken with the signature's hash. It returns that hash.
func verifyTPMSignature(key crypto.PublicKey, sig *signature, signed []byte) (crypto.Hash, error) {
	h, err := signatureHash(sig.hash)
	if err != nil {
		return 0, err
	}
	d := digest(h, signed)
	switch sig.alg {
	case tpm2.TPMAlgECDSA:
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("an ECDSA signature, and a %T key", key)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig.r) > size || len(sig.s) > size {
			return 0, errors.New("ECDSA r or s longer than the curve")
		}
		if !ecdsa.Verify(k, d, new(big.Int).SetBytes(sig.r), new(big.Int).SetBytes(sig.s)) {
			return 0, errors.New("ECDSA signature does not verify")
		}
		return h, nil
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("an RSA signature, and a %T key", key)
		}
		if sig.alg == tpm2.TPMAlgRSASSA {
			err = rsa.VerifyPKCS1v15(k, h, d, sig.sig)
		} else {
			err = rsa.VerifyPSS(k, h, d, sig.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h})
		}
		if err != nil {
			return 0, fmt.Errorf("RSA signature does not verify: %v", err)
		}
		return h, nil
	}
	return 0, fmt.Errorf("signature scheme 0x%04x not supported", uint16(sig.alg))
}

func digest(h crypto.Hash, b []byte) []byte {
	hh := h.New()
	hh.Write(b)
	return hh.Sum(nil)
}

// keyStrength refuses RSA keys under 2048 bits (or over 8192) and
// curves other than NIST P-256, P-384 and P-521.
func keyStrength(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("RSA key of %d bits", n)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("curve %s", k.Curve.Params().Name)
	}
	return fmt.Errorf("%w: %T", errUnsupported, k)
}
