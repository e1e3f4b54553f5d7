package cli

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

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
	// detail asks the engine for certificate details (inspect).
	detail bool
	// cache keeps verdicts by (path, size, mtime, inode) (the agent).
	cache bool
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
	anchors, err := trust.LoadCertificateFiles(o.Trust)
	if err != nil {
		return nil, usageErr("--trust: %v", err)
	}
	for _, k := range o.Kernel {
		cs, err := kernelKeys(k, log)
		if err != nil {
			return nil, usageErr("--kernel %s: %v", k, err)
		}
		// A kernel's built-in keys are what it trusts for modules: anchors.
		anchors = append(anchors, cs...)
	}
	if len(anchors) > 0 {
		p.AddAnchors(anchors...)
	}
	if o.IgnoreExpiry {
		p.IgnoreExpiry = true
	}
	keyring, err := trust.LoadCertificateFiles(o.Keyring)
	if err != nil {
		return nil, usageErr("--keyring: %v", err)
	}
	return integrity.New(integrity.Options{Policy: p, Keyring: keyring, Logger: log, Detail: o.detail, Cache: o.cache}), nil
}

// kernelKeys returns the certificates built into a kernel image. Finding
// them means decompressing the whole image (a second or more), so the result
// is cached under the user's cache directory, keyed by the SHA-256 of the
// image: the same image always yields the same keys, and a changed image
// misses the cache. $VIGIL_CACHE_DIR overrides the location; an unusable
// cache is ignored.
func kernelKeys(path string, log *slog.Logger) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	cacheFile := ""
	if dir := cacheDir(); dir != "" {
		cacheFile = filepath.Join(dir, "kernelkeys", sum+".pem")
		if cs, err := trust.LoadCertificates(cacheFile); err == nil {
			log.Debug("kernel keys from cache", "kernel", path, "cache", cacheFile, "certificates", len(cs))
			return cs, nil
		}
	}
	cs, err := kernelkeys.Certificates(f, st.Size())
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("no built-in certificates found")
	}
	log.Info("kernel keys", "kernel", path, "certificates", len(cs))
	if cacheFile != "" {
		var b []byte
		for _, c := range cs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		if err := os.MkdirAll(filepath.Dir(cacheFile), 0o755); err == nil {
			if err := writeFileAtomic(cacheFile, b, 0o644); err != nil {
				log.Debug("kernel key cache not written", "err", err)
			}
		}
	}
	return cs, nil
}

func cacheDir() string {
	if d := os.Getenv("VIGIL_CACHE_DIR"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "vigil")
}
