package tpm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MaxCredential is the longest credential (secret) MakeCredential wraps:
// a TPM2B_DIGEST that every TPM's ActivateCredential returns.
const MaxCredential = 32

// MakeCredential is the verifier's half of credential activation, in
// software (no TPM): it wraps secret for the TPM that holds the EK
// ekPublic (TPMT_PUBLIC bytes), so that only that TPM can recover it, and
// only through a key whose name is akName (see Name). It returns the
// TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents for
// ActivateCredential.
func MakeCredential(ekPublic, akName, secret []byte) (credentialBlob, encryptedSecret []byte, err error) {
	ek, err := ParsePublic(ekPublic)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: EK: %w", ErrCredential, err)
	}
	a := ek.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return nil, nil, fmt.Errorf("%w: the EK is not a restricted decryption key", ErrCredential)
	}
	if _, err := publicKey(ek); err != nil {
		return nil, nil, fmt.Errorf("%w: EK: %w", ErrCredential, err)
	}
	if err := checkName(akName); err != nil {
		return nil, nil, fmt.Errorf("%w: AK name: %w", ErrCredential, err)
	}
	if len(secret) == 0 || len(secret) > MaxCredential {
		return nil, nil, fmt.Errorf("%w: secret of %d bytes, want 1 to %d", ErrCredential, len(secret), MaxCredential)
	}
	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: EK: %v", ErrCredential, err)
	}
	blob, enc, err := tpm2.CreateCredential(rand.Reader, key, akName, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCredential, err)
	}
	return blob, enc, nil
}

// checkName checks that name is nameAlg ‖ digest of that algorithm.
func checkName(name []byte) error {
	if len(name) < 2 {
		return fmt.Errorf("%w: name of %d bytes", ErrMalformed, len(name))
	}
	h, err := hashOf(tpm2.TPMIAlgHash(uint16(name[0])<<8 | uint16(name[1])))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	if len(name) != 2+h.Size() {
		return fmt.Errorf("%w: name of %d bytes for %v", ErrMalformed, len(name), h)
	}
	return nil
}

// ActivateCredential is the agent's half of credential activation: the
// TPM decrypts the credential with the EK and releases it only if it was
// made for the AK's name. The secret proves to the verifier that the AK
// lives in the TPM of the EK. A credential made for another EK or another
// AK, or altered, fails with ErrActivation.
func (e *Enclave) ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	var secret []byte
	err := e.do(ctx, func() error {
		ek, release, err := e.loadEK()
		if err != nil {
			return fmt.Errorf("activate credential: %w", err)
		}
		defer release()
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: e.akHandle(),
			KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: e.ekAuth()},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(e.tpm)
		if err != nil {
			var rc tpm2.TPMRC
			if errors.As(err, &rc) {
				return fmt.Errorf("activate credential: %w: %w", ErrActivation, err)
			}
			return fmt.Errorf("activate credential: %w", err)
		}
		secret = clone(rsp.CertInfo.Buffer)
		return nil
	})
	return secret, err
}

// ekAuth authorizes the EK for its USER role: the low-range TCG templates
// clear userWithAuth and require PolicySecret(TPM_RH_ENDORSEMENT); the
// high-range ones set userWithAuth, with an empty authValue.
func (e *Enclave) ekAuth() tpm2.Session {
	if e.ek.spec.template.ObjectAttributes.UserWithAuth {
		return tpm2.PasswordAuth(nil)
	}
	endorsementAuth := e.opts.EndorsementAuth
	return tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, session tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{
			AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(endorsementAuth)},
			PolicySession: session,
			NonceTPM:      nonceTPM,
		}.Execute(t)
		return err
	})
}
