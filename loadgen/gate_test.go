package loadgen_test

import (
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-attest/vigil/gatekeeper"
	"github.com/vigil-attest/vigil/loadgen"
)

// inProcessGate starts the gate of the bench's configuration in this
// process (pid 0: its CPU is not measured apart); roots, when set,
// replace its CA.
func inProcessGate(t *testing.T, roots *x509.CertPool) func(context.Context, string) (string, int, func(), error) {
	return func(ctx context.Context, path string) (string, int, func(), error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", 0, nil, err
		}
		var cfg gatekeeper.Config
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			return "", 0, nil, err
		}
		g, err := gatekeeper.NewGate(cfg, gatekeeper.GateOptions{Roots: roots})
		if err != nil {
			return "", 0, nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		addr, done := make(chan string, 1), make(chan error, 1)
		go func() { done <- g.Run(ctx, func(proxy, _ string) { addr <- proxy }) }()
		select {
		case a := <-addr:
			return "http://" + a, 0, func() { cancel(); <-done }, nil
		case err := <-done:
			cancel()
			return "", 0, nil, err
		}
	}
}

// TestRunGate: the bench loads the upstream alone and through the gate,
// every request through the gate admitted (a fresh proof each), and
// reports both targets and the difference; a gate that refuses the
// bench's credentials (another CA) fails the run at its warm-up.
func TestRunGate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := loadgen.RunGate(ctx, loadgen.GateOptions{StartGate: inProcessGate(t, nil), Duration: time.Second, Concurrency: 2, Rounds: 2})
	if err != nil {
		t.Fatalf("RunGate: %v", err)
	}
	if rep.Gate.OK == 0 || rep.Gate.Failed != 0 || rep.Upstream.OK == 0 || rep.Upstream.Failed != 0 {
		t.Fatalf("upstream %+v, gate %+v", rep.Upstream, rep.Gate)
	}
	if rep.Gate.Rate <= 0 || rep.RateRatio <= 0 || rep.Gate.Latency.N != rep.Gate.OK || rep.ProofBytes == 0 || rep.ReportBytes == 0 {
		t.Fatalf("report %+v", rep)
	}
	_, err = loadgen.RunGate(ctx, loadgen.GateOptions{StartGate: inProcessGate(t, x509.NewCertPool()), Duration: time.Second, Concurrency: 2, Rounds: 1})
	if err == nil || !strings.Contains(err.Error(), "refused the warm-up") {
		t.Fatalf("a gate of another CA: %v", err)
	}
	if _, err := loadgen.RunGate(ctx, loadgen.GateOptions{}); err == nil {
		t.Fatal("no gate starter: no error")
	}
}
