package cli

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/service"
)

// defaultTPM is the kernel's TPM resource manager.
const defaultTPM = "/dev/tpmrm0"

func newUpCmd(g *globalOptions) *cobra.Command {
	so := &serviceOptions{}
	mo := &measureOptions{}
	var eo enclaveOptions
	var interval time.Duration
	var rounds int
	c := &cobra.Command{
		Use:   "up",
		Short: "Start a local attestation service and attest this host with it",
		Long: `Start the attestation service on loopback (SQLite in --data) and an agent for
this host, then attest every --interval and print the security level with the
reasons it is not higher, until interrupted (or --rounds attestations).

The agent uses a TPM when one is reachable (--tpm, or /dev/tpmrm0) and otherwise
a software key (--data/agent.key), whose results never pass level 1. The local
TPM's EK is approved without a manufacturer certificate: you own both ends.`,
		Example: `  vigil up
  vigil up --tpm unix:///tmp/swtpm/sock --rounds 3
  vigil up --root ./captured-host --interval 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < time.Second {
				return usageErr("--interval: at least 1s")
			}
			cfg, err := so.config(g)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			if eo.TPM == "" && eo.Soft == "" {
				if _, err := os.Stat(defaultTPM); err == nil {
					eo.TPM = defaultTPM
				} else {
					eo.Soft = filepath.Join(cfg.DataDir, "agent.key")
				}
			}
			e, err := eo.open(ctx)
			if err != nil {
				return err
			}
			defer e.Close()
			if a, ok := e.(enclave.Attester); ok {
				ekPub, _, _, err := a.EK(ctx)
				if err != nil {
					return &exitError{code: ExitUsage, err: fmt.Errorf("TPM EK: %w", err)}
				}
				sum := sha256.Sum256(ekPub)
				cfg.EKAllowlist = append(cfg.EKAllowlist, hex.EncodeToString(sum[:]))
			}
			m, src, err := mo.measurer(g)
			if err != nil {
				return err
			}
			defer service.TuneRuntime()()
			s, err := service.Open(ctx, cfg)
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			defer s.Close()
			served := make(chan error, 1)
			sctx, cancel := context.WithCancel(ctx)
			defer func() { cancel(); <-served }()
			go func() { served <- s.Serve(sctx) }()
			client, err := agent.NewClient(s.URL(), agent.ClientOptions{RootCAs: s.TLSPool})
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			defer client.Close()
			a, err := agent.New(ctx, agent.Options{
				Client: client, Enclave: e, Measure: agent.MeasureWith(m, src),
				StateDir: filepath.Join(cfg.DataDir, "agent"), Interval: interval, Logger: g.logger,
			})
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			w := g.stdout
			fmt.Fprintf(w, "service   %s (database %s, admin token in %s)\n", s.URL(), dbName(cfg), tokenFile(cfg))
			fmt.Fprintf(w, "agent     %s, enclave %s, measuring %s\n", a.ID(), e.Kind(), mo.Root)
			return upLoop(ctx, w, a, interval, rounds)
		},
	}
	so.addFlags(c.Flags(), "127.0.0.1:8443")
	_ = c.Flags().Set("software", server.SoftwareAuto)
	c.Flags().Lookup("software").DefValue = server.SoftwareAuto
	mo.addFlags(c.Flags())
	eo.addFlags(c.Flags())
	c.Flags().DurationVar(&interval, "interval", 30*time.Second, "time between attestations")
	c.Flags().IntVar(&rounds, "rounds", 0, "stop after this many attestations (0: until interrupted)")
	return c
}

func tokenFile(c service.Config) string {
	if c.AdminTokenFile != "" {
		return c.AdminTokenFile
	}
	return filepath.Join(c.DataDir, "admin-token")
}

// upLoop enrolls, then attests every interval and prints each result. It
// returns nil when interrupted or after rounds results; exit 1 when the
// last result is unhealthy.
func upLoop(ctx context.Context, w io.Writer, a *agent.Agent, interval time.Duration, rounds int) error {
	st, err := a.Enroll(ctx)
	if err != nil {
		return &exitError{code: ExitUsage, err: fmt.Errorf("enroll: %w", err)}
	}
	fmt.Fprintf(w, "enrolled  %s\n", st)
	if st != agent.StatusApproved {
		return &exitError{code: ExitDenied, err: fmt.Errorf("enrollment is %s: approve it with 'vigil admin approve %s'", st, a.ID())}
	}
	var last *agent.Result
	for n := 1; ; n++ {
		res, err := a.AttestOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return healthExit(last)
		case err != nil:
			fmt.Fprintf(w, "%s  attestation failed: %v\n", time.Now().Format(time.TimeOnly), err)
		default:
			last = res
			printLevel(w, res)
		}
		if rounds > 0 && n >= rounds {
			if last == nil {
				return &exitError{code: ExitUsage, err: errors.New("no attestation succeeded")}
			}
			return healthExit(last)
		}
		select {
		case <-ctx.Done():
			return healthExit(last)
		case <-time.After(interval):
		}
	}
}

func healthExit(r *agent.Result) error {
	if r != nil && !r.Healthy() {
		return &exitError{code: ExitDenied, err: fmt.Errorf("level %d (%s): unhealthy", r.Level, appraise.LevelName(r.Level))}
	}
	return nil
}

// printLevel prints a result: the level, then why it is not higher.
func printLevel(w io.Writer, r *agent.Result) {
	fmt.Fprintf(w, "%s  level %d (%s), status %s, result %d\n", r.Time.Format(time.TimeOnly), r.Level, appraise.LevelName(r.Level), r.Status, r.ResultID)
	if len(r.Failures) == 0 {
		fmt.Fprintln(w, "          nothing holds it lower: every claim of every level passes")
		return
	}
	fmt.Fprintln(w, "          not higher because:")
	fs := slices.Clone(r.Failures)
	slices.SortStableFunc(fs, func(a, b appraise.Failure) int { return cmp.Compare(a.Level, b.Level) })
	for _, f := range fs {
		d := ""
		if f.Detail != "" {
			d = ": " + f.Detail
		}
		fmt.Fprintf(w, "          - level %d needs %s (%s)%s\n", f.Level, f.Claim, f.Reason, d)
	}
}
