package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/appraise"
)

// adminOptions reach the service's admin API.
type adminOptions struct {
	Server    string
	CA        string
	TokenFile string
	Output    string
}

func (o *adminOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Server, "server", "https://127.0.0.1:8443", "the attestation service's URL")
	fs.StringVar(&o.CA, "ca", "", "CA certificates (PEM) for the service's TLS certificate (default: vigil-data/tls/tls-ca.pem when it exists)")
	fs.StringVar(&o.TokenFile, "admin-token-file", "vigil-data/admin-token", "file holding the admin API's bearer token")
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
}

func (o *adminOptions) client() (*agent.Client, error) {
	if o.Output != "text" && o.Output != "json" {
		return nil, usageErr("--output must be text or json")
	}
	b, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return nil, usageErr("--admin-token-file: %v", err)
	}
	ca := o.CA
	if ca == "" {
		if _, err := os.Stat("vigil-data/tls/tls-ca.pem"); err == nil {
			ca = "vigil-data/tls/tls-ca.pem"
		}
	}
	c, err := agent.NewClient(o.Server, agent.ClientOptions{CAFile: ca, AdminToken: strings.TrimSpace(string(b))})
	if err != nil {
		return nil, usageErr("--server/--ca: %v", err)
	}
	return c, nil
}

func newAdminCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "admin",
		Short: "Operate the attestation service: list, inspect, approve and revoke agents",
		Long: `Operate a running attestation service through its admin API (bearer token:
the service's --admin-token-file, by default vigil-data/admin-token).

A revoked agent is refused at once by every replica, and may not enroll again.`,
	}
	c.AddCommand(newAdminAgentsCmd(g), newAdminAgentCmd(g), newAdminStatusCmd(g, "approve"), newAdminStatusCmd(g, "revoke"), newAdminRPCmd(g))
	return c
}

func newAdminAgentsCmd(g *globalOptions) *cobra.Command {
	o := &adminOptions{}
	var status string
	var limit int
	c := &cobra.Command{
		Use:     "agents",
		Short:   "List enrolled agents with their latest level",
		Example: "  vigil admin agents --status pending\n  vigil admin agents -o json | jq '.agents[] | select(.level < 2) | .id'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			var all []api.Agent
			after := ""
			for {
				page, err := cl.ListAgents(cmd.Context(), status, after, 0)
				if err != nil {
					return adminErr(err)
				}
				all = append(all, page.Agents...)
				if page.Next == "" || (limit > 0 && len(all) >= limit) {
					break
				}
				after = page.Next
			}
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			if o.Output == "json" {
				return writeJSONOut(g.stdout, api.AgentList{Agents: all})
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tENCLAVE\tSTATUS\tLEVEL\tRESULT\tATTESTED")
			for _, a := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Enclave, a.Status, levelText(a.Level), dash(a.ResultStatus), when(a.AttestedAt))
			}
			return tw.Flush()
		},
	}
	o.addFlags(c.Flags())
	c.Flags().StringVar(&status, "status", "", "only agents in this status: activating, pending, approved, revoked")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many agents (0: all)")
	return c
}

func newAdminAgentCmd(g *globalOptions) *cobra.Command {
	o := &adminOptions{}
	c := &cobra.Command{
		Use:   "agent ID",
		Short: "Show one agent and its latest results",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			d, err := cl.Agent(cmd.Context(), args[0])
			if err != nil {
				return adminErr(err)
			}
			if o.Output == "json" {
				return writeJSONOut(g.stdout, d)
			}
			w := g.stdout
			fmt.Fprintf(w, "agent     %s\nenclave   %s\nstatus    %s", d.ID, d.Enclave, d.Status)
			if d.StatusReason != "" {
				fmt.Fprintf(w, " (%s)", d.StatusReason)
			}
			fmt.Fprintf(w, "\nek        %s\nenrolled  %s\nlevel     %s\n", dash(d.EKHash), d.CreatedAt.Format(time.RFC3339), levelText(d.Level))
			for _, r := range d.Results {
				fmt.Fprintf(w, "\nresult %d  %s  level %d (%s), %s, policy %s\n", r.ID, r.Time.Format(time.RFC3339), r.Level, appraise.LevelName(r.Level), r.Status, r.PolicyID)
				for _, f := range r.Failures {
					fmt.Fprintf(w, "  - level %d needs %s (%s) %s\n", f.Level, f.Claim, f.Reason, f.Detail)
				}
			}
			return nil
		},
	}
	o.addFlags(c.Flags())
	return c
}

func newAdminStatusCmd(g *globalOptions, verb string) *cobra.Command {
	o := &adminOptions{}
	var reason string
	short := "Approve a pending agent"
	if verb == "revoke" {
		short = "Revoke an agent: refused at once, and may not enroll again"
	}
	c := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			call := cl.Approve
			if verb == "revoke" {
				call = cl.Revoke
			}
			a, err := call(cmd.Context(), args[0], reason)
			if err != nil {
				return adminErr(err)
			}
			if o.Output == "json" {
				return writeJSONOut(g.stdout, a)
			}
			fmt.Fprintf(g.stdout, "%s: %s\n", a.ID, a.Status)
			return nil
		},
	}
	o.addFlags(c.Flags())
	c.Flags().StringVar(&reason, "reason", "", "why, recorded with the status")
	return c
}

// adminErr maps the service's refusals to exit 1 and the rest to 2.
func adminErr(err error) error {
	if agent.IsProblem(err, api.CodeUnknownAgent, api.CodeAgentRevoked, api.CodeNotActivating) {
		return &exitError{code: ExitDenied, err: err}
	}
	return &exitError{code: ExitUsage, err: err}
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func levelText(l int) string {
	if l < 0 {
		return "-"
	}
	return fmt.Sprintf("%d %s", l, appraise.LevelName(l))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
