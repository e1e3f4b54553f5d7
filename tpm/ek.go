package tpm

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// policyBSHA384 is the TCG EK Credential Profile's PolicyB for SHA-384
// (PolicyOR of PolicySecret(TPM_RH_ENDORSEMENT) and a PolicyNV branch),
// the authPolicy of the high-range templates with a SHA-384 nameAlg.
var policyBSHA384 = []byte{
	0xB2, 0x6E, 0x7D, 0x28, 0xD1, 0x1A, 0x50, 0xBC, 0x53, 0xD8, 0x82, 0xBC,
	0xF5, 0xFD, 0x3A, 0x1A, 0x07, 0x41, 0x48, 0xBB, 0x35, 0xD3, 0xB4, 0xE4,
	0xCB, 0x1C, 0x0A, 0xD9, 0xBD, 0xE4, 0x19, 0xCA, 0xCB, 0x47, 0xBA, 0x09,
	0x69, 0x96, 0x46, 0x15, 0x0F, 0x9F, 0xC0, 0x00, 0xF3, 0xF8, 0x0E, 0x12,
}

// eccP384EKTemplate is the TCG EK Credential Profile's template H-3 (ECC
// NIST P-384, SHA-384, AES-256-CFB, userWithAuth, empty unique).
var eccP384EKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA384,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		AdminWithPolicy:     true,
		Restricted:          true,
		Decrypt:             true,
	},
	AuthPolicy: tpm2.TPM2BDigest{Buffer: policyBSHA384},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID: tpm2.TPMECCNistP384,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// ekSpec is where an EK type's template, persistent handle and
// certificate live.
type ekSpec struct {
	template   tpm2.TPMTPublic
	persistent tpm2.TPMHandle // the TCG's conventional persistent handle
	certIndex  tpm2.TPMHandle // NV index of the EK certificate
}

var ekSpecs = map[EKType]ekSpec{
	EKRSA2048: {tpm2.RSAEKTemplate, 0x81010001, 0x01C00002},
	EKECCP256: {tpm2.ECCEKTemplate, 0x81010002, 0x01C0000A},
	EKECCP384: {eccP384EKTemplate, 0x81010016, 0x01C00016},
}

// EKTemplate is the TCG template of an EK type (EKAuto has none).
func EKTemplate(t EKType) (tpm2.TPMTPublic, bool) {
	s, ok := ekSpecs[t]
	return s.template, ok
}

// ekInfo is the endorsement key, found once.
type ekInfo struct {
	typ        EKType
	spec       ekSpec
	public     []byte
	pub        crypto.PublicKey
	name       tpm2.TPM2BName
	persistent bool // the EK is at spec.persistent; else it is recreated when needed
	cert       []byte
}

// EK returns the endorsement key's TPMT_PUBLIC bytes, its public key, and
// its certificate (DER) when the TPM holds one in NV (nil otherwise).
func (e *Enclave) EK(ctx context.Context) (tpmPublic []byte, pub crypto.PublicKey, certDER []byte, err error) {
	err = e.do(ctx, func() error {
		ek, err := e.endorsementKey()
		if err != nil {
			return err
		}
		tpmPublic, pub, certDER = clone(ek.public), ek.pub, clone(ek.cert)
		if ek.cert == nil {
			certDER = nil
		}
		return nil
	})
	return tpmPublic, pub, certDER, err
}

// EKType is the type of the EK the enclave uses (EKAuto resolved).
func (e *Enclave) EKType(ctx context.Context) (EKType, error) {
	var t EKType
	err := e.do(ctx, func() error {
		ek, err := e.endorsementKey()
		if err == nil {
			t = ek.typ
		}
		return err
	})
	return t, err
}

// endorsementKey finds the EK (and its certificate) on first use.
func (e *Enclave) endorsementKey() (*ekInfo, error) {
	if e.ek != nil {
		return e.ek, nil
	}
	t := e.opts.EK
	if t == EKAuto {
		t = EKRSA2048
		if _, err := e.nvPublic(ekSpecs[EKECCP256].certIndex); err == nil {
			t = EKECCP256
		} else if !isRC(err, tpm2.TPMRCHandle) {
			return nil, fmt.Errorf("EK: look for the ECC EK certificate: %w", err)
		}
	}
	ek := &ekInfo{typ: t, spec: ekSpecs[t]}

	// A persisted EK, when it is the TCG template's, saves regenerating it
	// (an RSA primary key takes seconds on some TPMs).
	rsp, err := tpm2.ReadPublic{ObjectHandle: ek.spec.persistent}.Execute(e.tpm)
	if err == nil {
		if pub, perr := ParsePublic(rsp.OutPublic.Bytes()); perr == nil && matchesTemplate(*pub, ek.spec.template) {
			ek.persistent = true
			ek.public, ek.name = clone(rsp.OutPublic.Bytes()), rsp.Name
		}
	} else if !isRC(err, tpm2.TPMRCHandle) {
		return nil, fmt.Errorf("EK: read %#x: %w", uint32(ek.spec.persistent), err)
	}
	if !ek.persistent {
		created, err := e.createEK(ek.spec.template)
		if err != nil {
			return nil, err
		}
		e.flush(created.ObjectHandle)
		ek.public, ek.name = clone(created.OutPublic.Bytes()), created.Name
	}
	if ek.pub, err = PublicKey(ek.public); err != nil {
		return nil, fmt.Errorf("EK: %w", err)
	}
	if ek.cert, err = e.readEKCert(ek.spec.certIndex); err != nil {
		return nil, fmt.Errorf("EK certificate at NV %#x: %w", uint32(ek.spec.certIndex), err)
	}
	e.ek = ek
	return ek, nil
}

func (e *Enclave) createEK(tmpl tpm2.TPMTPublic) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(e.opts.EndorsementAuth)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(e.tpm)
	if err != nil {
		return nil, fmt.Errorf("EK: create primary in the endorsement hierarchy: %w", err)
	}
	return rsp, nil
}

// loadEK returns a handle on the EK and a function that releases it.
func (e *Enclave) loadEK() (tpm2.NamedHandle, func(), error) {
	ek, err := e.endorsementKey()
	if err != nil {
		return tpm2.NamedHandle{}, nil, err
	}
	if ek.persistent {
		return tpm2.NamedHandle{Handle: ek.spec.persistent, Name: ek.name}, func() {}, nil
	}
	created, err := e.createEK(ek.spec.template)
	if err != nil {
		return tpm2.NamedHandle{}, nil, err
	}
	release := func() { e.flush(created.ObjectHandle) }
	if string(created.Name.Buffer) != string(ek.name.Buffer) {
		release()
		return tpm2.NamedHandle{}, nil, fmt.Errorf("EK: %w: regenerated EK has another name", ErrMalformed)
	}
	return tpm2.NamedHandle{Handle: created.ObjectHandle, Name: created.Name}, release, nil
}

func (e *Enclave) nvPublic(index tpm2.TPMHandle) (*tpm2.NVReadPublicResponse, error) {
	return tpm2.NVReadPublic{NVIndex: index}.Execute(e.tpm)
}

// nvBufferMax is TPM_PT_NV_BUFFER_MAX, the most TPM2_NV_Read returns.
func (e *Enclave) nvBufferMax() uint16 {
	const fallback = 512
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTNVBufferMax),
		PropertyCount: 1,
	}.Execute(e.tpm)
	if err != nil {
		return fallback
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTNVBufferMax {
		return fallback
	}
	v := props.TPMProperty[0].Value
	if v == 0 || v > 4096 {
		return fallback
	}
	return uint16(v)
}

// readEKCert reads the certificate at index in chunks of the TPM's NV
// buffer and returns its DER (trailing padding cut off), or nil when the
// index is not defined.
func (e *Enclave) readEKCert(index tpm2.TPMHandle) ([]byte, error) {
	nv, err := e.nvPublic(index)
	if isRC(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("NV read public: %w", err)
	}
	pub, err := nv.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: NV public: %v", ErrMalformed, err)
	}
	var auth tpm2.AuthHandle
	switch {
	case pub.Attributes.AuthRead:
		auth = tpm2.AuthHandle{Handle: index, Name: nv.NVName, Auth: tpm2.PasswordAuth(nil)}
	case pub.Attributes.OwnerRead:
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(e.opts.OwnerAuth)}
	default:
		return nil, fmt.Errorf("%w: NV index readable neither with its own nor the owner's authorization", ErrEKCertificate)
	}
	if pub.DataSize == 0 {
		return nil, nil
	}
	chunk := e.nvBufferMax()
	data := make([]byte, 0, pub.DataSize)
	for off := uint16(0); off < pub.DataSize; {
		n := min(chunk, pub.DataSize-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: nv.NVName},
			Size:       n,
			Offset:     off,
		}.Execute(e.tpm)
		if err != nil {
			return nil, fmt.Errorf("NV read at %d: %w", off, err)
		}
		if len(rsp.Data.Buffer) == 0 || len(rsp.Data.Buffer) > int(n) {
			return nil, fmt.Errorf("%w: NV read at %d returned %d bytes", ErrMalformed, off, len(rsp.Data.Buffer))
		}
		data = append(data, rsp.Data.Buffer...)
		off += uint16(len(rsp.Data.Buffer))
	}
	// The index is often larger than the certificate: keep the DER.
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(data, &raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not DER: %v", ErrEKCertificate, err)
	}
	return data[:len(data)-len(rest)], nil
}

// OIDs of the TCG EK certificate profile.
var (
	oidTCGKpEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	// Critical extensions the TCG profile uses that crypto/x509 leaves
	// unhandled: a subjectAltName holding only a directoryName (TPM
	// manufacturer, model, version), and subjectDirectoryAttributes.
	oidSubjectAltName               = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSubjectDirectoryAttributes   = asn1.ObjectIdentifier{2, 5, 29, 9}
	tolerableCriticalEKCertExtOIDs  = []asn1.ObjectIdentifier{oidSubjectAltName, oidSubjectDirectoryAttributes}
	errUnhandledCriticalEKExtension = errors.New("unhandled critical extension")
)

// VerifyEKCertificate checks an EK certificate: its chain up to one of the
// manufacturer roots (through intermediates), signatures and validity
// periods strictly; the critical extensions of the TCG EK profile that
// crypto/x509 does not handle (subjectAltName with a directoryName,
// subjectDirectoryAttributes) are accepted, any other unhandled critical
// extension is not; an extended key usage, when present, must include
// tcg-kp-EKCertificate (2.23.133.8.1); and the certified public key must
// be ek. Errors wrap ErrEKCertificate or ErrEKMismatch.
func VerifyEKCertificate(cert *x509.Certificate, ek crypto.PublicKey, roots []*x509.Certificate, intermediates ...*x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("%w: no certificate", ErrEKCertificate)
	}
	if len(roots) == 0 {
		return fmt.Errorf("%w: no manufacturer roots configured", ErrEKCertificate)
	}
	leaf := *cert
	leaf.UnhandledCriticalExtensions = nil
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !slices.ContainsFunc(tolerableCriticalEKCertExtOIDs, oid.Equal) {
			return fmt.Errorf("%w: %w %v", ErrEKCertificate, errUnhandledCriticalEKExtension, oid)
		}
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) &&
			!slices.ContainsFunc(cert.UnknownExtKeyUsage, oidTCGKpEKCertificate.Equal) {
			return fmt.Errorf("%w: extended key usage lacks tcg-kp-EKCertificate", ErrEKCertificate)
		}
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		// The EKU was checked above; intermediates of TPM vendors carry
		// all sorts of EKUs.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("%w: %v", ErrEKCertificate, err)
	}
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || ek == nil || !k.Equal(ek) {
		return fmt.Errorf("%w: the certificate's public key is not the EK", ErrEKMismatch)
	}
	return nil
}
