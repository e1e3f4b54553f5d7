package tpm

import (
	"bytes"
	"context"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// signingTemplate is the template of an AK (restricted) or a report key
// (unrestricted): a non-duplicable signing key generated in the TPM
// (fixedTPM, fixedParent, sensitiveDataOrigin), used with its empty
// authValue (userWithAuth), exempt from dictionary-attack lockout (noDA).
func signingTemplate(t KeyType, restricted bool) tpm2.TPMTPublic {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          restricted,
		SignEncrypt:         true,
	}
	if t == ECDSAP256 {
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme: tpm2.TPMTECCScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				CurveID: tpm2.TPMECCNistP256,
				KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}
	}
	scheme := tpm2.TPMTRSAScheme{
		Scheme:  tpm2.TPMAlgRSASSA,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
	}
	if t == RSAPSS2048 {
		scheme = tpm2.TPMTRSAScheme{
			Scheme:  tpm2.TPMAlgRSAPSS,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256}),
		}
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    scheme,
			KeyBits:   2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	}
}

// AKTemplate is the template of an AK of type t (a restricted signing key).
func AKTemplate(t KeyType) tpm2.TPMTPublic { return signingTemplate(t, true) }

// ReportKeyTemplate is the template of a report key of type t (an
// unrestricted signing key that cannot leave the TPM).
func ReportKeyTemplate(t KeyType) tpm2.TPMTPublic { return signingTemplate(t, false) }

// matchesTemplate reports whether pub is an instance of tmpl: equal in
// everything but the unique field (the public key itself).
func matchesTemplate(pub, tmpl tpm2.TPMTPublic) (ok bool) {
	if pub.Type != tmpl.Type {
		return false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	tmpl.Unique = pub.Unique
	return bytes.Equal(tpm2.Marshal(pub), tpm2.Marshal(tmpl))
}

func (e *Enclave) setup(ctx context.Context) error {
	e.tpm.ctx = ctx
	defer func() { e.tpm.ctx = nil }()
	var srk *tpm2.NamedHandle
	defer func() {
		if srk != nil {
			e.flush(srk.Handle)
		}
	}()
	parent := func() (tpm2.NamedHandle, error) {
		if srk != nil {
			return *srk, nil
		}
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(e.opts.OwnerAuth)},
			InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
		}.Execute(e.tpm)
		if err != nil {
			return tpm2.NamedHandle{}, fmt.Errorf("create SRK (ECC P-256, owner hierarchy): %w", err)
		}
		srk = &tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
		return *srk, nil
	}
	var err error
	e.ak, err = e.ensureKey("AK", tpm2.TPMHandle(e.opts.AKHandle), AKTemplate(e.opts.AK), parent)
	if err != nil {
		return err
	}
	e.rk, err = e.ensureKey("report key", tpm2.TPMHandle(e.opts.ReportKeyHandle), ReportKeyTemplate(e.opts.ReportKey), parent)
	return err
}

// ensureKey returns the key persisted at h, creating it under the SRK and
// persisting it when h is empty (or when Options.Recreate).
func (e *Enclave) ensureKey(what string, h tpm2.TPMHandle, tmpl tpm2.TPMTPublic, parent func() (tpm2.NamedHandle, error)) (key, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(e.tpm)
	switch {
	case err == nil && e.opts.Recreate:
		// Recreate replaces signing keys only: a storage or decryption key
		// (an SRK, an EK) at the handle is somebody else's, and stays.
		pub, perr := tpm2.Unmarshal[tpm2.TPMTPublic](rsp.OutPublic.Bytes())
		if perr != nil || !pub.ObjectAttributes.SignEncrypt || pub.ObjectAttributes.Decrypt {
			return key{}, fmt.Errorf("%s at %#x: %w: not a signing key; Recreate does not evict it", what, uint32(h), ErrKeyMismatch)
		}
		if _, err := (tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(e.opts.OwnerAuth)},
			ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: rsp.Name},
			PersistentHandle: h,
		}).Execute(e.tpm); err != nil {
			return key{}, fmt.Errorf("%s: evict the key at %#x: %w", what, uint32(h), err)
		}
	case err == nil:
		pub, perr := tpm2.Unmarshal[tpm2.TPMTPublic](rsp.OutPublic.Bytes())
		if perr != nil || !matchesTemplate(*pub, tmpl) {
			return key{}, fmt.Errorf("%s at %#x: %w (not a %s with the expected template; set Recreate to replace it)",
				what, uint32(h), ErrKeyMismatch, keyDesc(tmpl))
		}
		return e.keyFrom(what, h, rsp, tmpl)
	case isRC(err, tpm2.TPMRCHandle):
		// Nothing persisted at h yet.
	default:
		return key{}, fmt.Errorf("%s: read the key at %#x: %w", what, uint32(h), err)
	}

	p, err := parent()
	if err != nil {
		return key{}, fmt.Errorf("%s: %w", what, err)
	}
	created, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: p.Handle, Name: p.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(e.tpm)
	if err != nil {
		return key{}, fmt.Errorf("%s: create: %w", what, err)
	}
	loaded, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: p.Handle, Name: p.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    created.OutPrivate,
		InPublic:     created.OutPublic,
	}.Execute(e.tpm)
	if err != nil {
		return key{}, fmt.Errorf("%s: load: %w", what, err)
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(e.opts.OwnerAuth)},
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: h,
	}.Execute(e.tpm)
	e.flush(loaded.ObjectHandle)
	if err != nil {
		return key{}, fmt.Errorf("%s: persist at %#x: %w", what, uint32(h), err)
	}
	rsp, err = tpm2.ReadPublic{ObjectHandle: h}.Execute(e.tpm)
	if err != nil {
		return key{}, fmt.Errorf("%s: read the key persisted at %#x: %w", what, uint32(h), err)
	}
	return e.keyFrom(what, h, rsp, tmpl)
}

// keyFrom makes a key of a ReadPublic response.
func (e *Enclave) keyFrom(what string, h tpm2.TPMHandle, rsp *tpm2.ReadPublicResponse, tmpl tpm2.TPMTPublic) (key, error) {
	k := key{handle: h, name: rsp.Name, public: clone(rsp.OutPublic.Bytes()), tmpl: tmpl}
	// The name the TPM reports must be the name of the public area it
	// returned; this also checks that the area parses.
	name, err := Name(k.public)
	if err != nil {
		return key{}, fmt.Errorf("%s at %#x: %w", what, uint32(h), err)
	}
	if !bytes.Equal(name, k.name.Buffer) {
		return key{}, fmt.Errorf("%s at %#x: %w: the TPM's name is not the name of the public area", what, uint32(h), ErrMalformed)
	}
	if k.pub, err = PublicKey(k.public); err != nil {
		return key{}, fmt.Errorf("%s at %#x: %w", what, uint32(h), err)
	}
	return k, nil
}

// flush flushes a transient object or session; errors are ignored (the
// handle is gone or the connection is, and either way nothing is left to
// do).
func (e *Enclave) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(e.tpm)
}

func keyDesc(t tpm2.TPMTPublic) string {
	kind := "signing key"
	if t.ObjectAttributes.Restricted {
		kind = "restricted signing key"
	}
	switch t.Type {
	case tpm2.TPMAlgECC:
		return "ECC P-256 " + kind
	case tpm2.TPMAlgRSA:
		return "RSA-2048 " + kind
	}
	return kind
}
