package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/agent"
)

// proveOptions are `vigil agent prove`'s flags.
type proveOptions struct {
	Socket  string
	Aud     string
	Nonce   string
	Method  string
	URL     string
	Output  string
	Timeout time.Duration
}

func newAgentProveCmd(g *globalOptions) *cobra.Command {
	o := &proveOptions{}
	c := &cobra.Command{
		Use:   "prove",
		Short: "Get the session report and a fresh proof of possession from the running agent",
		Long: `Ask the agent running on this host ('vigil agent run --socket') for its session
report and a fresh proof of possession for a relying party (POST /v1/proof on
the socket). The agent signs the proof with its enclave's report key: the TPM's,
or a software key (the answer says "enclave": "software", and the report's level
is at most 1). When its latest report does not name --aud, the agent attests
once first to get one that does.

The proof (a vigil-pop+jwt JWS) carries --aud, --nonce (the relying party's),
--htm and --htu when it is for one HTTP request, the time, a unique ID, and the
hash of the report. Present both to the relying party, which checks them with
'vigil token verify --proof' or the ear Go package (docs/session-report.md).

Exit codes: 0 a proof was made, 1 the agent has no report to prove for (not
enrolled or approved, or the service is unreachable), 2 usage or I/O error.`,
		Example: `  vigil agent prove --aud https://bank.example --nonce 6f1c2a
  vigil agent prove --aud https://bank.example --htm POST --htu https://bank.example/transfer -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), g.stdout)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Socket, "socket", agent.DefaultSocket, "the agent's socket")
	f.StringVar(&o.Aud, "aud", "", "the relying party the proof is for (required)")
	f.StringVar(&o.Nonce, "nonce", "", "the relying party's nonce")
	f.StringVar(&o.Method, "htm", "", "the HTTP method of the request the proof is for (with --htu)")
	f.StringVar(&o.URL, "htu", "", "the URL of the request the proof is for (with --htm; query and fragment dropped)")
	f.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait for the agent (it may attest first)")
	return c
}

func (o *proveOptions) run(ctx context.Context, w io.Writer) error {
	if o.Output != "text" && o.Output != "json" {
		return usageErr("--output must be text or json")
	}
	if o.Aud == "" {
		return usageErr("--aud is required")
	}
	if (o.Method == "") != (o.URL == "") {
		return usageErr("--htm and --htu go together")
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	ans, err := agent.RequestProof(ctx, o.Socket, agent.ProofRequest{Audience: o.Aud, Nonce: o.Nonce, Method: o.Method, URL: o.URL})
	if err != nil {
		var pe *agent.ProblemError
		if errors.As(err, &pe) && pe.Status == http.StatusServiceUnavailable {
			return &exitError{code: ExitDenied, err: err}
		}
		return &exitError{code: ExitUsage, err: err}
	}
	if o.Output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ans); err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
		return nil
	}
	fmt.Fprintf(w, "agent %s, level %d, signed by its %s key, report expires %s\n", ans.AgentID, ans.Level, ans.Enclave, ans.Expires.Format(time.RFC3339))
	fmt.Fprintf(w, "session_report: %s\nproof: %s\n", ans.SessionReport, ans.Proof)
	return nil
}
