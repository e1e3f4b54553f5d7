package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
)

func newAdminRPCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "rp",
		Short: "Manage relying parties' scoped tokens (background check, feed)",
		Long: `Relying parties get tokens of their own, never the admin token:
  verify  POST /v1/verify, the background-check model (session reports with aud = the name)
  feed    GET /v1/feed, level changes, approvals and revocations (SSE)
The service keeps only the token's SHA-256: it is shown once, at creation.
See docs/relying-parties.md.`,
	}
	c.AddCommand(newAdminRPCreateCmd(g), newAdminRPListCmd(g), newAdminRPDeleteCmd(g))
	return c
}

func newAdminRPCreateCmd(g *globalOptions) *cobra.Command {
	o := &adminOptions{}
	var scopes []string
	c := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a relying party and print its token (shown once)",
		Example: "  vigil admin rp create gate-1 --scope feed > gate-1.token\n  vigil admin rp create bank --scope verify,feed -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(scopes) == 0 {
				return usageErr("--scope: want verify, feed or both")
			}
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			rp, err := cl.CreateRelyingParty(cmd.Context(), args[0], scopes)
			if err != nil {
				return rpErr(err)
			}
			if o.Output == "json" {
				return writeJSONOut(g.stdout, rp)
			}
			fmt.Fprintln(g.stdout, rp.Token)
			fmt.Fprintf(g.stderr, "relying party %s (scopes %s): the token above is shown once; keep it like a password\n", rp.Name, strings.Join(rp.Scopes, ","))
			return nil
		},
	}
	o.addFlags(c.Flags())
	c.Flags().StringSliceVar(&scopes, "scope", nil, "scopes: verify, feed (comma-separated or repeated)")
	return c
}

func newAdminRPListCmd(g *globalOptions) *cobra.Command {
	o := &adminOptions{}
	c := &cobra.Command{
		Use:   "list",
		Short: "List the relying parties",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			l, err := cl.RelyingParties(cmd.Context())
			if err != nil {
				return rpErr(err)
			}
			if o.Output == "json" {
				return writeJSONOut(g.stdout, l)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSCOPES\tCREATED")
			for _, rp := range l.RelyingParties {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", rp.Name, strings.Join(rp.Scopes, ","), rp.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	o.addFlags(c.Flags())
	return c
}

func newAdminRPDeleteCmd(g *globalOptions) *cobra.Command {
	o := &adminOptions{}
	c := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a relying party: its token stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.DeleteRelyingParty(cmd.Context(), args[0]); err != nil {
				return rpErr(err)
			}
			if o.Output == "json" {
				return writeJSONOut(g.stdout, map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(g.stdout, "%s: deleted\n", args[0])
			return nil
		},
	}
	o.addFlags(c.Flags())
	return c
}

// rpErr maps the service's refusals to exit 1 and the rest to 2.
func rpErr(err error) error {
	if agent.IsProblem(err, api.CodeRelyingPartyExists, api.CodeUnknownRelyingParty) {
		return &exitError{code: ExitDenied, err: err}
	}
	return &exitError{code: ExitUsage, err: err}
}
