package cli

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/tpm"
	"github.com/vigil-attest/vigil/trust"
)

// openTPM opens the TPM enclave, creating its keys when missing.
func openTPM(ctx context.Context, uri string) (enclave.Attester, error) {
	return tpm.Open(ctx, uri, tpm.Options{})
}

// keysOutput is `vigil agent keys --output json`, stable.
type keysOutput struct {
	TPM       string `json:"tpm"`
	EK        string `json:"ek"`
	EKCert    string `json:"ek_certificate,omitempty"`
	AK        string `json:"ak"`
	ReportKey string `json:"report_key"`
	// EKVerified is set with --ek-roots: whether the EK certificate
	// chains to them and holds the EK; EKError says why not.
	EKVerified *bool  `json:"ek_verified,omitempty"`
	EKError    string `json:"ek_error,omitempty"`
}

func newAgentKeysCmd(g *globalOptions) *cobra.Command {
	var uri, output, ekRoots string
	c := &cobra.Command{
		Use:   "keys",
		Short: "Print the TPM's EK, EK certificate, AK and report key (creating what is missing)",
		Long: `Open the TPM, create the attestation key (AK) and the report key if they are
missing (persisted, so later runs reuse them: idempotent), and print the public
keys as PEM: the endorsement key (EK) and its certificate from NV, the AK, and
the report key. The AK is what an operator enrolls for 'vigil evidence verify --ak'.`,
		Example: `  vigil agent keys --tpm /dev/tpmrm0
  vigil agent keys --tpm unix:///run/swtpm/sock --output json | jq -r .ak > ak.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageErr("--output must be text or json")
			}
			if uri == "" {
				return usageErr("--tpm is required")
			}
			a, err := openTPM(cmd.Context(), uri)
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("--tpm %s: %w", uri, err)}
			}
			defer a.Close()
			_, ekPub, ekCert, err := a.EK(cmd.Context())
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("EK: %w", err)}
			}
			out := keysOutput{TPM: uri}
			_, akPub := a.AKPublic()
			for _, k := range []struct {
				dst *string
				key crypto.PublicKey
			}{{&out.EK, ekPub}, {&out.AK, akPub}, {&out.ReportKey, a.ReportPublic()}} {
				if *k.dst, err = evidence.PublicKeyPEM(k.key); err != nil {
					return &exitError{code: ExitUsage, err: err}
				}
			}
			if ekCert != nil {
				out.EKCert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ekCert}))
			}
			if ekRoots != "" {
				verr := verifyEK(ekRoots, ekCert, ekPub)
				ok := verr == nil
				out.EKVerified = &ok
				if verr != nil {
					out.EKError = verr.Error()
				}
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Fprintf(g.stdout, "# EK\n%s", out.EK)
			if out.EKCert != "" {
				fmt.Fprintf(g.stdout, "# EK certificate\n%s", out.EKCert)
			} else {
				fmt.Fprintln(g.stdout, "# EK certificate: none in NV")
			}
			fmt.Fprintf(g.stdout, "# AK\n%s# report key\n%s", out.AK, out.ReportKey)
			if out.EKVerified != nil {
				if *out.EKVerified {
					fmt.Fprintf(g.stdout, "# EK certificate chains to %s\n", ekRoots)
				} else {
					fmt.Fprintf(g.stdout, "# EK certificate NOT verified: %s\n", out.EKError)
				}
			}
			if out.EKVerified != nil && !*out.EKVerified {
				return &exitError{code: ExitDenied}
			}
			return nil
		},
	}
	c.Flags().StringVar(&uri, "tpm", "", "TPM: /dev/tpmrm0, unix:///path or tcp://127.0.0.1:PORT")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	c.Flags().StringVar(&ekRoots, "ek-roots", "", "manufacturer CA certificates (PEM): verify the EK certificate's chain; exit 1 if it fails")
	return c
}

// verifyEK checks the EK certificate against the manufacturer CAs in a
// file: self-signed ones are roots, the others intermediates.
func verifyEK(file string, certDER []byte, ekPub crypto.PublicKey) error {
	if certDER == nil {
		return fmt.Errorf("the TPM holds no EK certificate")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("EK certificate: %w", err)
	}
	cas, err := trust.LoadCertificates(file)
	if err != nil {
		return err
	}
	var roots, inter []*x509.Certificate
	for _, c := range cas {
		if c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			inter = append(inter, c)
		}
	}
	return tpm.VerifyEKCertificate(cert, ekPub, roots, inter...)
}
