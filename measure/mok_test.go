package measure_test

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/reason"
)

// TestModulesMOKTrusted: a module signed by a machine owner key (the DKMS
// case) is judged as the kernel judges it: trusted when shim set
// MokListTrustedRT (the kernel's .machine keyring holds MokListRT's
// certificates), untrusted without the flag or with the flag off.
func TestModulesMOKTrusted(t *testing.T) {
	mok := testpki.NewRoot(testpki.Options{CommonName: "DKMS module signing key"})
	body := []byte("\x7fELF\x02\x01\x01 dkms module")
	var mod bytes.Buffer
	if err := codesign.SignModule(&codesign.Signer{Key: mok.Key, Cert: mok.Cert}, bytes.NewReader(body), int64(len(body)), &mod); err != nil {
		t.Fatal(err)
	}
	list, err := efi.AppendSignatureLists(nil, efi.X509List(efi.ShimLock, mok.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	const rt = efi.BootServiceAccess | efi.RuntimeAccess
	for _, c := range []struct {
		name    string
		flag    []byte // MokListTrustedRT's data, nil: absent
		allowed bool
	}{
		{"MokListTrustedRT set", []byte{1}, true},
		{"MokListTrustedRT absent", nil, false},
		{"MokListTrustedRT 0", []byte{0}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := healthy(t)
			if err := h.SetSecureBoot(true, []*x509.Certificate{pki.Root.Cert}, 3); err != nil {
				t.Fatal(err)
			}
			h.EFIVars[efi.MokListRT] = efi.Variable{Attributes: rt, Data: list}
			if c.flag != nil {
				h.EFIVars[efi.MokListTrustedRT] = efi.Variable{Attributes: rt, Data: c.flag}
			}
			h.Modules = append(h.Modules, testhost.Module{Name: "dkms_mod", Size: 4096, File: mod.Bytes()})
			r := measureHost(t, h, measure.Options{Engine: engine(t, "")})
			var got *measure.LoadedModule
			for i := range r.Modules.Loaded {
				if r.Modules.Loaded[i].Name == "dkms_mod" {
					got = &r.Modules.Loaded[i]
				}
			}
			if got == nil {
				t.Fatal("dkms_mod not loaded")
			}
			if got.Allowed != c.allowed || got.Signature != measure.SignatureSigned {
				t.Fatalf("dkms_mod %+v, want allowed %v", got, c.allowed)
			}
			if !c.allowed && !containsCode(got.Reasons, reason.UntrustedChain) {
				t.Fatalf("reasons %v, want untrusted-chain", got.Reasons)
			}
			// The kernel's own modules stay as they were.
			for _, m := range r.Modules.Loaded {
				if m.Name != "dkms_mod" && !m.Allowed {
					t.Errorf("%s: %+v", m.Name, m)
				}
			}
		})
	}
}

func containsCode(cs []reason.Code, c reason.Code) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}
