package cli

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/trust"
)

type signOptions struct {
	Key, Cert, Chain string
	Format           string
	In, Out          string
	Hash             string
	ProgramName, URL string
	KeyID            bool
}

func newSignCmd(g *globalOptions) *cobra.Command {
	o := &signOptions{}
	cmd := &cobra.Command{
		Use:   "sign --key K --cert C [--chain F] --format pe|kmod|cms --in FILE --out FILE",
		Short: "Sign a PE/EFI image, a kernel module, or any file (detached CMS)",
		Long: `Sign makes signatures that the independent tools accept:
  pe    Authenticode, embedded in the image (osslsigncode verify, sbverify)
  kmod  an appended module signature, as the kernel's scripts/sign-file makes it
        (no certificates, no signed attributes; modinfo shows signer and sig_key)
  cms   a detached DER CMS signature with signed attributes (openssl cms -verify)

The key is a PEM private key (PKCS#8, PKCS#1 or SEC 1); --cert is the signer's
certificate and --chain the intermediates to embed (pe and cms).`,
		Example: `  vigil sign --key signer.key --cert signer.pem --chain ca.pem --format pe --in app.efi --out app.signed.efi
  vigil sign --key signing_key.pem --cert signing_key.x509 --format kmod --in hello.ko --out hello.ko
  vigil sign --key k.pem --cert c.pem --format cms --in firmware.bin --out firmware.bin.p7s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Key == "" || o.Cert == "" || o.In == "" || o.Out == "" || o.Format == "" {
				return usageErr("--key, --cert, --format, --in and --out are required")
			}
			s, err := o.signer()
			if err != nil {
				return usageErr("%v", err)
			}
			if err := codesign.SignFile(s, codesign.Format(o.Format), o.In, o.Out); err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("sign %s: %w", o.In, err)}
			}
			g.logger.Info("signed", "in", o.In, "out", o.Out, "format", o.Format, "signer", s.Cert.Subject.String())
			fmt.Fprintf(g.stdout, "signed %s -> %s (%s, signer %q)\n", o.In, o.Out, o.Format, s.Cert.Subject.String())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Key, "key", "", "signer private key (PEM)")
	f.StringVar(&o.Cert, "cert", "", "signer certificate (PEM or DER)")
	f.StringVar(&o.Chain, "chain", "", "intermediate certificates to embed (PEM)")
	f.StringVar(&o.Format, "format", "", "signature format: pe, kmod or cms")
	f.StringVar(&o.In, "in", "", "input file")
	f.StringVar(&o.Out, "out", "", "output file (may equal --in)")
	f.StringVar(&o.Hash, "hash", "sha256", "digest: sha1, sha256, sha384 or sha512")
	f.StringVar(&o.ProgramName, "program-name", "", "Authenticode program name (pe)")
	f.StringVar(&o.URL, "url", "", "Authenticode more-info URL (pe)")
	f.BoolVar(&o.KeyID, "key-id", false, "identify a module signer by subject key identifier (kmod, like sign-file -k)")
	return cmd
}

func (o *signOptions) signer() (*codesign.Signer, error) {
	kb, err := os.ReadFile(o.Key)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", o.Key, err)
	}
	certs, err := trust.LoadCertificates(o.Cert)
	if err != nil {
		return nil, err
	}
	s := &codesign.Signer{Key: key, Cert: certs[0], ProgramName: o.ProgramName, URL: o.URL, SubjectKeyID: o.KeyID}
	if o.Chain != "" {
		if s.Chain, err = trust.LoadCertificates(o.Chain); err != nil {
			return nil, err
		}
	}
	switch o.Hash {
	case "sha1":
		s.Hash = crypto.SHA1
	case "sha256":
		s.Hash = crypto.SHA256
	case "sha384":
		s.Hash = crypto.SHA384
	case "sha512":
		s.Hash = crypto.SHA512
	default:
		return nil, fmt.Errorf("--hash %q: want sha1, sha256, sha384 or sha512", o.Hash)
	}
	return s, nil
}

func parsePrivateKey(b []byte) (crypto.Signer, error) {
	der := b
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "PRIVATE KEY" || blk.Type == "RSA PRIVATE KEY" || blk.Type == "EC PRIVATE KEY" {
			der = blk.Bytes
			break
		}
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("not a PKCS#8, PKCS#1 or SEC 1 private key")
}
