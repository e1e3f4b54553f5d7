package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
)

// enclaveOptions choose the enclave: a TPM or a software key.
type enclaveOptions struct {
	TPM  string
	Soft string
}

func (o *enclaveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TPM, "tpm", "", "TPM to use: /dev/tpmrm0, unix:///path/to/swtpm.sock or tcp://127.0.0.1:PORT")
	fs.StringVar(&o.Soft, "soft", "", "software key file (created 0600 when absent): lower assurance, never above level 1")
}

func (o *enclaveOptions) open(ctx context.Context) (enclave.Enclave, error) {
	switch {
	case o.TPM != "" && o.Soft != "":
		return nil, usageErr("--tpm and --soft are exclusive")
	case o.TPM != "":
		e, err := openTPM(ctx, o.TPM)
		if err != nil {
			return nil, &exitError{code: ExitUsage, err: fmt.Errorf("--tpm %s: %w", o.TPM, err)}
		}
		return e, nil
	case o.Soft != "":
		e, err := soft.Open(o.Soft)
		if err != nil {
			return nil, &exitError{code: ExitUsage, err: err}
		}
		return e, nil
	}
	return nil, usageErr("--tpm or --soft is required")
}

func newAgentEvidenceCmd(g *globalOptions) *cobra.Command {
	o := &measureOptions{}
	var eo enclaveOptions
	var nonceHex, pcrs string
	var withEK, noLogs bool
	var imaOffset int64
	c := &cobra.Command{
		Use:   "evidence",
		Short: "Measure this host and print signed evidence for a verifier's nonce",
		Long: `Measure the host (as 'vigil agent measure'), then sign the canonical report with
the enclave's report key. With a TPM, the AK also certifies the report key and
quotes the PCRs; the quote, the certification and the report signature are all
bound to the nonce and the report. The firmware event log and the IMA list
(from --ima-offset) travel with it. Output: evidence JSON (docs/evidence.md).`,
		Example: `  vigil agent evidence --tpm /dev/tpmrm0 --nonce $(openssl rand -hex 16) > evidence.json
  vigil agent evidence --soft /var/lib/vigil/agent.key --nonce 0011223344556677`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nonce, err := hex.DecodeString(nonceHex)
			if err != nil || len(nonce) < 8 || len(nonce) > 64 {
				return usageErr("--nonce: 8 to 64 bytes in hex")
			}
			sel, err := parsePCRSelection(pcrs)
			if err != nil {
				return usageErr("--pcrs: %v", err)
			}
			m, src, err := o.measurer(g)
			if err != nil {
				return err
			}
			e, err := eo.open(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			r, err := m.Measure(cmd.Context(), src)
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			report, err := r.Canonical()
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			ev, err := agent.BuildEvidence(cmd.Context(), e, src, agent.EvidenceOptions{
				Nonce: nonce, Report: report, PCRs: sel, WithEK: withEK, NoLogs: noLogs, IMAOffset: imaOffset,
			})
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(ev)
		},
	}
	o.addFlags(c.Flags())
	eo.addFlags(c.Flags())
	c.Flags().StringVar(&nonceHex, "nonce", "", "the verifier's nonce, hex (required)")
	c.Flags().StringVar(&pcrs, "pcrs", "sha256:0-10,14", "PCRs to quote: BANK:LIST, e.g. sha256:0-10,14 (the service requires 0-9, 10 with IMA, 14 with shim)")
	c.Flags().BoolVar(&withEK, "with-ek", false, "include the EK and its certificate (enrollment)")
	c.Flags().BoolVar(&noLogs, "no-logs", false, "leave the event log and the IMA list out")
	c.Flags().Int64Var(&imaOffset, "ima-offset", 0, "send the IMA list from this byte offset (the verifier's saved state)")
	return c
}

// parsePCRSelection parses "sha256:0-7,10" (banks separated by ';').
func parsePCRSelection(s string) (map[string][]int, error) {
	out := map[string][]int{}
	for _, part := range strings.Split(s, ";") {
		bank, list, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || bank == "" || list == "" {
			return nil, fmt.Errorf("%q: want BANK:LIST", part)
		}
		seen := map[int]bool{}
		for _, item := range strings.Split(list, ",") {
			lo, hi, isRange := strings.Cut(item, "-")
			a, err := strconv.Atoi(lo)
			b := a
			if err == nil && isRange {
				b, err = strconv.Atoi(hi)
			}
			if err != nil || a < 0 || b > 23 || a > b {
				return nil, fmt.Errorf("%q: PCRs are 0 to 23", item)
			}
			for i := a; i <= b; i++ {
				if !seen[i] {
					seen[i] = true
					out[bank] = append(out[bank], i)
				}
			}
		}
	}
	return out, nil
}

func newEvidenceCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "evidence",
		Short: "Work with agent evidence (verify offline)",
	}
	c.AddCommand(newEvidenceVerifyCmd(g))
	return c
}

func newEvidenceVerifyCmd(g *globalOptions) *cobra.Command {
	var akFile, nonceHex, output string
	c := &cobra.Command{
		Use:   "verify EVIDENCE.json",
		Short: "Verify evidence offline: signatures, quote, certification, logs",
		Long: `Verify evidence with no network: the report signature, and for a TPM the AK's
quote and certification of the report key, all bound to --nonce; the PCR
digest; the event log and the IMA list replayed to the quoted PCRs.

Exit codes: 0 valid, 1 invalid (reasons printed), 2 usage or I/O error.
--output json prints the result with its stable reason codes.`,
		Example: `  vigil evidence verify --ak ak.pem --nonce 00112233445566778899aabbccddeeff evidence.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageErr("--output must be text or json")
			}
			nonce, err := hex.DecodeString(nonceHex)
			if err != nil || len(nonce) == 0 {
				return usageErr("--nonce: hex required")
			}
			o := evidence.Options{Nonce: nonce}
			if akFile != "" {
				b, err := os.ReadFile(akFile)
				if err != nil {
					return usageErr("--ak: %v", err)
				}
				if o.AK, err = evidence.AKFromPEM(b); err != nil {
					return usageErr("--ak %s: %v", akFile, err)
				}
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			res := evidence.VerifyBytes(cmd.Context(), raw, o)
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				if res.Valid {
					sum := sha256.Sum256(raw)
					fmt.Fprintf(g.stdout, "valid: %s evidence, %x\n", res.Enclave, sum[:8])
				} else {
					fmt.Fprintf(g.stdout, "INVALID: %s\n", strings.Join(reasonStrings(res.Reasons), ", "))
					for _, m := range res.Messages {
						fmt.Fprintf(g.stdout, "  %s\n", m)
					}
				}
			}
			if !res.Valid {
				return &exitError{code: ExitDenied}
			}
			return nil
		},
	}
	c.Flags().StringVar(&akFile, "ak", "", "the enrolled attestation key, PEM (required for TPM evidence)")
	c.Flags().StringVar(&nonceHex, "nonce", "", "the nonce the evidence must be bound to, hex")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func reasonStrings[T ~string](rs []T) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
