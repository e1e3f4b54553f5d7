package evidence

import (
	"bytes"
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

// MaxTPMStructure bounds the size of one TPM structure in evidence. A
// TPMT_PUBLIC of an RSA-4096 key with a policy is under 700 bytes, a
// TPMS_ATTEST of a quote over every PCR of four banks under 300.
const MaxTPMStructure = 4096

// Errors of the TPM structure decoders. ErrBadMagic and ErrAttestType
// are returned before the rest of a TPMS_ATTEST is decoded.
var (
	ErrBadMagic      = errors.New("TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
	ErrAttestType    = errors.New("TPMS_ATTEST of an unexpected type")
	ErrTPMStructure  = errors.New("malformed TPM structure")
	errNotCanonical  = errors.New("bytes after the structure, or a non-canonical encoding")
	errUnsupportedPK = errors.New("unsupported key type")
)

// decodeExact decodes b as exactly one T with go-tpm, and checks that
// encoding the result again gives b: no trailing bytes, no second way
// to write the same value. go-tpm panics on some inputs it cannot
// encode; a panic is an error here.
func decodeExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte, what string) (t *T, err error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: %w: empty", what, ErrTPMStructure)
	}
	if len(b) > MaxTPMStructure {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than %d", what, ErrTPMStructure, len(b), MaxTPMStructure)
	}
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%s: %w: %v", what, ErrTPMStructure, r)
		}
	}()
	t, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrTPMStructure, err)
	}
	if !bytes.Equal(tpm2.Marshal(*t), b) {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrTPMStructure, errNotCanonical)
	}
	return t, nil
}

// DecodeAttest decodes a TPMS_ATTEST exactly as a TPM emits it and
// checks its magic (ErrBadMagic) and its type (ErrAttestType) first.
// Other failures wrap ErrTPMStructure.
func DecodeAttest(b []byte, typ tpm2.TPMST) (*tpm2.TPMSAttest, error) {
	if len(b) < 6 {
		return nil, fmt.Errorf("TPMS_ATTEST: %w: %d bytes", ErrTPMStructure, len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != uint32(tpm2.TPMGeneratedValue) {
		return nil, fmt.Errorf("%w: 0x%08x", ErrBadMagic, m)
	}
	if t := tpm2.TPMST(binary.BigEndian.Uint16(b[4:])); t != typ {
		return nil, fmt.Errorf("%w: 0x%04x, want 0x%04x", ErrAttestType, uint16(t), uint16(typ))
	}
	return decodeExact[tpm2.TPMSAttest](b, "TPMS_ATTEST")
}

// DecodeSignature decodes a TPMT_SIGNATURE exactly.
func DecodeSignature(b []byte) (*tpm2.TPMTSignature, error) {
	return decodeExact[tpm2.TPMTSignature](b, "TPMT_SIGNATURE")
}

// DecodePublic decodes a TPMT_PUBLIC exactly and returns its public key
// (*ecdsa.PublicKey on a NIST curve, or *rsa.PublicKey). An ECC point
// that is not on its curve is an error.
func DecodePublic(b []byte) (*tpm2.TPMTPublic, crypto.PublicKey, error) {
	p, err := decodeExact[tpm2.TPMTPublic](b, "TPMT_PUBLIC")
	if err != nil {
		return nil, nil, err
	}
	k, err := publicKey(p)
	if err != nil {
		return nil, nil, fmt.Errorf("TPMT_PUBLIC: %w", err)
	}
	return p, k, nil
}

func publicKey(p *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch p.Type {
	case tpm2.TPMAlgECC:
		parms, err := p.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTPMStructure, err)
		}
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTPMStructure, err)
		}
		var c elliptic.Curve
		switch parms.CurveID {
		case tpm2.TPMECCNistP256:
			c = elliptic.P256()
		case tpm2.TPMECCNistP384:
			c = elliptic.P384()
		case tpm2.TPMECCNistP521:
			c = elliptic.P521()
		default:
			return nil, fmt.Errorf("%w: ECC curve 0x%04x", errUnsupportedPK, uint16(parms.CurveID))
		}
		size := (c.Params().BitSize + 7) / 8
		if len(pt.X.Buffer) > size || len(pt.Y.Buffer) > size {
			return nil, fmt.Errorf("%w: ECC coordinate longer than the curve", ErrTPMStructure)
		}
		// Encoding as an uncompressed point and parsing it checks that
		// the point is on the curve.
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		copy(raw[1+size-len(pt.X.Buffer):1+size], pt.X.Buffer)
		copy(raw[1+2*size-len(pt.Y.Buffer):], pt.Y.Buffer)
		k, err := ecdsa.ParseUncompressedPublicKey(c, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: ECC point: %v", ErrTPMStructure, err)
		}
		return k, nil
	case tpm2.TPMAlgRSA:
		parms, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTPMStructure, err)
		}
		n, err := p.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTPMStructure, err)
		}
		if len(n.Buffer) == 0 || n.Buffer[0] == 0 || len(n.Buffer)*8 != int(parms.KeyBits) {
			return nil, fmt.Errorf("%w: RSA modulus of %d bytes for %d key bits", ErrTPMStructure, len(n.Buffer), parms.KeyBits)
		}
		e := int(parms.Exponent)
		if e == 0 {
			e = 65537 // the TPM's default exponent
		}
		if e < 3 || e&1 == 0 {
			return nil, fmt.Errorf("%w: RSA exponent %d", ErrTPMStructure, e)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}, nil
	}
	return nil, fmt.Errorf("%w: TPM_ALG 0x%04x", errUnsupportedPK, uint16(p.Type))
}

// ObjectName is the TPM Name of an object: its nameAlg (2 bytes, big
// endian) followed by the nameAlg digest of its TPMT_PUBLIC bytes. The
// bytes must be a TPMT_PUBLIC exactly as the TPM emitted it (see
// DecodePublic); they are hashed as given.
func ObjectName(tpmPublic []byte) ([]byte, error) {
	if len(tpmPublic) < 4 {
		return nil, fmt.Errorf("TPMT_PUBLIC: %w: %d bytes", ErrTPMStructure, len(tpmPublic))
	}
	alg := tpm2.TPMIAlgHash(binary.BigEndian.Uint16(tpmPublic[2:]))
	h, err := alg.Hash()
	if err != nil {
		return nil, fmt.Errorf("TPMT_PUBLIC: %w: nameAlg 0x%04x", ErrTPMStructure, uint16(alg))
	}
	out := make([]byte, 2, 2+h.Size())
	binary.BigEndian.PutUint16(out, uint16(alg))
	hh := h.New()
	hh.Write(tpmPublic)
	return hh.Sum(out), nil
}

// signatureHash is the hash of a TPMT_SIGNATURE's scheme; SHA-1 is refused.
func signatureHash(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	switch tpm2.TPMAlgID(alg) {
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
// (any salt length: a TPM uses the largest, or the hash size), the
// digest taken with the signature's hash. It returns the hash used.
func verifyTPMSignature(key crypto.PublicKey, sig *tpm2.TPMTSignature, signed []byte) (crypto.Hash, error) {
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, err
		}
		h, err := signatureHash(s.Hash)
		if err != nil {
			return 0, err
		}
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("an ECDSA signature, and a %T key", key)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(s.SignatureR.Buffer) > size || len(s.SignatureS.Buffer) > size {
			return 0, errors.New("ECDSA r or s longer than the curve")
		}
		r, ss := new(big.Int).SetBytes(s.SignatureR.Buffer), new(big.Int).SetBytes(s.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest(h, signed), r, ss) {
			return 0, errors.New("ECDSA signature does not verify")
		}
		return h, nil
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		s, err := sig.Signature.RSASSA()
		if sig.SigAlg == tpm2.TPMAlgRSAPSS {
			s, err = sig.Signature.RSAPSS()
		}
		if err != nil {
			return 0, err
		}
		h, err := signatureHash(s.Hash)
		if err != nil {
			return 0, err
		}
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return 0, fmt.Errorf("an RSA signature, and a %T key", key)
		}
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			err = rsa.VerifyPKCS1v15(k, h, digest(h, signed), s.Sig.Buffer)
		} else {
			err = rsa.VerifyPSS(k, h, digest(h, signed), s.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h})
		}
		if err != nil {
			return 0, fmt.Errorf("RSA signature does not verify: %v", err)
		}
		return h, nil
	}
	return 0, fmt.Errorf("signature scheme 0x%04x not supported", uint16(sig.SigAlg))
}

func digest(h crypto.Hash, b []byte) []byte {
	hh := h.New()
	hh.Write(b)
	return hh.Sum(nil)
}

// keyStrength refuses keys weaker than RSA-2048 (and a modulus above
// 8192 bits) and curves other than NIST P-256, P-384, P-521.
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
	return fmt.Errorf("%w: %T", errUnsupportedPK, k)
}
