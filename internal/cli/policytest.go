package cli

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
)

func newPolicyTestCmd(g *globalOptions) *cobra.Command {
	var policyDir, agentID, akFile, nonceHex, output string
	var minLevel int
	cmd := &cobra.Command{
		Use:   "test [--policy DIR] EVIDENCE.json",
		Short: "Appraise evidence offline under an attestation policy: level, status, failures",
		Long: `Test verifies evidence and evaluates an attestation (Rego) policy on it, exactly
as the attestation service does, with no service: it prints the security level
(0-4), the status, the trust vector and every failing claim with the level it
blocks. See docs/attestation-policy.md.

--policy is a directory of .rego files and an optional data.json (reference
values); without it the built-in default policy is used. Without --nonce the
evidence's own nonce is accepted, and without --enrolled-ak a TPM evidence's own
AK (a software evidence's own report key) is trusted: the test then judges the
policy, not enrollment or freshness. Give both to check those as the service
does.

Exit codes: 0 level >= --min-level, 1 below it, 2 usage, I/O or policy error.`,
		Example: `  vigil policy test evidence.json
  vigil policy test --policy /etc/vigil/policy --enrolled-ak ak.pem --nonce 0011223344556677 -o json evidence.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageErr("--output must be text or json")
			}
			if minLevel < appraise.LevelUntrusted || minLevel > appraise.MaxLevel {
				return usageErr("--min-level: 0 to %d", appraise.MaxLevel)
			}
			ctx := cmd.Context()
			var pols *appraise.Policies
			var err error
			if policyDir != "" {
				pols, err = appraise.LoadDir(ctx, policyDir)
			} else {
				pols, err = appraise.Default(ctx)
			}
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			ev, err := evidence.Decode(raw)
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("%s: %w", args[0], err)}
			}
			req := &appraise.Request{Agent: appraise.Agent{ID: agentID, Enclave: ev.Enclave}, Evidence: ev}
			var notes []string
			if nonceHex != "" {
				if req.Nonce, err = hex.DecodeString(nonceHex); err != nil || len(req.Nonce) == 0 {
					return usageErr("--nonce: hex required")
				}
			} else {
				// Offline: the evidence's own nonce (a malformed one stays
				// nil and fails as nonce-mismatch).
				req.Nonce, _ = hex.DecodeString(ev.Nonce)
				notes = append(notes, "no --nonce: the evidence's own nonce is accepted")
			}
			switch {
			case akFile != "":
				b, err := os.ReadFile(akFile)
				if err != nil {
					return usageErr("--enrolled-ak: %v", err)
				}
				if req.Agent.AK, err = evidence.AKFromPEM(b); err != nil {
					return usageErr("--enrolled-ak %s: %v", akFile, err)
				}
				req.Agent.Enclave = string(enclave.TPM)
			case ev.Enclave == string(enclave.TPM) && ev.AK != nil:
				req.Agent.AK, _ = evidence.AKFromPEM([]byte(ev.AK.PEM))
				req.Agent.AKPublic = ev.AK.Public
				notes = append(notes, "no --enrolled-ak: the evidence's own AK is trusted")
			case ev.Enclave == string(enclave.Software):
				req.Agent.ReportKey, _ = evidence.AKFromPEM([]byte(ev.ReportKey.Public))
				notes = append(notes, "software evidence: its own report key is trusted")
			}
			if req.Agent.Enclave != string(enclave.TPM) {
				// Unknown enclave kinds are judged as software evidence:
				// the verification then says enclave-mismatch.
				req.Agent.Enclave = string(enclave.Software)
			}
			out, err := appraise.New(pols, appraise.Options{}).Appraise(ctx, req)
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printOutcome(g, out, notes)
			}
			if out.Level < minLevel {
				return &exitError{code: ExitDenied}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyDir, "policy", "", "attestation policy directory (*.rego and data.json); default: the built-in policy")
	f.StringVar(&agentID, "agent-id", "offline-test", "agent ID the policy sees as input.agent.id")
	f.StringVar(&akFile, "enrolled-ak", "", "the agent's enrolled AK, PEM: the evidence must be signed by it (TPM)")
	f.StringVar(&nonceHex, "nonce", "", "the nonce the evidence must be bound to, hex; default: the evidence's own")
	f.IntVar(&minLevel, "min-level", appraise.LevelSoftware, "lowest level that exits 0")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printOutcome(g *globalOptions, out *appraise.Outcome, notes []string) {
	w := g.stdout
	fmt.Fprintf(w, "level %d (%s), status %s\n", out.Level, appraise.LevelName(out.Level), out.Status)
	fmt.Fprintf(w, "policy %s %s, content %s\n", out.PolicyID, out.PolicyDigest, out.ContentVersion)
	if v := out.Verification; v != nil {
		state := "valid"
		if !v.Valid {
			state = "INVALID: " + strings.Join(reasonStrings(v.Reasons), ", ")
		}
		fmt.Fprintf(w, "evidence %s (%s), event log verified %t, IMA verified %t\n", state, v.Enclave, v.EventLogVerified, v.IMAVerified)
	}
	keys := make([]string, 0, len(out.TrustVector))
	for k := range out.TrustVector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tv := make([]string, len(keys))
	for i, k := range keys {
		tv[i] = fmt.Sprintf("%s=%d", k, out.TrustVector[k])
	}
	fmt.Fprintf(w, "trust vector: %s\n", strings.Join(tv, " "))
	if len(out.Failures) == 0 {
		fmt.Fprintln(w, "no failing claim")
	} else {
		fmt.Fprintln(w, "failures (each blocks its level and above):")
		for _, f := range out.Failures {
			line := fmt.Sprintf("  level %d  %s  %s", f.Level, f.Reason, f.Claim)
			if f.Detail != "" {
				line += "  (" + f.Detail + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, n := range notes {
		fmt.Fprintf(g.stderr, "note: %s\n", n)
	}
}
