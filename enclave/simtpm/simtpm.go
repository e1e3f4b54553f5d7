// Package simtpm is a SOFTWARE SIMULATOR of a TPM 2.0's attestation
// surface, for load tests and unit tests ONLY. It is not an enclave: its
// "TPM" keys, the endorsement key included, are ordinary Go keys in the
// process's memory, so anything running in the process can read them.
// Never use it to attest a real host.
//
// What it simulates is the wire format, exactly: the EK, the AK and the
// report key are TPMT_PUBLIC areas made from the TCG and Vigil templates
// (tpm.EKTemplate, tpm.AKTemplate, tpm.ReportKeyTemplate), Certify and
// Quote emit TPMS_ATTEST structures (TPM_GENERATED_VALUE, the AK's
// qualified name, the qualifying data, clock and firmware) signed as
// TPMT_SIGNATURE by the AK, and ActivateCredential is the exact inverse
// of tpm.MakeCredential (TPM 2.0 Part 1 §24). Evidence it builds
// verifies with evidence.Verify like a real TPM's, which is what a load
// generator needs.
//
// The attestation service never trusts it more than its EK allows: the
// simulated EK has no manufacturer certificate, so enrolling a simulated
// agent stays "pending" until an operator approves it or the EK's hash
// is on the service's allowlist.
package simtpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/tpm"
)

// Options configures New. The zero value is an ECC P-256 EK, an ECDSA
// P-256 AK and report key, fresh random keys, and SHA-1 and SHA-256 PCR
// banks.
type Options struct {
	// EK is tpm.EKECCP256 (the default: fast to generate) or
	// tpm.EKRSA2048.
	EK tpm.EKType
	// AK is tpm.ECDSAP256 (default), tpm.RSASSA2048 or tpm.RSAPSS2048.
	AK tpm.KeyType
	// ReportKey is tpm.ECDSAP256 (default) or tpm.RSASSA2048.
	ReportKey tpm.KeyType
	// Keys are the private keys to use; a nil key is generated from Rand.
	// A given key must be of its option's type.
	Keys Keys
	// Banks are the PCR banks allocated; nil means sha1 and sha256.
	Banks []string
	// ResetCount, RestartCount and FirmwareVersion go into every
	// TPMS_ATTEST's clockInfo and firmwareVersion. The clock itself is
	// the time since New in milliseconds, plus ClockBase; StoppedClock
	// keeps it at ClockBase (deterministic tests).
	ResetCount, RestartCount uint32
	FirmwareVersion          uint64
	ClockBase                uint64
	StoppedClock             bool
	// Rand is the randomness for key generation, ECDSA and RSA-PSS
	// signatures; nil means crypto/rand.
	Rand io.Reader
}

// Keys are the simulated TPM's private keys.
type Keys struct {
	// EK is an *ecdsa.PrivateKey on P-256 (tpm.EKECCP256) or an
	// *rsa.PrivateKey of 2048 bits (tpm.EKRSA2048).
	EK crypto.PrivateKey
	// AK and Report are *ecdsa.PrivateKey (P-256) or *rsa.PrivateKey
	// (2048 bits).
	AK, Report crypto.Signer
}

// DefaultBanks are the PCR banks allocated when Options.Banks is nil.
var DefaultBanks = []string{"sha1", "sha256"}

// numPCRs is the number of PCRs per bank (a PC Client TPM's 24).
const numPCRs = tpm.MaxPCR + 1

// TPM is a simulated TPM holding an EK, an AK, a report key and PCR
// banks. It implements enclave.Attester and credential activation. It
// is safe for concurrent use.
type TPM struct {
	rand    io.Reader
	ekType  tpm.EKType
	akType  tpm.KeyType
	ek      crypto.PrivateKey
	ekPub   []byte
	ekKey   crypto.PublicKey
	ak      crypto.Signer
	akPub   []byte
	akName  []byte
	rk      crypto.Signer
	rkPub   []byte
	rkName  []byte
	started time.Time
	opts    Options

	// banks are the allocated PCR banks; pcrs hold the PCRs that left
	// their initial value (most never do: a load test holds many TPMs).
	banks  map[tpm2.TPMIAlgHash]crypto.Hash
	mu     sync.Mutex
	pcrs   map[tpm2.TPMIAlgHash]map[int][]byte
	closed bool
}

var _ enclave.Attester = (*TPM)(nil)

// Errors.
var (
	// ErrOptions: an invalid Options value.
	ErrOptions = errors.New("invalid simulated TPM options")
	// ErrClosed: the TPM was closed.
	ErrClosed = errors.New("simulated TPM closed")
)

// New makes a simulated TPM.
func New(o Options) (*TPM, error) {
	if o.EK == tpm.EKAuto {
		o.EK = tpm.EKECCP256
	}
	if o.AK == "" {
		o.AK = tpm.ECDSAP256
	}
	if o.ReportKey == "" {
		o.ReportKey = tpm.ECDSAP256
	}
	if o.Banks == nil {
		o.Banks = DefaultBanks
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	t := &TPM{rand: o.Rand, ekType: o.EK, akType: o.AK, opts: o, started: time.Now(),
		banks: map[tpm2.TPMIAlgHash]crypto.Hash{}, pcrs: map[tpm2.TPMIAlgHash]map[int][]byte{}}
	for _, b := range o.Banks {
		alg, ok := tpm.BankAlg(b)
		if !ok {
			return nil, fmt.Errorf("%w: unknown PCR bank %q", ErrOptions, b)
		}
		h, err := alg.Hash()
		if err != nil {
			return nil, fmt.Errorf("%w: PCR bank %q: %v", ErrOptions, b, err)
		}
		t.banks[alg] = h
	}
	var err error
	if err = t.makeEK(o.Keys.EK); err != nil {
		return nil, err
	}
	if t.ak, t.akPub, err = t.signingKey("AK", o.AK, o.Keys.AK, tpm.AKTemplate); err != nil {
		return nil, err
	}
	if o.ReportKey == tpm.RSAPSS2048 {
		return nil, fmt.Errorf("%w: report key %s (the report key signs PKCS#1 v1.5 or ECDSA)", ErrOptions, o.ReportKey)
	}
	if t.rk, t.rkPub, err = t.signingKey("report key", o.ReportKey, o.Keys.Report, tpm.ReportKeyTemplate); err != nil {
		return nil, err
	}
	if t.akName, err = tpm.Name(t.akPub); err != nil {
		return nil, fmt.Errorf("AK name: %w", err)
	}
	if t.rkName, err = tpm.Name(t.rkPub); err != nil {
		return nil, fmt.Errorf("report key name: %w", err)
	}
	return t, nil
}

func (t *TPM) makeEK(given crypto.PrivateKey) error {
	tmpl, ok := tpm.EKTemplate(t.ekType)
	if !ok || (t.ekType != tpm.EKECCP256 && t.ekType != tpm.EKRSA2048) {
		return fmt.Errorf("%w: EK type %q (want %s or %s)", ErrOptions, t.ekType, tpm.EKECCP256, tpm.EKRSA2048)
	}
	switch t.ekType {
	case tpm.EKECCP256:
		k, _ := given.(*ecdsa.PrivateKey)
		if given == nil {
			var err error
			if k, err = ecdsa.GenerateKey(elliptic.P256(), t.rand); err != nil {
				return fmt.Errorf("generate the EK: %w", err)
			}
		} else if k == nil || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: EK %T is not an ECC P-256 key", ErrOptions, given)
		}
		t.ek = k
	case tpm.EKRSA2048:
		k, _ := given.(*rsa.PrivateKey)
		if given == nil {
			var err error
			if k, err = rsa.GenerateKey(t.rand, 2048); err != nil {
				return fmt.Errorf("generate the EK: %w", err)
			}
		} else if k == nil || k.N.BitLen() != 2048 {
			return fmt.Errorf("%w: EK %T is not an RSA-2048 key", ErrOptions, given)
		}
		t.ek = k
	}
	pub, err := withUnique(tmpl, t.ek.(crypto.Signer).Public())
	if err != nil {
		return fmt.Errorf("EK: %w", err)
	}
	t.ekPub = tpm2.Marshal(pub)
	if t.ekKey, err = tpm.PublicKey(t.ekPub); err != nil {
		return fmt.Errorf("EK: %w", err)
	}
	return nil
}

// signingKey makes (or takes) a signing key of type typ and its
// TPMT_PUBLIC from template.
func (t *TPM) signingKey(what string, typ tpm.KeyType, given crypto.Signer, template func(tpm.KeyType) tpm2.TPMTPublic) (crypto.Signer, []byte, error) {
	switch typ {
	case tpm.ECDSAP256:
		if given == nil {
			k, err := ecdsa.GenerateKey(elliptic.P256(), t.rand)
			if err != nil {
				return nil, nil, fmt.Errorf("generate the %s: %w", what, err)
			}
			given = k
		} else if k, ok := given.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
			return nil, nil, fmt.Errorf("%w: %s %T is not an ECDSA P-256 key", ErrOptions, what, given)
		}
	case tpm.RSASSA2048, tpm.RSAPSS2048:
		if given == nil {
			k, err := rsa.GenerateKey(t.rand, 2048)
			if err != nil {
				return nil, nil, fmt.Errorf("generate the %s: %w", what, err)
			}
			given = k
		} else if k, ok := given.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
			return nil, nil, fmt.Errorf("%w: %s %T is not an RSA-2048 key", ErrOptions, what, given)
		}
	default:
		return nil, nil, fmt.Errorf("%w: %s type %q", ErrOptions, what, typ)
	}
	pub, err := withUnique(template(typ), given.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return given, tpm2.Marshal(pub), nil
}

// withUnique fills a template's unique field with the public key, as the
// TPM does when it creates the key.
func withUnique(tmpl tpm2.TPMTPublic, pub crypto.PublicKey) (tpm2.TPMTPublic, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if tmpl.Type != tpm2.TPMAlgECC {
			return tmpl, fmt.Errorf("%w: an ECC key for a %#04x template", ErrOptions, uint16(tmpl.Type))
		}
		raw, err := k.Bytes()
		if err != nil {
			return tmpl, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		n := (len(raw) - 1) / 2
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1 : 1+n]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[1+n:]},
		})
	case *rsa.PublicKey:
		if tmpl.Type != tpm2.TPMAlgRSA {
			return tmpl, fmt.Errorf("%w: an RSA key for a %#04x template", ErrOptions, uint16(tmpl.Type))
		}
		if k.E != 65537 {
			return tmpl, fmt.Errorf("%w: RSA exponent %d (a TPM's is 65537)", ErrOptions, k.E)
		}
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, (k.N.BitLen()+7)/8))})
	default:
		return tmpl, fmt.Errorf("%w: key %T", ErrOptions, pub)
	}
	return tmpl, nil
}

// Kind is enclave.TPM: evidence of the simulator is TPM evidence.
func (t *TPM) Kind() enclave.Kind { return enclave.TPM }

// ReportPublic is the report key's public key.
func (t *TPM) ReportPublic() crypto.PublicKey { return t.rk.Public() }

// ReportKeyPublic is the report key's TPMT_PUBLIC bytes.
func (t *TPM) ReportKeyPublic() []byte { return bytes.Clone(t.rkPub) }

// AKPublic is the AK's TPMT_PUBLIC bytes and public key.
func (t *TPM) AKPublic() ([]byte, crypto.PublicKey) { return bytes.Clone(t.akPub), t.ak.Public() }

// AKName is the AK's TPM Name (nameAlg ‖ SHA-256 of its TPMT_PUBLIC).
func (t *TPM) AKName() []byte { return bytes.Clone(t.akName) }

// EK returns the EK's TPMT_PUBLIC and public key. The simulator holds no
// EK certificate: certDER is always nil.
func (t *TPM) EK(ctx context.Context) (tpmPublic []byte, pub crypto.PublicKey, certDER []byte, err error) {
	if err := t.check(ctx); err != nil {
		return nil, nil, nil, err
	}
	return bytes.Clone(t.ekPub), t.ekKey, nil, nil
}

// EKType is the EK's type.
func (t *TPM) EKType() tpm.EKType { return t.ekType }

// Close marks the TPM closed; later calls fail with ErrClosed.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return nil
}

func (t *TPM) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return nil
}

// SignReport signs a SHA-256 digest with the report key, as TPM2_Sign
// does, returned in enclave.Enclave's encoding (ASN.1 ECDSA or
// RSASSA-PKCS1-v1_5).
func (t *TPM) SignReport(ctx context.Context, digest []byte) ([]byte, error) {
	if err := t.check(ctx); err != nil {
		return nil, fmt.Errorf("sign report: %w", err)
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("sign report: %w: %d bytes, want a SHA-256 digest", tpm.ErrDigest, len(digest))
	}
	switch k := t.rk.(type) {
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(t.rand, k, digest)
	case *rsa.PrivateKey:
		return rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest)
	}
	return nil, fmt.Errorf("sign report: %w: %T", tpm.ErrUnsupportedKey, t.rk)
}

// clock is the TPMS_CLOCK_INFO of now.
func (t *TPM) clock() tpm2.TPMSClockInfo {
	c := t.opts.ClockBase
	if !t.opts.StoppedClock {
		c += uint64(time.Since(t.started).Milliseconds())
	}
	return tpm2.TPMSClockInfo{
		Clock:        c,
		ResetCount:   t.opts.ResetCount,
		RestartCount: t.opts.RestartCount,
		Safe:         true,
	}
}

// attest builds a TPMS_ATTEST signed by the AK and its TPMT_SIGNATURE.
func (t *TPM) attest(typ tpm2.TPMST, qualifying []byte, info tpm2.TPMUAttest) (attest, sig []byte, err error) {
	if len(qualifying) > tpm.MaxQualifyingData {
		return nil, nil, fmt.Errorf("%w: %d bytes", tpm.ErrQualifyingData, len(qualifying))
	}
	attest = tpm2.Marshal(tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            typ,
		QualifiedSigner: tpm2.TPM2BName{Buffer: t.akName},
		ExtraData:       tpm2.TPM2BData{Buffer: bytes.Clone(qualifying)},
		ClockInfo:       t.clock(),
		FirmwareVersion: t.opts.FirmwareVersion,
		Attested:        info,
	})
	sig, err = Sign(t.rand, t.ak, t.akType, attest)
	return attest, sig, err
}

// Sign signs message as a TPM's restricted signing key signs a
// TPMS_ATTEST: over SHA-256(message), with the scheme of the key type
// (ECDSA r and s zero-padded to the curve size; RSASSA-PKCS1-v1_5; or
// RSASSA-PSS with the largest salt), and returns the TPMT_SIGNATURE.
func Sign(random io.Reader, key crypto.Signer, typ tpm.KeyType, message []byte) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	d := sha256.Sum256(message)
	var sig tpm2.TPMTSignature
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if typ != tpm.ECDSAP256 {
			return nil, fmt.Errorf("sign: %w: ECDSA key for %s", tpm.ErrUnsupportedKey, typ)
		}
		r, s, err := ecdsa.Sign(random, k, d[:])
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, size))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, size))},
		})}
	case *rsa.PrivateKey:
		switch typ {
		case tpm.RSASSA2048:
			s, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
			if err != nil {
				return nil, fmt.Errorf("sign: %w", err)
			}
			sig = tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: s}})}
		case tpm.RSAPSS2048:
			s, err := rsa.SignPSS(random, k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
			if err != nil {
				return nil, fmt.Errorf("sign: %w", err)
			}
			sig = tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSAPSS, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: s}})}
		default:
			return nil, fmt.Errorf("sign: %w: RSA key for %s", tpm.ErrUnsupportedKey, typ)
		}
	default:
		return nil, fmt.Errorf("sign: %w: %T", tpm.ErrUnsupportedKey, key)
	}
	return tpm2.Marshal(sig), nil
}

// Certify certifies the report key with the AK over qualifying
// (TPM2_Certify).
func (t *TPM) Certify(ctx context.Context, qualifying []byte) (*enclave.Certification, error) {
	return t.certify(ctx, t.rkName, qualifying)
}

// CertifyPublic certifies the object whose TPMT_PUBLIC is objectPublic
// with the AK over qualifying. It is what a TPM does for
// TPM2_LoadExternal of a public area followed by TPM2_Certify: the TPM
// certifies the Name of any loaded object, whatever its attributes, so
// tests can make the certifications an attacker could obtain.
func (t *TPM) CertifyPublic(ctx context.Context, objectPublic, qualifying []byte) (*enclave.Certification, error) {
	name, err := objectName(objectPublic)
	if err != nil {
		return nil, fmt.Errorf("certify: %w", err)
	}
	return t.certify(ctx, name, qualifying)
}

// certify certifies the object of that name.
func (t *TPM) certify(ctx context.Context, name, qualifying []byte) (*enclave.Certification, error) {
	if err := t.check(ctx); err != nil {
		return nil, fmt.Errorf("certify: %w", err)
	}
	a, s, err := t.attest(tpm2.TPMSTAttestCertify, qualifying, tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
		Name:          tpm2.TPM2BName{Buffer: name},
		QualifiedName: tpm2.TPM2BName{Buffer: name},
	}))
	if err != nil {
		return nil, fmt.Errorf("certify: %w", err)
	}
	return &enclave.Certification{Attest: a, Signature: s}, nil
}

// objectName is nameAlg ‖ H_nameAlg(objectPublic), for any name
// algorithm a TPM has (SHA-1 included: a TPM names such objects too).
func objectName(objectPublic []byte) ([]byte, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](objectPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", tpm.ErrMalformed, err)
	}
	if !bytes.Equal(tpm2.Marshal(p), objectPublic) {
		return nil, fmt.Errorf("%w: trailing bytes after the TPMT_PUBLIC", tpm.ErrMalformed)
	}
	h, err := p.NameAlg.Hash()
	if err != nil {
		return nil, fmt.Errorf("%w: name algorithm: %v", tpm.ErrUnsupportedKey, err)
	}
	d := h.New()
	d.Write(objectPublic)
	return d.Sum([]byte{byte(p.NameAlg >> 8), byte(p.NameAlg)}), nil
}

// Quote quotes the PCRs of banks (bank name → indexes) with the AK over
// qualifying, and returns the values quoted.
func (t *TPM) Quote(ctx context.Context, banks map[string][]int, qualifying []byte) (*enclave.Quote, error) {
	if err := t.check(ctx); err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	sel, err := tpm.PCRSelection(banks)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	out := map[string]map[int][]byte{}
	h := sha256.New() // the AK's scheme hash
	t.mu.Lock()
	for _, s := range sel.PCRSelections {
		hash, ok := t.banks[s.Hash]
		if !ok {
			t.mu.Unlock()
			return nil, fmt.Errorf("quote: %w: bank %#04x not allocated", tpm.ErrPCRSelection, uint16(s.Hash))
		}
		name := bankName(s.Hash)
		out[name] = map[int][]byte{}
		for i, b := range s.PCRSelect {
			for bit := range 8 {
				if b&(1<<bit) != 0 {
					v := t.value(s.Hash, hash, i*8+bit)
					h.Write(v)
					out[name][i*8+bit] = v
				}
			}
		}
	}
	t.mu.Unlock()
	a, sig, err := t.attest(tpm2.TPMSTAttestQuote, qualifying, tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
		PCRSelect: sel,
		PCRDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
	}))
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	return &enclave.Quote{Attest: a, Signature: sig, PCRs: out}, nil
}

func bankName(alg tpm2.TPMIAlgHash) string {
	for _, n := range []string{"sha1", "sha256", "sha384", "sha512", "sm3_256"} {
		if a, _ := tpm.BankAlg(n); a == alg {
			return n
		}
	}
	return ""
}

// bank checks a PCR reference and returns the bank's algorithm and
// hash.
func (t *TPM) bank(name string, pcr int) (tpm2.TPMIAlgHash, crypto.Hash, error) {
	alg, ok := tpm.BankAlg(name)
	if !ok {
		return 0, 0, fmt.Errorf("%w: unknown bank %q", tpm.ErrPCRSelection, name)
	}
	h, ok := t.banks[alg]
	if !ok {
		return 0, 0, fmt.Errorf("%w: bank %s not allocated", tpm.ErrPCRSelection, name)
	}
	if pcr < 0 || pcr >= numPCRs {
		return 0, 0, fmt.Errorf("%w: PCR %d", tpm.ErrPCRSelection, pcr)
	}
	return alg, h, nil
}

// value is a copy of a PCR's value; t.mu must be held.
func (t *TPM) value(alg tpm2.TPMIAlgHash, h crypto.Hash, pcr int) []byte {
	if v, ok := t.pcrs[alg][pcr]; ok {
		return bytes.Clone(v)
	}
	v := make([]byte, h.Size())
	// PCRs 17–22 (the dynamic-launch PCRs) start all ones, as in every
	// PC Client TPM.
	if pcr >= 17 && pcr <= 22 {
		for i := range v {
			v[i] = 0xff
		}
	}
	return v
}

// set sets a PCR's value; t.mu must be held.
func (t *TPM) set(alg tpm2.TPMIAlgHash, pcr int, v []byte) {
	if t.pcrs[alg] == nil {
		t.pcrs[alg] = map[int][]byte{}
	}
	t.pcrs[alg][pcr] = v
}

// Extend extends digest into a PCR: new = H(old ‖ digest).
func (t *TPM) Extend(bank string, pcr int, digest []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	alg, h, err := t.bank(bank, pcr)
	if err != nil {
		return fmt.Errorf("PCR extend: %w", err)
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("PCR extend: %w: %d bytes for %s", tpm.ErrDigest, len(digest), bank)
	}
	d := h.New()
	d.Write(t.value(alg, h, pcr))
	d.Write(digest)
	t.set(alg, pcr, d.Sum(nil))
	return nil
}

// SetPCR sets a PCR's value (a simulator's shortcut for the state a
// sequence of extensions would have left).
func (t *TPM) SetPCR(bank string, pcr int, value []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	alg, h, err := t.bank(bank, pcr)
	if err != nil {
		return fmt.Errorf("set PCR: %w", err)
	}
	if len(value) != h.Size() {
		return fmt.Errorf("set PCR: %w: %d bytes for %s", tpm.ErrDigest, len(value), bank)
	}
	t.set(alg, pcr, bytes.Clone(value))
	return nil
}

// PCR reads a PCR's value.
func (t *TPM) PCR(bank string, pcr int) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	alg, h, err := t.bank(bank, pcr)
	if err != nil {
		return nil, fmt.Errorf("PCR read: %w", err)
	}
	return t.value(alg, h, pcr), nil
}

// ActivateCredential is TPM2_ActivateCredential with the EK as the key
// and the AK as the activated object, done in software as the exact
// inverse of tpm.MakeCredential (TPM 2.0 Part 1 §24): the seed is
// recovered from encryptedSecret with the EK (RSA-OAEP with SHA-256 and
// the label "IDENTITY\0", or ECDH with the EK and KDFe), the integrity
// HMAC over encIdentity ‖ AK name is checked with a KDFa-derived key,
// and encIdentity is decrypted with AES-128-CFB under a KDFa-derived key.
// A credential made for another EK or another AK, or altered, fails
// with tpm.ErrActivation.
func (t *TPM) ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	if err := t.check(ctx); err != nil {
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	secret, err := activate(t.ek, t.ekPub, t.akName, credentialBlob, encryptedSecret)
	if err != nil {
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	return secret, nil
}

// labelIdentity is the KDF and OAEP label of credential protection.
const labelIdentity = "IDENTITY"

func activate(ek crypto.PrivateKey, ekPublic, name, blob, encSecret []byte) ([]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublic)
	if err != nil {
		return nil, fmt.Errorf("EK: %w: %v", tpm.ErrMalformed, err)
	}
	nameHash, err := pub.NameAlg.Hash()
	if err != nil {
		return nil, fmt.Errorf("EK name algorithm: %w: %v", tpm.ErrUnsupportedKey, err)
	}
	var seed []byte
	var sym *tpm2.TPMTSymDefObject
	switch k := ek.(type) {
	case *rsa.PrivateKey:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("EK: %w: %v", tpm.ErrMalformed, err)
		}
		sym = &parms.Symmetric
		// The OAEP hash is the scheme's when it names one, else nameAlg.
		oaepHash := nameHash
		if parms.Scheme.Scheme == tpm2.TPMAlgOAEP {
			if d, err := parms.Scheme.Details.OAEP(); err == nil && d.HashAlg != tpm2.TPMAlgNull {
				if oaepHash, err = d.HashAlg.Hash(); err != nil {
					return nil, fmt.Errorf("EK OAEP hash: %w: %v", tpm.ErrUnsupportedKey, err)
				}
			}
		}
		if len(encSecret) != k.Size() {
			return nil, fmt.Errorf("%w: encrypted secret of %d bytes for an RSA-%d EK", tpm.ErrActivation, len(encSecret), k.N.BitLen())
		}
		seed, err = rsa.DecryptOAEP(oaepHash.New(), nil, k, encSecret, []byte(labelIdentity+"\x00"))
		if err != nil {
			return nil, fmt.Errorf("%w: decrypt the seed: %v", tpm.ErrActivation, err)
		}
	case *ecdsa.PrivateKey:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("EK: %w: %v", tpm.ErrMalformed, err)
		}
		sym = &parms.Symmetric
		priv, err := k.ECDH()
		if err != nil {
			return nil, fmt.Errorf("EK: %w: %v", tpm.ErrUnsupportedKey, err)
		}
		pt, err := tpm2.Unmarshal[tpm2.TPMSECCPoint](encSecret)
		if err != nil || !bytes.Equal(tpm2.Marshal(pt), encSecret) {
			return nil, fmt.Errorf("%w: the encrypted secret is not a TPMS_ECC_POINT", tpm.ErrActivation)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(pt.X.Buffer) > size || len(pt.Y.Buffer) > size {
			return nil, fmt.Errorf("%w: ephemeral point coordinates too long", tpm.ErrActivation)
		}
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		copy(raw[1+size-len(pt.X.Buffer):1+size], pt.X.Buffer)
		copy(raw[1+2*size-len(pt.Y.Buffer):], pt.Y.Buffer)
		eph, err := priv.Curve().NewPublicKey(raw) // checks the point is on the curve
		if err != nil {
			return nil, fmt.Errorf("%w: ephemeral point: %v", tpm.ErrActivation, err)
		}
		z, err := priv.ECDH(eph)
		if err != nil {
			return nil, fmt.Errorf("%w: ECDH: %v", tpm.ErrActivation, err)
		}
		ekRaw := priv.PublicKey().Bytes()
		seed = tpm2.KDFe(nameHash, z, labelIdentity, raw[1:1+size], ekRaw[1:1+size], nameHash.Size()*8)
	default:
		return nil, fmt.Errorf("EK: %w: %T", tpm.ErrUnsupportedKey, ek)
	}

	// TPM2B_ID_OBJECT contents: TPM2B_DIGEST integrityHMAC ‖ encIdentity.
	if len(blob) < 2 {
		return nil, fmt.Errorf("%w: credential blob of %d bytes", tpm.ErrActivation, len(blob))
	}
	n := int(blob[0])<<8 | int(blob[1])
	if n != nameHash.Size() || len(blob) < 2+n+2 {
		return nil, fmt.Errorf("%w: credential blob: integrity HMAC of %d bytes, blob of %d", tpm.ErrActivation, n, len(blob))
	}
	integrity, encIdentity := blob[2:2+n], blob[2+n:]
	mac := hmac.New(nameHash.New, tpm2.KDFa(nameHash, seed, "INTEGRITY", nil, nil, nameHash.Size()*8))
	mac.Write(encIdentity)
	mac.Write(name)
	if !hmac.Equal(mac.Sum(nil), integrity) {
		return nil, fmt.Errorf("%w: integrity check failed (made for another EK or AK, or altered)", tpm.ErrActivation)
	}

	if sym.Algorithm != tpm2.TPMAlgAES {
		return nil, fmt.Errorf("EK symmetric algorithm %#04x: %w", uint16(sym.Algorithm), tpm.ErrUnsupportedKey)
	}
	mode, err := sym.Mode.AES()
	if err != nil || *mode != tpm2.TPMAlgCFB {
		return nil, fmt.Errorf("EK symmetric mode: %w (want CFB)", tpm.ErrUnsupportedKey)
	}
	bits, err := sym.KeyBits.AES()
	if err != nil {
		return nil, fmt.Errorf("EK symmetric key size: %w: %v", tpm.ErrUnsupportedKey, err)
	}
	block, err := aes.NewCipher(tpm2.KDFa(nameHash, seed, "STORAGE", name, nil, int(*bits)))
	if err != nil {
		return nil, fmt.Errorf("EK symmetric key: %w: %v", tpm.ErrUnsupportedKey, err)
	}
	plain := make([]byte, len(encIdentity))
	//lint:ignore SA1019 TPM 2.0 credential protection is AES-CFB (integrity comes from the HMAC checked above)
	cipher.NewCFBDecrypter(block, make([]byte, block.BlockSize())).XORKeyStream(plain, encIdentity)
	// The plaintext is a TPM2B_DIGEST: the credential, exactly.
	size := int(plain[0])<<8 | int(plain[1])
	if size == 0 || size > tpm.MaxCredential || size != len(plain)-2 {
		return nil, fmt.Errorf("%w: decrypted credential of %d bytes in %d", tpm.ErrActivation, size, len(plain)-2)
	}
	return bytes.Clone(plain[2:]), nil
}
