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
	"github.com/vigil-attest/vigil/tpm"
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
}

func newAgentKeysCmd(g *globalOptions) *cobra.Command {
	var uri, output string
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
				der, err := x509.MarshalPKIXPublicKey(k.key)
				if err != nil {
					return &exitError{code: ExitUsage, err: err}
				}
				*k.dst = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			}
			if ekCert != nil {
				out.EKCert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ekCert}))
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
			return nil
		},
	}
	c.Flags().StringVar(&uri, "tpm", "", "TPM: /dev/tpmrm0, unix:///path or tcp://127.0.0.1:PORT")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}
