// Package tpm is the TPM 2.0 enclave: a report key that never leaves the
// TPM, certified by a restricted attestation key (AK) that quotes PCRs,
// and the endorsement key (EK) and its certificate that prove the TPM is
// genuine. Credential activation (MakeCredential in software on the
// verifier's side, ActivateCredential in the TPM) proves that the AK and
// the EK live in the same TPM.
//
// It speaks the TPM through github.com/google/go-tpm's direct tpm2 API:
// a device (/dev/tpmrm0), a unix socket (unix:///path, swtpm) or TCP
// (tcp://127.0.0.1:PORT, swtpm's or the reference simulator's command
// port). Every structure it returns (TPMS_ATTEST, TPMT_SIGNATURE,
// TPMT_PUBLIC) is exactly what the TPM emitted.
//
// The AK and the report key are persisted (TPM2_EvictControl) at
// configurable persistent handles, so they survive agent restarts, and
// Open reuses them when they match the expected templates. A persistent
// handle that holds some other key is never replaced silently.
package tpm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vigil-attest/vigil/enclave"
)

// Sentinel errors. Errors returned by this package wrap one of them (or a
// tpm2.TPMRC from the TPM) together with what failed.
var (
	// ErrURI is a TPM address Open does not understand.
	ErrURI = errors.New("unsupported TPM address")
	// ErrOptions is an invalid Options value.
	ErrOptions = errors.New("invalid TPM options")
	// ErrClosed is returned by an Enclave after Close.
	ErrClosed = errors.New("TPM enclave closed")
	// ErrKeyMismatch: a persistent handle holds a key that is not the
	// expected one (other template); Options.Recreate replaces it.
	ErrKeyMismatch = errors.New("persistent handle holds a different key")
	// ErrDigest is a digest of the wrong size for SignReport or PCRExtend.
	ErrDigest = errors.New("digest has the wrong size")
	// ErrQualifyingData is qualifying data longer than a TPM accepts.
	ErrQualifyingData = errors.New("qualifying data too long")
	// ErrPCRSelection is an empty or invalid PCR selection or bank.
	ErrPCRSelection = errors.New("invalid PCR selection")
	// ErrPCRsChanged: the PCRs kept changing between TPM2_Quote and
	// TPM2_PCR_Read, so no consistent set of values could be read.
	ErrPCRsChanged = errors.New("PCRs changed while quoting")
	// ErrTPMBusy: the TPM kept answering TPM_RC_RETRY, TPM_RC_YIELDED or
	// TPM_RC_TESTING.
	ErrTPMBusy = errors.New("TPM busy")
	// ErrEKCertificate: the EK certificate is missing, malformed, or does
	// not chain to a configured manufacturer root.
	ErrEKCertificate = errors.New("EK certificate invalid")
	// ErrEKMismatch: the EK certificate certifies another key than the EK.
	ErrEKMismatch = errors.New("EK certificate does not match the EK")
	// ErrActivation: the TPM refused the credential (it was made for
	// another EK or another AK name, or altered).
	ErrActivation = errors.New("credential activation failed")
	// ErrCredential: MakeCredential's inputs are invalid.
	ErrCredential = errors.New("cannot make credential")
	// ErrMalformed: bytes that should be a TPM structure are not.
	ErrMalformed = errors.New("malformed TPM structure")
	// ErrUnsupportedKey: a key type, curve, size or scheme this package
	// does not accept.
	ErrUnsupportedKey = errors.New("unsupported key")
	// ErrSignature: a TPMT_SIGNATURE does not verify.
	ErrSignature = errors.New("signature invalid")
)

// Default persistent handles. They lie in the owner range, away from the
// handles the TCG reserves for EKs (0x81010001 RSA, 0x81010002 ECC) and
// SRKs (0x81000001, 0x81000002), and from go-tpm-tools' 0x81008Fxx.
const (
	DefaultAKHandle        uint32 = 0x81008A01
	DefaultReportKeyHandle uint32 = 0x81008A02
)

// EKType selects the endorsement key template.
type EKType string

const (
	// EKAuto (the default) selects the ECC P-256 EK when the TPM holds its
	// certificate in NV, the RSA-2048 EK otherwise.
	EKAuto EKType = ""
	// EKRSA2048 is the TCG default RSA-2048 EK (template L-1, certificate
	// at NV 0x01C00002).
	EKRSA2048 EKType = "rsa-2048"
	// EKECCP256 is the TCG default ECC NIST P-256 EK (template L-2,
	// certificate at NV 0x01C0000A).
	EKECCP256 EKType = "ecc-p256"
	// EKECCP384 is the TCG high-range ECC NIST P-384 EK (template H-3,
	// certificate at NV 0x01C00016), the ECC EK that swtpm_setup creates.
	EKECCP384 EKType = "ecc-p384"
)

// KeyType selects an AK or report key template.
type KeyType string

const (
	// ECDSAP256 is ECC NIST P-256 with ECDSA-SHA256 (the default).
	ECDSAP256 KeyType = "ecdsa-p256"
	// RSASSA2048 is RSA-2048 with RSASSA-PKCS1-v1_5-SHA256.
	RSASSA2048 KeyType = "rsassa-2048"
	// RSAPSS2048 is RSA-2048 with RSASSA-PSS-SHA256 (AK only: the report
	// key signs PKCS#1 v1.5, as enclave.Enclave specifies).
	RSAPSS2048 KeyType = "rsapss-2048"
)

// Options configures Open. The zero value is the default.
type Options struct {
	// EK selects the endorsement key; EKAuto by default.
	EK EKType
	// AK selects the attestation key's type; ECDSAP256 by default.
	AK KeyType
	// ReportKey selects the report key's type: ECDSAP256 (default) or
	// RSASSA2048.
	ReportKey KeyType
	// AKHandle and ReportKeyHandle are the persistent handles of the keys;
	// DefaultAKHandle and DefaultReportKeyHandle when zero.
	AKHandle        uint32
	ReportKeyHandle uint32
	// Recreate replaces the keys at the persistent handles with new ones,
	// whatever signing keys those handles held (a storage or decryption
	// key there is never evicted).
	Recreate bool
	// OwnerAuth and EndorsementAuth are the hierarchies' authorization
	// values (empty by default, as on most machines).
	OwnerAuth       []byte
	EndorsementAuth []byte
}

func (o *Options) setDefaults() error {
	switch o.EK {
	case EKAuto, EKRSA2048, EKECCP256, EKECCP384:
	default:
		return fmt.Errorf("%w: EK type %q", ErrOptions, o.EK)
	}
	if o.AK == "" {
		o.AK = ECDSAP256
	}
	switch o.AK {
	case ECDSAP256, RSASSA2048, RSAPSS2048:
	default:
		return fmt.Errorf("%w: AK type %q", ErrOptions, o.AK)
	}
	if o.ReportKey == "" {
		o.ReportKey = ECDSAP256
	}
	switch o.ReportKey {
	case ECDSAP256, RSASSA2048:
	default:
		return fmt.Errorf("%w: report key type %q", ErrOptions, o.ReportKey)
	}
	if o.AKHandle == 0 {
		o.AKHandle = DefaultAKHandle
	}
	if o.ReportKeyHandle == 0 {
		o.ReportKeyHandle = DefaultReportKeyHandle
	}
	for _, h := range []uint32{o.AKHandle, o.ReportKeyHandle} {
		// TPM2_EvictControl with owner authorization: 0x81000000–0x817FFFFF.
		if h < 0x81000000 || h > 0x817FFFFF {
			return fmt.Errorf("%w: persistent handle %#x outside the owner range 0x81000000-0x817FFFFF", ErrOptions, h)
		}
		if h >= 0x81010000 && h <= 0x810100FF {
			return fmt.Errorf("%w: persistent handle %#x is in the range the TCG reserves for EKs", ErrOptions, h)
		}
	}
	if o.AKHandle == o.ReportKeyHandle {
		return fmt.Errorf("%w: AK and report key share handle %#x", ErrOptions, o.AKHandle)
	}
	return nil
}

// key is a persistent key's handle and public area.
type key struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public []byte // TPMT_PUBLIC exactly as the TPM returned it
	pub    crypto.PublicKey
	tmpl   tpm2.TPMTPublic
}

// Enclave is a TPM 2.0 enclave. It implements enclave.Attester. Its
// methods are safe for concurrent use; they take turns on the TPM.
type Enclave struct {
	mu   sync.Mutex
	tpm  *retrying
	conn transport.TPMCloser
	opts Options
	ak   key
	rk   key
	// ek is the endorsement key, found on first use.
	ek *ekInfo
}

var _ enclave.Attester = (*Enclave)(nil)

// Open connects to the TPM at uri (/dev/tpmrm0, unix:///path or
// tcp://HOST:PORT) and makes sure the AK and the report key exist at their
// persistent handles, creating and persisting what is missing. It reuses
// keys that match the configured templates; a handle that holds another
// key is an ErrKeyMismatch unless opts.Recreate.
func Open(ctx context.Context, uri string, opts Options) (*Enclave, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	conn, err := dial(uri)
	if err != nil {
		return nil, err
	}
	e := &Enclave{tpm: &retrying{next: conn}, conn: conn, opts: opts}
	if err := e.setup(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return e, nil
}

// do runs f holding the enclave's lock, with ctx governing the retries.
func (e *Enclave) do(ctx context.Context, f func() error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e.tpm.ctx = ctx
	defer func() { e.tpm.ctx = nil }()
	return f()
}

// Kind is enclave.TPM.
func (e *Enclave) Kind() enclave.Kind { return enclave.TPM }

// Close closes the connection to the TPM. The persistent keys stay; the
// enclave keeps no transient objects between calls.
func (e *Enclave) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil
	}
	err := e.conn.Close()
	e.conn = nil
	return err
}

// ReportPublic is the report key's public key.
func (e *Enclave) ReportPublic() crypto.PublicKey { return e.rk.pub }

// ReportKeyPublic is the report key's TPMT_PUBLIC bytes.
func (e *Enclave) ReportKeyPublic() []byte { return clone(e.rk.public) }

// AKPublic is the AK's TPMT_PUBLIC bytes and its public key.
func (e *Enclave) AKPublic() ([]byte, crypto.PublicKey) { return clone(e.ak.public), e.ak.pub }

// AKName is the AK's TPM name (nameAlg ‖ H(TPMT_PUBLIC)), what
// MakeCredential binds the credential to.
func (e *Enclave) AKName() []byte { return clone(e.ak.name.Buffer) }

// ReportKeyName is the report key's TPM name, what TPM2_Certify certifies.
func (e *Enclave) ReportKeyName() []byte { return clone(e.rk.name.Buffer) }

// Handles are the persistent handles of the AK and the report key.
func (e *Enclave) Handles() (ak, reportKey uint32) {
	return uint32(e.ak.handle), uint32(e.rk.handle)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
