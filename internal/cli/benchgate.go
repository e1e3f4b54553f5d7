package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/loadgen"
)

// benchGateOptions are `vigil bench gate`'s flags.
type benchGateOptions struct {
	o      loadgen.GateOptions
	output string
	quiet  bool
}

func newBenchGateCmd(g *globalOptions) *cobra.Command {
	b := &benchGateOptions{}
	c := &cobra.Command{
		Use:   "gate",
		Short: "Measure what vigil gate adds to an upstream",
		Long: `Measure the conditional-access gate against the upstream alone, in one run on
loopback. A trivial upstream runs in this process; 'vigil gate' (this binary)
runs as a process of its own in front of it, verifying by the report CA (its
key set held: nothing fetched), on a route requiring level 2, an affirming
hardware claim and a report at most 5 minutes old. --concurrency clients send
GET requests closed loop (each the next when the last is answered), in
--rounds alternating rounds: the upstream alone, then through the gate, for
--duration in all. Every request through the gate carries the same session
report (a test issuer's, for a software report key) and a fresh proof of
possession, minted before each gate round (the gate refuses a replayed one;
a proof verifies at the same cost whoever signed it).

It prints each target's requests per second and latency percentiles, the
latency the gate adds at p50 and p99, the ratio of the rates, and the gate
process's CPU time per request (from /proc) with the rate one core of it
admits at that cost. The load generator, the upstream and the gate share this
machine's cores: the rates are floors for the gate alone.

Exit codes: 0 every request was answered 200, 1 some were not, 2 error.`,
		Example: `  vigil bench gate
  vigil bench gate --concurrency 1 --duration 20s -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return b.run(cmd.Context(), g) },
	}
	f := c.Flags()
	f.DurationVar(&b.o.Duration, "duration", loadgen.DefaultGateDuration, "timed phase, half on each target")
	f.IntVar(&b.o.Concurrency, "concurrency", loadgen.DefaultGateConcurrency, "closed-loop clients")
	f.IntVar(&b.o.Rounds, "rounds", loadgen.DefaultGateRounds, "alternating rounds of each target")
	f.StringVarP(&b.output, "output", "o", "text", "output format: text or json")
	f.BoolVarP(&b.quiet, "quiet", "q", false, "no progress lines on stderr")
	return c
}

func (b *benchGateOptions) run(ctx context.Context, g *globalOptions) error {
	if b.output != "text" && b.output != "json" {
		return usageErr("--output %q: want text or json", b.output)
	}
	if !b.quiet {
		b.o.Progress = g.stderr
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	b.o.StartGate = startGateProcess
	rep, err := loadgen.RunGate(ctx, b.o)
	if err != nil {
		if errors.Is(err, loadgen.ErrOptions) {
			return usageErr("%v", err)
		}
		return &exitError{code: ExitUsage, err: err}
	}
	if b.output == "json" {
		if err := writeJSONOut(g.stdout, rep); err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
	} else {
		printBenchGate(g.stdout, rep)
	}
	if rep.Gate.Failed > 0 || rep.Upstream.Failed > 0 {
		return &exitError{code: ExitDenied}
	}
	return nil
}

// startGateProcess runs `vigil gate --config path` (this executable) and
// waits for its proxy's address.
func startGateProcess(ctx context.Context, path string) (string, int, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(exe, "gate", "--config", path, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "VIGIL_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	addr := make(chan string, 1)
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "vigil gate: proxy on "); ok {
				a, _, _ := strings.Cut(rest, " ")
				addr <- a
			} else if out.Len() < 4096 {
				out.WriteString(line + "\n")
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			stop()
			return "", 0, nil, fmt.Errorf("vigil gate exited: %s", out.String())
		}
		return "http://" + a, cmd.Process.Pid, stop, nil
	case <-time.After(20 * time.Second):
		stop()
		return "", 0, nil, errors.New("vigil gate did not start in 20 s")
	case <-ctx.Done():
		stop()
		return "", 0, nil, ctx.Err()
	}
}

func printBenchGate(w io.Writer, r *loadgen.GateReport) {
	fmt.Fprintf(w, "closed loop, %d clients, %d rounds each, %d CPUs shared by generator, upstream and gate\n", r.Concurrency, r.Rounds, r.CPUs)
	fmt.Fprintf(w, "%-9s %9s %7s %10s %9s %9s %9s\n", "target", "ok", "failed", "req/s", "p50 ms", "p99 ms", "max ms")
	for _, t := range []struct {
		name string
		t    loadgen.Target
	}{{"upstream", r.Upstream}, {"gate", r.Gate}} {
		fmt.Fprintf(w, "%-9s %9d %7d %10.1f %9.3f %9.3f %9.3f\n", t.name, t.t.OK, t.t.Failed, t.t.Rate, t.t.Latency.P50, t.t.Latency.P99, t.t.Latency.Max)
	}
	fmt.Fprintf(w, "added     p50 %.3f ms, p99 %.3f ms; rate ratio gate/upstream %.3f\n", r.AddedP50, r.AddedP99, r.RateRatio)
	if r.GateCPU > 0 {
		fmt.Fprintf(w, "gate CPU  %.3f ms a request (%.0f /s per core); generator and upstream %.3f ms a request\n", r.GateCPU, r.GateCapacityPerCore, r.GeneratorCPU)
	}
	fmt.Fprintf(w, "errors    upstream %s; gate %s\n", counts(r.Upstream.Errors), counts(r.Gate.Errors))
}
