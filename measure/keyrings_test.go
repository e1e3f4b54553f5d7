package measure_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"testing"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/reason"
)

// kernelKeyEngine trusts the module signing key itself, as --kernel
// trusts the image's system certificate list.
func kernelKeyEngine(t *testing.T) *integrity.Engine {
	t.Helper()
	p := codepolicy.Default()
	p.AddAnchors(pki.Leaf.Cert)
	return integrity.New(integrity.Options{Policy: p, Cache: true})
}

// TestKeyringsModuleVerdicts: on a live host the agent judges modules with
// the keys the running kernel's keyrings hold: an anchor no trust keyring
// holds is not used (untrusted-chain, listed not_trusted), a live key no
// certificate explains is reported unresolved, .blacklist's bin: hash of a
// module's signed content denies it (blocklisted-hash) and its revocation
// certificate revokes every signature by the key. From a capture (no
// keyctl) the anchors stay and the blacklist hashes still apply.
func TestKeyringsModuleVerdicts(t *testing.T) {
	other := testpki.NewRoot(testpki.Options{CommonName: "Some other distribution's kernel key"})
	leafSHA := sha256.Sum256(pki.Leaf.Cert.Raw)
	contentOf := func(name string) string {
		s := sha256.Sum256([]byte("\x7fELF\x02\x01\x01 fixture module " + name))
		return hex.EncodeToString(s[:])
	}
	type want struct {
		allowed bool
		code    reason.Code
	}
	for _, c := range []struct {
		name       string
		keyctl     bool
		builtin    *x509.Certificate
		extra      []testhost.Key
		modules    map[string]want
		notTrusted bool
		unresolved bool
	}{
		{name: "the kernel holds the build key", keyctl: true, builtin: pki.Leaf.Cert,
			modules: map[string]want{"nf_tables": {true, ""}, "vboxguest": {true, ""}}},
		{name: "the kernel holds another key", keyctl: true, builtin: other.Cert,
			modules:    map[string]want{"nf_tables": {false, reason.UntrustedChain}, "vboxguest": {false, reason.UntrustedChain}},
			notTrusted: true, unresolved: true},
		{name: "a module's signed content in .blacklist", keyctl: true, builtin: pki.Leaf.Cert,
			extra:   []testhost.Key{testhost.BlacklistKey(0x35d2a6a1, "bin:"+contentOf("nf_tables"))},
			modules: map[string]want{"nf_tables": {false, reason.BlocklistedHash}, "vboxguest": {true, ""}}},
		{name: "the build key's certificate in .blacklist", keyctl: true, builtin: pki.Leaf.Cert,
			extra:      []testhost.Key{testhost.AsymmetricKey(0x21f0e7d2, kernelkeys.KeyringBlacklist, pki.Leaf.Cert)},
			modules:    map[string]want{"nf_tables": {false, reason.Revoked}, "vboxguest": {false, reason.Revoked}},
			notTrusted: true},
		{name: "capture: anchors stay, blacklist hashes apply", keyctl: false, builtin: other.Cert,
			extra:   []testhost.Key{testhost.BlacklistKey(0x35d2a6a1, "bin:"+contentOf("vboxguest"))},
			modules: map[string]want{"nf_tables": {true, ""}, "vboxguest": {false, reason.BlocklistedHash}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testhost.Base()
			for _, n := range []string{"nf_tables", "vboxguest"} {
				h.Modules = append(h.Modules, testhost.Module{Name: n, Size: 4096, File: signedModule(t, n)})
			}
			h.Keys, h.Keyctl = testhost.DebianKeyrings(c.builtin, nil, nil, c.extra...), c.keyctl
			r := measureHost(t, h, measure.Options{Engine: kernelKeyEngine(t)})
			for _, m := range r.Modules.Loaded {
				w, ok := c.modules[m.Name]
				if !ok {
					continue
				}
				if m.Allowed != w.allowed || (w.code != "" && !containsCode(m.Reasons, w.code)) {
					t.Errorf("%s: allowed %v %v, want %v %s", m.Name, m.Allowed, m.Reasons, w.allowed, w.code)
				}
			}
			k := r.Keyrings
			wantMembership := "proc_keys"
			if c.keyctl {
				wantMembership = "keyctl"
			}
			if k.Status != measure.StatusOK || k.Membership != wantMembership {
				t.Fatalf("keyrings %+v", k)
			}
			if c.keyctl {
				if len(k.Trusted) != 1 || k.Trusted[0].Keyring != kernelkeys.KeyringBuiltin ||
					k.Trusted[0].Description != kernelkeys.KeyDescription(c.builtin) {
					t.Fatalf("trusted %+v", k.Trusted)
				}
				if got := k.Trusted[0].Certificate; (got == "") != c.unresolved || (!c.unresolved && got != hex.EncodeToString(leafSHA[:])) {
					t.Errorf("trusted key's certificate %q, unresolved %v", got, c.unresolved)
				}
			} else if len(k.Trusted) != 0 || len(k.Missing) != 3 {
				t.Errorf("capture: trusted %+v missing %v", k.Trusted, k.Missing)
			}
			if (len(k.NotTrusted) == 1 && k.NotTrusted[0].SHA256 == hex.EncodeToString(leafSHA[:])) != c.notTrusted {
				t.Errorf("not_trusted %+v", k.NotTrusted)
			}
			hashes := 0
			for _, e := range c.extra {
				if e.Type == "blacklist" {
					hashes++
				}
			}
			if k.BlacklistCount != hashes || len(k.Blacklist) != hashes {
				t.Errorf("blacklist %v (%d)", k.Blacklist, k.BlacklistCount)
			}
		})
	}
}

// TestKeyringsMachine: with MokListTrustedRT, a DKMS module signed by a
// MOK is trusted only when the live .machine keyring holds the key.
func TestKeyringsMachine(t *testing.T) {
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
	for _, c := range []struct {
		name    string
		machine []*x509.Certificate
		allowed bool
	}{
		{".machine holds the MOK", []*x509.Certificate{mok.Cert}, true},
		{".machine is empty (the kernel ignored MokListRT)", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testhost.Base()
			if err := h.SetSecureBoot(true, nil, 3); err != nil {
				t.Fatal(err)
			}
			const rt = efi.BootServiceAccess | efi.RuntimeAccess
			h.EFIVars[efi.MokListRT] = efi.Variable{Attributes: rt, Data: list}
			h.EFIVars[efi.MokListTrustedRT] = efi.Variable{Attributes: rt, Data: []byte{1}}
			h.Modules = []testhost.Module{{Name: "dkms_mod", Size: 4096, File: mod.Bytes()}}
			h.Keys, h.Keyctl = testhost.DebianKeyrings(pki.Leaf.Cert, c.machine, nil), true
			r := measureHost(t, h, measure.Options{Engine: kernelKeyEngine(t)})
			if len(r.Modules.Loaded) != 1 || r.Modules.Loaded[0].Allowed != c.allowed {
				t.Fatalf("modules %+v", r.Modules.Loaded)
			}
			if !c.allowed && !containsCode(r.Modules.Loaded[0].Reasons, reason.UntrustedChain) {
				t.Fatalf("reasons %v", r.Modules.Loaded[0].Reasons)
			}
		})
	}
}
