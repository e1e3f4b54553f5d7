package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/loadgen"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/server"
	"github.com/vigil-attest/vigil/service"
)

func newBenchCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure the attestation service and the gate under load",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(newBenchAttestCmd(g), newBenchGateCmd(g))
	return c
}

// benchAttestOptions are `vigil bench attest`'s flags.
type benchAttestOptions struct {
	o              loadgen.Options
	adminTokenFile string
	reportFile     string
	output         string
	local          bool
	localHTTP      bool
	db             string
	dataDir        string
	cpuProfile     string
	quiet          bool
}

func newBenchAttestCmd(g *globalOptions) *cobra.Command {
	b := &benchAttestOptions{}
	c := &cobra.Command{
		Use:   "attest",
		Short: "Load the attestation service with simulated agents",
		Long: `Load the attestation service with simulated agents and report its throughput
and latency. Phase 1 enrolls --agents agents through the real protocol (EK and
AK, credential activation) and approves them with the admin token when the
service leaves them pending. Phase 2 starts challenge + attestation rounds at
--rate per second over all agents (open loop: on schedule whatever the
latency, at most --concurrency in flight) for --duration, and prints the count,
the achieved rate, the latency percentiles and the errors by problem code.

The agents are simulated TPMs (enclave/simtpm: real TPM structures, ECC P-256
EK, keys in this process's memory — a load-test tool, never an attestation of
this host) or software keys (--enclave software). They all send the same
canonical runtime report (the fixture host's, or --report FILE), with fresh
signatures bound to each nonce.

--local starts the service in this process on 127.0.0.1 (SQLite in a temporary
directory, or --db postgres://…), built exactly as 'vigil server' builds it,
so one command measures everything; its figures include the load generator's
own CPU use on the same machine.

Exit codes: 0 every attestation succeeded on schedule, 1 some failed or could
not be started before --duration ran out (missed), 2 error.`,
		Example: `  vigil bench attest --local --agents 1000 --rate 1000 --duration 30s
  vigil bench attest --local --db postgres://postgres@127.0.0.1/test --rate 1000
  vigil bench attest --server https://127.0.0.1:8443 --ca vigil-data/tls/ca.pem \
      --admin-token-file vigil-data/admin-token --agents 100000 --rate 333 --duration 2m -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return b.run(cmd.Context(), g) },
	}
	f := c.Flags()
	f.StringVar(&b.o.ServerURL, "server", "", "the service's base URL (or --local)")
	f.StringVar(&b.o.CAFile, "ca", "", "PEM file of the CA to trust for the service's TLS certificate")
	f.StringVar(&b.o.AdminToken, "admin-token", "", "admin API token, to approve pending agents (also $VIGIL_ADMIN_TOKEN)")
	f.StringVar(&b.adminTokenFile, "admin-token-file", "", "file holding the admin API token")
	f.IntVar(&b.o.Agents, "agents", loadgen.DefaultAgents, "simulated agents")
	f.Float64Var(&b.o.Rate, "rate", loadgen.DefaultRate, "attestations per second over all agents")
	f.DurationVar(&b.o.Duration, "duration", loadgen.DefaultDuration, "how long attestations are started")
	f.IntVar(&b.o.MaxAttestations, "max", 0, "at most this many attestations (0: rate × duration)")
	f.IntVar(&b.o.Concurrency, "concurrency", loadgen.DefaultConcurrency, "attestations in flight at most")
	f.IntVar(&b.o.EnrollConcurrency, "enroll-concurrency", loadgen.DefaultEnrollConcurrency, "enrollments in flight")
	f.StringVar(&b.o.Enclave, "enclave", loadgen.EnclaveTPMSim, "simulated enclave: tpm-sim or software")
	f.StringVar(&b.o.Arrivals, "arrivals", loadgen.ArrivalsUniform, "arrival process: uniform or poisson")
	f.StringVar(&b.o.IDPrefix, "id-prefix", "", "agent ID prefix (default sim-RANDOM-)")
	f.DurationVar(&b.o.Timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout")
	f.StringVar(&b.reportFile, "report", "", "runtime report (JSON) every agent sends (default: the fixture host's)")
	f.StringVarP(&b.output, "output", "o", "text", "output format: text or json")
	f.BoolVar(&b.local, "local", false, "start the service in this process on 127.0.0.1")
	f.BoolVar(&b.localHTTP, "local-http", false, "with --local: serve plain HTTP instead of TLS (development CA)")
	f.StringVar(&b.db, "db", "", "with --local: database (default SQLite in the data directory; or postgres://…)")
	f.StringVar(&b.dataDir, "data", "", "with --local: data directory (default a temporary one, removed afterwards)")
	f.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of this process during phase 2 (with --local: service and generator)")
	f.BoolVarP(&b.quiet, "quiet", "q", false, "no progress lines on stderr")
	return c
}

func (b *benchAttestOptions) run(ctx context.Context, g *globalOptions) error {
	if b.output != "text" && b.output != "json" {
		return usageErr("--output %q: want text or json", b.output)
	}
	if b.local == (b.o.ServerURL != "") {
		return usageErr("give either --server URL or --local")
	}
	if !b.local && (b.db != "" || b.dataDir != "" || b.localHTTP) {
		return usageErr("--db, --data and --local-http go with --local")
	}
	if b.o.AdminToken == "" {
		b.o.AdminToken = os.Getenv("VIGIL_ADMIN_TOKEN")
	}
	if b.adminTokenFile != "" {
		t, err := os.ReadFile(b.adminTokenFile)
		if err != nil {
			return usageErr("--admin-token-file: %v", err)
		}
		b.o.AdminToken = strings.TrimSpace(string(t))
	}
	if b.reportFile != "" {
		raw, err := os.ReadFile(b.reportFile)
		if err != nil {
			return usageErr("--report: %v", err)
		}
		if b.o.Report, err = measure.Canonicalize(raw); err != nil {
			return usageErr("--report %s: %v", b.reportFile, err)
		}
	}
	if !b.quiet {
		b.o.Progress = g.stderr
	}
	ctx, stop := signalContext(ctx)
	defer stop()

	if b.local {
		cleanup, err := b.startLocal(ctx, g)
		if err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
		defer cleanup()
	}
	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			return usageErr("--cpuprofile: %v", err)
		}
		defer f.Close()
		b.o.OnPhase = func(p string) {
			switch p {
			case "attest":
				if err := pprof.StartCPUProfile(f); err != nil {
					g.logger.Warn("--cpuprofile", "err", err)
				}
			case "done":
				pprof.StopCPUProfile()
			}
		}
	}
	rep, err := loadgen.Run(ctx, b.o)
	if err != nil {
		if rep != nil && b.output == "text" {
			printBench(g.stdout, rep, b)
		}
		return &exitError{code: ExitUsage, err: fmt.Errorf("bench attest: %w", err)}
	}
	if b.output == "json" {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
	} else {
		printBench(g.stdout, rep, b)
	}
	if rep.Failed > 0 || rep.Missed > 0 || rep.OK == 0 {
		return &exitError{code: ExitDenied}
	}
	return nil
}

// startLocal starts the service in this process, as `vigil server` does,
// and points the generator at it.
func (b *benchAttestOptions) startLocal(ctx context.Context, g *globalOptions) (func(), error) {
	dir, rm := b.dataDir, func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-bench-")
		if err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		dir, rm = d, func() { os.RemoveAll(d) }
	}
	cfg := service.Config{
		Listen: "127.0.0.1:0", DataDir: dir, DB: b.db, InsecureHTTP: b.localHTTP,
		// Software agents wait for the generator's approval, as simulated
		// TPMs do (their EKs have no certificate).
		Software: server.SoftwarePending,
		// The generator is one client address by construction.
		ClientRate: -1,
		Logger:     g.logger,
	}
	s, err := service.Open(ctx, cfg)
	if err != nil {
		rm()
		return nil, fmt.Errorf("local service: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx) }()
	b.o.ServerURL, b.o.AdminToken, b.o.RootCAs = s.URL(), s.AdminToken, s.TLSPool
	if !b.quiet {
		fmt.Fprintf(g.stderr, "vigil bench: local service at %s (%s)\n", s.URL(), dbName(cfg))
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			g.logger.Warn("local service", "err", err)
		}
		s.Close()
		rm()
	}, nil
}

// printBench prints the report as a table.
func printBench(w io.Writer, r *loadgen.Report, b *benchAttestOptions) {
	where := r.Server
	if b.local {
		where += " (local, " + map[bool]string{false: "sqlite", true: "postgresql"}[strings.HasPrefix(b.db, "postgres")] + ")"
	}
	fmt.Fprintf(w, "service      %s\n", where)
	fmt.Fprintf(w, "agents       %d %s (report %d bytes), %d CPUs here\n", r.Agents, r.Enclave, r.ReportBytes, runtime.NumCPU())
	e := r.Enrollment
	fmt.Fprintf(w, "enrollment   %d of %d in %.1f s (%.0f/s; %d approved by admin; p50 %.1f ms, p99 %.1f ms)%s\n",
		e.Enrolled, e.Agents, e.DurationSeconds, e.Rate, e.Approved, e.Latency.P50, e.Latency.P99, errSummary(e.Errors))
	fmt.Fprintf(w, "attestations %d started, %d ok, %d failed, %d missed in %.1f s: %.1f/s achieved (target %.0f/s, %s, concurrency %d)\n",
		r.Attempts, r.OK, r.Failed, r.Missed, r.DurationSeconds, r.AchievedRate, r.TargetRate, r.Arrivals, r.Concurrency)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tn\tmean\tp50\tp90\tp99\tmax\t")
	for _, l := range []struct {
		name string
		l    loadgen.Latency
	}{
		{"challenge+attest", r.Latency}, {"challenge", r.Challenge}, {"attest", r.Attest},
		{"from schedule", r.Response}, {"start lag", r.Lag},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", l.name, l.l.N, l.l.Mean, l.l.P50, l.l.P90, l.l.P99, l.l.Max)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "levels       %s\n", counts(r.Levels))
	fmt.Fprintf(w, "statuses     %s\n", counts(r.Statuses))
	fmt.Fprintf(w, "errors       %s\n", counts(r.Errors))
	for _, m := range r.FirstErrors {
		fmt.Fprintf(w, "  e.g. %s\n", m)
	}
}

func errSummary(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	return "; errors " + counts(m)
}

// counts prints a map of counts in key order ("none" when empty).
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}
