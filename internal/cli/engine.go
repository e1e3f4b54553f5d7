package cli

import (
	"crypto/x509"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/trust"
)

// engineOptions are the flags that build a code-integrity engine.
type engineOptions struct {
	Policy       string
	Trust        []string
	Keyring      []string
	Kernel       []string
	IgnoreExpiry bool
}

func (o *engineOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Policy, "policy", "p", "", "code-integrity policy file (YAML; see docs/policy.md)")
	fs.StringSliceVar(&o.Trust, "trust", nil, "trust anchor certificate file (PEM or DER), repeatable; added to the policy's")
	fs.StringSliceVar(&o.Keyring, "keyring", nil, "certificates to find signers that signatures do not carry (PEM or DER), repeatable")
	fs.StringSliceVar(&o.Kernel, "kernel", nil, "kernel image (vmlinuz) whose built-in keys are trusted for modules, repeatable")
	fs.BoolVar(&o.IgnoreExpiry, "ignore-expiry", false, "ignore certificate validity periods (UEFI semantics), overriding the policy")
}

func (o *engineOptions) build(log *slog.Logger) (*integrity.Engine, error) {
	var p *codepolicy.Policy
	var err error
	if o.Policy != "" {
		if p, err = codepolicy.Load(o.Policy); err != nil {
			return nil, usageErr("policy: %v", err)
		}
	} else {
		p = codepolicy.Default()
	}
	var anchors []*x509.Certificate
	for _, f := range o.Trust {
		cs, err := readCertificates(f)
		if err != nil {
			return nil, usageErr("--trust: %v", err)
		}
		anchors = append(anchors, cs...)
	}
	for _, k := range o.Kernel {
		f, err := os.Open(k)
		if err != nil {
			return nil, usageErr("--kernel: %v", err)
		}
		st, _ := f.Stat()
		cs, err := kernelkeys.Certificates(f, st.Size())
		f.Close()
		if err != nil {
			return nil, usageErr("--kernel %s: %v", k, err)
		}
		if len(cs) == 0 {
			return nil, usageErr("--kernel %s: no built-in certificates found", k)
		}
		log.Info("kernel keys", "kernel", k, "certificates", len(cs))
		// A kernel's built-in keys are what it trusts for modules: anchors.
		anchors = append(anchors, cs...)
	}
	if len(anchors) > 0 {
		p.AddAnchors(anchors...)
	}
	if o.IgnoreExpiry {
		p.IgnoreExpiry = true
	}
	var keyring []*x509.Certificate
	for _, f := range o.Keyring {
		cs, err := readCertificates(f)
		if err != nil {
			return nil, usageErr("--keyring: %v", err)
		}
		keyring = append(keyring, cs...)
	}
	return integrity.New(integrity.Options{Policy: p, Keyring: keyring, Logger: log}), nil
}

// readCertificates reads PEM (every CERTIFICATE block) or DER certificates.
func readCertificates(path string) ([]*x509.Certificate, error) {
	return trust.LoadCertificates(path)
}
