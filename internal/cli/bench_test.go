package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/loadgen"
	"github.com/vigil-attest/vigil/store/storetest"
)

func TestBenchAttestLocal(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *storetest.DB) {
		code, out, errOut := vigil(t, "bench", "attest", "--local", "--db", db.DSN, "--data", t.TempDir(),
			"--agents", "10", "--rate", "20", "--max", "20", "--duration", "15s", "-o", "json", "-q")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		var r loadgen.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		// Simulated TPMs, approved with the local service's admin token:
		// hardware-rooted level 2 (no event log, so not 3).
		if r.Enrollment.Enrolled != 10 || r.Enrollment.Approved != 10 || r.Attempts != 20 || r.OK != 20 || r.Levels["2"] != 20 {
			t.Fatalf("report %+v", r)
		}
	})
}

func TestBenchAttestSoftwareText(t *testing.T) {
	code, out, errOut := vigil(t, "bench", "attest", "--local", "--local-http", "--enclave", "software",
		"--agents", "3", "--rate", "10", "--max", "10", "--duration", "15s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"(local, sqlite)", "3 software", "10 started, 10 ok, 0 failed, 0 missed", "challenge+attest", "levels       1: 10", "errors       none"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "local service at http://127.0.0.1:") {
		t.Errorf("stderr: %s", errOut)
	}
}

func TestBenchAttestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--server", "http://127.0.0.1:1", "--local"},
		{"--server", "http://127.0.0.1:1", "--db", "x.db"},
		{"--local", "-o", "yaml"},
		{"--local", "--enclave", "sgx"},
		{"--server", "http://127.0.0.1:1", "--admin-token-file", "/nonexistent"},
	} {
		code, out, errOut := vigil(t, append([]string{"bench", "attest"}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	// Nothing listens: no agent enrolls, exit 2 with the reason.
	code, _, errOut := vigil(t, "bench", "attest", "--server", "http://127.0.0.1:1", "--agents", "1", "-q")
	if code != 2 || !strings.Contains(errOut, "no agent enrolled") {
		t.Fatalf("unreachable service: exit %d: %s", code, errOut)
	}
}

// TestBenchGateUsage: bad flags are usage errors (exit 2) before any
// gate starts. (The run itself needs the vigil binary: bench/gate.sh.)
func TestBenchGateUsage(t *testing.T) {
	for _, args := range [][]string{{"-o", "yaml"}, {"--concurrency", "-1"}, {"--concurrency", "5000"}, {"--rounds", "-1"}, {"--duration", "-1s"}, {"extra"}} {
		code, out, errOut := vigil(t, append([]string{"bench", "gate", "-q"}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}
