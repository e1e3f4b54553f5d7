package testvm

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/report"
)

// checkCapture measures the guest's capture on the host (`vigil agent
// measure --root`) and compares it with the report the guest wrote
// beside it: every field must be equal except those report.Volatile
// names (values that change between two reads of the same host, such as
// uptime), and each of those must be named for a reason the test checks.
func checkCapture(t *testing.T, r *rig) {
	if rc := strings.TrimSpace(r.read("b1/capture.rc")); rc != "0" {
		t.Fatalf("vigil agent capture exited %s: %s", rc, lastLines(r.read("b1/capture.err"), 10))
	}
	root := filepath.Join(r.share, "b1", "capture")
	cmd := exec.Command(r.hostVigil(), "agent", "measure", "--root", root, "--kernel", r.p.Vmlinuz, "-o", "json")
	cmd.Env = append(os.Environ(), "VIGIL_CACHE_DIR="+filepath.Join(r.work, "cache"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	host, err := cmd.Output()
	if err != nil {
		t.Fatalf("vigil agent measure --root on the host: %v: %s", err, stderr.String())
	}
	guest := []byte(r.read("b1/capture/vigil-report.json"))
	diffs, err := report.Compare(guest, host)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if d.Volatile == "" {
			t.Errorf("capture vs report: %s differs: guest %s, host %s", d.Path, d.A, d.B)
		} else {
			t.Logf("capture vs report: %s differs (volatile: %s)", d.Path, d.Volatile)
		}
	}
	t.Logf("capture: %d fields differ, each volatile: %v", len(diffs), !t.Failed())
}

// benchRows logs the TCG benchmark figures of the first boot (the rows
// of docs/BENCHMARKS.md): vigil agent measure cold (kernel keys
// extracted) and warm (from the cache), evidence creation on the guest's
// TPM, each attestation round, the agent's maximum RSS, and the service's
// time per attestation as the proxy in front of it saw it.
func benchRows(t *testing.T, r *rig, rec []recorded) {
	row := func(name, file string) {
		tm := parseTime(t, r.read(file))
		t.Logf("BENCH TCG %-28s wall %6.2f s  max RSS %6d KiB", name, tm.Wall.Seconds(), tm.MaxKiB)
	}
	row("agent measure (cold)", "b1/measure-cold.err")
	row("agent measure (warm)", "b1/measure-warm.err")
	row("agent evidence (TPM quote)", "b1/evidence.err")
	row("agent run --once (round 1)", "b1/attest1.err")
	row("agent run --once (round 2)", "b1/attest2.err")
	var server []string
	for _, a := range rec {
		server = append(server, a.Elapsed.Round(time.Millisecond).String())
	}
	t.Logf("BENCH TCG %-28s %s", "service per attestation", strings.Join(server, ", "))
	// The agent's kernel-key cache is under its state directory
	// (--state-dir /mnt/state): round 1 extracted the keys into it.
	if m, _ := filepath.Glob(filepath.Join(r.share, "state", "cache", "kernelkeys", "*.v2.pem")); len(m) != 1 {
		t.Errorf("the agent's kernel-key cache under --state-dir holds %d files, want 1", len(m))
	}
	if got := strings.TrimSpace(r.read("b1/home-cache")); got != "none" {
		t.Errorf("a cache under the guest's $HOME=/: %s", got)
	}
	var cold, warm report.Report
	for _, c := range []struct {
		file string
		r    *report.Report
	}{{"b1/measure-cold.json", &cold}, {"b1/measure-warm.json", &warm}} {
		if err := json.Unmarshal([]byte(r.read(c.file)), c.r); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
	}
	if fmt.Sprint(cold.SecureBoot.BootFiles) != fmt.Sprint(warm.SecureBoot.BootFiles) || len(cold.Modules.Loaded) != len(warm.Modules.Loaded) {
		t.Errorf("the warm measure judged differently from the cold one")
	}
}
