package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// The decoders below take bytes from the network (evidence): they accept
// only the canonical encoding (the bytes must re-encode to themselves, so
// nothing trails and nothing is ambiguous), and turn a panic in the
// underlying decoder into ErrMalformed.

// decode unmarshals exactly b into a T.
func decode[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte, what string) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, r)
		}
	}()
	v, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, fmt.Errorf("%w: %s: trailing or non-canonical bytes", ErrMalformed, what)
	}
	return v, nil
}

// ParsePublic decodes a TPMT_PUBLIC (a TPM2B_PUBLIC's contents).
func ParsePublic(tpmPublic []byte) (*tpm2.TPMTPublic, error) {
	return decode[tpm2.TPMTPublic](tpmPublic, "TPMT_PUBLIC")
}

// ParseAttest decodes a TPMS_ATTEST (a TPM2B_ATTEST's contents) and checks
// its magic (TPM_GENERATED_VALUE). The caller checks the type.
func ParseAttest(attest []byte) (*tpm2.TPMSAttest, error) {
	a, err := decode[tpm2.TPMSAttest](attest, "TPMS_ATTEST")
	if err != nil {
		return nil, err
	}
	if a.Magic != tpm2.TPMGeneratedValue {
		return nil, fmt.Errorf("%w: TPMS_ATTEST magic %#x", ErrMalformed, uint32(a.Magic))
	}
	return a, nil
}

// ParseSignature decodes a TPMT_SIGNATURE.
func ParseSignature(sig []byte) (*tpm2.TPMTSignature, error) {
	return decode[tpm2.TPMTSignature](sig, "TPMT_SIGNATURE")
}

// Name computes the TPM name of an object from its TPMT_PUBLIC bytes:
// nameAlg ‖ H_nameAlg(TPMT_PUBLIC). It is what TPM2_Certify certifies and
// what MakeCredential binds a credential to.
func Name(tpmPublic []byte) ([]byte, error) {
	pub, err := ParsePublic(tpmPublic)
	if err != nil {
		return nil, err
	}
	h, err := hashOf(pub.NameAlg)
	if err != nil {
		return nil, fmt.Errorf("%w: name algorithm: %v", ErrUnsupportedKey, err)
	}
	d := h.New()
	d.Write(tpmPublic)
	return d.Sum([]byte{byte(pub.NameAlg >> 8), byte(pub.NameAlg)}), nil
}

// hashOf maps a TPM hash algorithm to crypto.Hash, refusing SHA-1.
func hashOf(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, nil
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, nil
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("hash algorithm %#04x not accepted", uint16(alg))
}

// PublicKey decodes a TPMT_PUBLIC into a crypto public key: *rsa.PublicKey
// (2048, 3072 or 4096 bits) or *ecdsa.PublicKey (NIST P-256, P-384,
// P-521; the point is checked to be on the curve).
func PublicKey(tpmPublic []byte) (crypto.PublicKey, error) {
	pub, err := ParsePublic(tpmPublic)
	if err != nil {
		return nil, err
	}
	return publicKey(pub)
}

func publicKey(pub *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("%w: RSA parameters: %v", ErrMalformed, err)
		}
		n, err := pub.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("%w: RSA modulus: %v", ErrMalformed, err)
		}
		switch parms.KeyBits {
		case 2048, 3072, 4096:
		default:
			return nil, fmt.Errorf("%w: RSA-%d", ErrUnsupportedKey, parms.KeyBits)
		}
		if len(n.Buffer) != int(parms.KeyBits)/8 || n.Buffer[0]&0x80 == 0 || n.Buffer[len(n.Buffer)-1]&1 == 0 {
			return nil, fmt.Errorf("%w: RSA modulus is not an odd %d-bit number", ErrMalformed, parms.KeyBits)
		}
		e := int(parms.Exponent)
		if e == 0 {
			e = 65537
		}
		if e < 3 || e&1 == 0 || uint64(parms.Exponent) > 1<<31-1 {
			return nil, fmt.Errorf("%w: RSA exponent %d", ErrUnsupportedKey, parms.Exponent)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}, nil
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("%w: ECC parameters: %v", ErrMalformed, err)
		}
		point, err := pub.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("%w: ECC point: %v", ErrMalformed, err)
		}
		var curve elliptic.Curve
		switch parms.CurveID {
		case tpm2.TPMECCNistP256:
			curve = elliptic.P256()
		case tpm2.TPMECCNistP384:
			curve = elliptic.P384()
		case tpm2.TPMECCNistP521:
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("%w: ECC curve %#04x", ErrUnsupportedKey, uint16(parms.CurveID))
		}
		size := (curve.Params().BitSize + 7) / 8
		x, y := point.X.Buffer, point.Y.Buffer
		if len(x) > size || len(y) > size {
			return nil, fmt.Errorf("%w: ECC coordinate longer than the curve", ErrMalformed)
		}
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		copy(raw[1+size-len(x):1+size], x)
		copy(raw[1+2*size-len(y):], y)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: ECC point: %v", ErrMalformed, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: key type %#04x", ErrUnsupportedKey, uint16(pub.Type))
}

// VerifySignature checks a TPMT_SIGNATURE over message (the TPMS_ATTEST
// bytes, or whatever was signed) with pub: ECDSA with an *ecdsa.PublicKey,
// RSASSA-PKCS1-v1_5 or RSASSA-PSS with an *rsa.PublicKey, with the
// signature's hash (SHA-256, SHA-384 or SHA-512).
func VerifySignature(pub crypto.PublicKey, message, signature []byte) error {
	sig, err := ParseSignature(signature)
	if err != nil {
		return err
	}
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return fmt.Errorf("%w: ECDSA signature: %v", ErrMalformed, err)
		}
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: an ECDSA signature, and a %T key", ErrSignature, pub)
		}
		d, err := digest(s.Hash, message)
		if err != nil {
			return err
		}
		r, ss := new(big.Int).SetBytes(s.SignatureR.Buffer), new(big.Int).SetBytes(s.SignatureS.Buffer)
		if !ecdsa.Verify(k, d, r, ss) {
			return fmt.Errorf("%w: ECDSA", ErrSignature)
		}
		return nil
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var s *tpm2.TPMSSignatureRSA
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			s, err = sig.Signature.RSASSA()
		} else {
			s, err = sig.Signature.RSAPSS()
		}
		if err != nil {
			return fmt.Errorf("%w: RSA signature: %v", ErrMalformed, err)
		}
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: an RSA signature, and a %T key", ErrSignature, pub)
		}
		h, err := hashOf(s.Hash)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
		d, _ := digest(s.Hash, message)
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			err = rsa.VerifyPKCS1v15(k, h, d, s.Sig.Buffer)
		} else {
			err = rsa.VerifyPSS(k, h, d, s.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h})
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return nil
	}
	return fmt.Errorf("%w: signature scheme %#04x", ErrSignature, uint16(sig.SigAlg))
}

func digest(alg tpm2.TPMIAlgHash, message []byte) ([]byte, error) {
	h, err := hashOf(alg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	d := h.New()
	d.Write(message)
	return d.Sum(nil), nil
}
