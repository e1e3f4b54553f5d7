package appraise_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/internal/testcmd"
)

// fixedLevel is a policy that answers level n with no failures.
func fixedLevel(n string) string {
	return `package vigil.appraisal

result := {"level": ` + n + `, "failures": [], "trust_vector": {"instance-identity": 2, "hardware": 2}}
`
}

// TestPolicyReload: a new policy in the directory replaces the old one on
// Reload (new digest, new result); a broken one is refused and the old one
// stays in force.
func TestPolicyReload(t *testing.T) {
	ctx := context.Background()
	dir := writePolicy(t, "fleet", map[string]string{"p.rego": fixedLevel("1")})
	p, err := appraise.LoadDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	first := p.Current()
	if first.ID != "fleet" || !strings.HasPrefix(first.Digest, "sha256:") || first.ContentVersion != first.Digest {
		t.Fatalf("policy %+v", first)
	}
	a := appraise.New(p, appraise.Options{})
	e := newSoft(t)
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, healthyHost(t), nil)})
	req := &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev}
	if out := appraiseOK(t, a, req); out.Level != 1 || out.PolicyDigest != first.Digest {
		t.Fatalf("level %d under %s", out.Level, out.PolicyDigest)
	}
	if changed, err := p.Reload(ctx); changed || err != nil {
		t.Fatalf("reload of an unchanged directory: %v %v", changed, err)
	}

	// A policy answering level 0, with a content version.
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(fixedLevel("0")), 0o644)
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"version": "2026.11.1", "reference": {}}`), 0o644)
	if changed, err := p.Reload(ctx); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	second := p.Current()
	if second.Digest == first.Digest || second.ContentVersion != "2026.11.1" {
		t.Fatalf("after reload %+v", second)
	}
	if out := appraiseOK(t, a, req); out.Level != 0 || out.PolicyDigest != second.Digest || out.ContentVersion != "2026.11.1" {
		t.Fatalf("level %d under %s %s", out.Level, out.PolicyDigest, out.ContentVersion)
	}

	broken := []struct{ name, file, content string }{
		{"syntax error", "p.rego", "package vigil.appraisal\nresult := {"},
		{"no result", "p.rego", "package vigil.appraisal\nother := 1\n"},
		{"level out of range", "p.rego", fixedLevel("5")},
		{"string level", "p.rego", fixedLevel(`"4"`)},
		{"bad trust claim", "p.rego", strings.Replace(fixedLevel("1"), `"hardware"`, `"firmware"`, 1)},
		{"failure without reason", "p.rego", strings.Replace(fixedLevel("1"), `"failures": []`, `"failures": [{"claim": "x", "level": 2}]`, 1)},
		{"runtime error", "p.rego", "package vigil.appraisal\nresult := {\"level\": to_number(\"x\"), \"failures\": [], \"trust_vector\": {}}\n"},
		{"network built-in", "p.rego", "package vigil.appraisal\nresult := {\"level\": 1, \"failures\": [], \"trust_vector\": {}} if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"})\n"},
		{"data.json unknown key", "data.json", `{"versoin": "x"}`},
		{"data.json not JSON", "data.json", `{`},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			path := filepath.Join(dir, b.file)
			old, _ := os.ReadFile(path)
			defer os.WriteFile(path, old, 0o644)
			os.WriteFile(path, []byte(b.content), 0o644)
			if changed, err := p.Reload(ctx); err == nil || changed {
				t.Fatalf("broken policy accepted: %v %v", changed, err)
			}
			if p.Current() != second {
				t.Fatal("the broken policy replaced the working one")
			}
			if out := appraiseOK(t, a, req); out.PolicyDigest != second.Digest {
				t.Fatal("appraised under another policy")
			}
			if _, err := appraise.LoadDir(ctx, dir); err == nil {
				t.Error("LoadDir accepts it")
			}
		})
	}
	if _, err := appraise.LoadDir(ctx, t.TempDir()); err == nil {
		t.Error("an empty directory loads")
	}
}

// TestPolicyWatch: Watch picks up a change without a restart, and logs a
// broken policy while keeping the old one.
func TestPolicyWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := writePolicy(t, "watched", map[string]string{"p.rego": fixedLevel("1")})
	p, err := appraise.LoadDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs testcmd.SyncBuffer
	p.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Watch(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); wg.Wait() }()
	first := p.Current()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package vigil.appraisal\nresult := {"), 0o644)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "policy reload failed") })
	if p.Current() != first {
		t.Fatal("broken policy in force")
	}
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(fixedLevel("0")), 0o644)
	waitFor(t, func() bool { return p.Current().Digest != first.Digest })
	// The new version is swapped in before its log line is written.
	waitFor(t, func() bool { return strings.Contains(logs.String(), "policy reloaded") })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPolicyCannotLiftCaps: a policy that says level 4 for everything
// cannot make software evidence more than level 1, invalid evidence more
// than 0, or a level above what its own failures allow; the caps add the
// failures that explain them.
func TestPolicyCannotLiftCaps(t *testing.T) {
	ctx := context.Background()
	p, err := appraise.LoadDir(ctx, writePolicy(t, "generous", map[string]string{"p.rego": fixedLevel("4")}))
	if err != nil {
		t.Fatal(err)
	}
	a := appraise.New(p, appraise.Options{})
	e := newSoft(t)
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, healthyHost(t), nil)})
	out := appraiseOK(t, a, &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev})
	if out.Level != 1 || out.Status != "warning" || !hasFailure(out, "software-enclave", 2) {
		t.Errorf("software evidence under a level-4 policy: level %d %s\n%s", out.Level, out.Status, failureSet(out))
	}
	if _, ok := out.TrustVector["hardware"]; ok {
		t.Errorf("software evidence keeps hardware %v", out.TrustVector)
	}
	out = appraiseOK(t, a, &appraise.Request{Agent: softAgent(e), Nonce: otherNonce, Evidence: ev})
	if out.Level != 0 || !hasFailure(out, "nonce-mismatch", 1) || out.TrustVector["instance-identity"] != 99 {
		t.Errorf("replayed evidence under a level-4 policy: level %d %v\n%s", out.Level, out.TrustVector, failureSet(out))
	}

	// A policy whose failures contradict its level.
	p2, err := appraise.LoadDir(ctx, writePolicy(t, "inconsistent", map[string]string{"p.rego": strings.Replace(fixedLevel("4"),
		`"failures": []`, `"failures": [{"claim": "report.x", "reason": "x-off", "level": 2}]`, 1)}))
	if err != nil {
		t.Fatal(err)
	}
	out = appraiseOK(t, appraise.New(p2, appraise.Options{}), &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev})
	if out.Level != 1 {
		t.Errorf("level %d despite a failure at level 2", out.Level)
	}
}

// TestPolicyEvalErrorFailsClosed: a policy that breaks on real input (not
// on the smoke inputs) makes Appraise return an error, never a result.
func TestPolicyEvalErrorFailsClosed(t *testing.T) {
	ctx := context.Background()
	// Breaks only when the report has modules.
	src := `package vigil.appraisal

result := {"level": n, "failures": [], "trust_vector": {}} if {
	n := 1 + count([m | some m in input.report.modules.loaded; m.name == "nf_tables"]) * 10
}
`
	p, err := appraise.LoadDir(ctx, writePolicy(t, "trap", map[string]string{"p.rego": src}))
	if err != nil {
		t.Fatal(err)
	}
	e := newSoft(t)
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, healthyHost(t), nil)})
	out, err := appraise.New(p, appraise.Options{}).Appraise(ctx, &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev})
	if err == nil || out != nil || !errors.Is(err, appraise.ErrPolicyResult) {
		t.Fatalf("out %+v, err %v", out, err)
	}
	// Undefined on real input.
	p, err = appraise.LoadDir(ctx, writePolicy(t, "undefined", map[string]string{"p.rego": `package vigil.appraisal

result := {"level": 1, "failures": [], "trust_vector": {}} if input.report.kernel.hostname == ""

result := {"level": 0, "failures": [], "trust_vector": {}} if not input.evidence.valid
`}))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := appraise.New(p, appraise.Options{}).Appraise(ctx, &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev}); err == nil {
		t.Fatalf("undefined result gave %+v", out)
	}
	// A cancelled context is an error too, not a level-0 result.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if out, err := defaultAppraiser(t).Appraise(cctx, &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev}); err == nil {
		t.Fatalf("cancelled appraisal gave %+v", out)
	}
}

// TestConcurrentAppraisals: appraisals run in parallel while the policy
// is reloaded (run with -race): each outcome is judged under one whole
// policy version, the old or the new.
func TestConcurrentAppraisals(t *testing.T) {
	ctx := context.Background()
	dir := writePolicy(t, "swap", map[string]string{"p.rego": fixedLevel("1")})
	p, err := appraise.LoadDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	first := p.Current().Digest
	a := appraise.New(p, appraise.Options{})
	e := newSoft(t)
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, healthyHost(t), nil)})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				out, err := a.Appraise(ctx, &appraise.Request{Agent: softAgent(e), Nonce: nonce, Evidence: ev})
				switch {
				case err != nil:
					errs <- err.Error()
				case out.PolicyDigest == first && out.Level != 1, out.PolicyDigest != first && out.Level != 0:
					errs <- fmt.Sprintf("level %d under %s", out.Level, out.PolicyDigest)
				}
			}
		}()
	}
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(fixedLevel("0")), 0o644)
	if _, err := p.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestPolicyQuoteSelection: data.json's quote is the selection evidence
// must quote; a policy may require more, never leave out a boot PCR, and
// a selection it requires and the agent leaves out is refused.
func TestPolicyQuoteSelection(t *testing.T) {
	ctx := context.Background()
	rego := map[string]string{"p.rego": "package vigil.appraisal\n\nresult := {\"level\": 2, \"failures\": [], \"trust_vector\": {}}\n"}
	with := func(quote string) map[string]string {
		m := map[string]string{"data.json": `{"version": "q", "quote": ` + quote + `}`}
		for k, v := range rego {
			m[k] = v
		}
		return m
	}
	for _, bad := range []string{
		`{"boot": [0, 1, 2, 3, 4, 5, 6, 7, 8]}`,
		`{"boot": [16], "ima": [10]}`,
		`{"boot": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 24]}`,
		`{"boot": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "pcrs": [1]}`,
	} {
		if _, err := appraise.LoadDir(ctx, writePolicy(t, "bad", with(bad))); err == nil {
			t.Errorf("quote %s accepted", bad)
		}
	}
	// Requiring PCR 15 as well: the default selection (no 15) is refused.
	p, err := appraise.LoadDir(ctx, writePolicy(t, "more", with(`{"boot": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15], "ima": [10], "mok": [14]}`)))
	if err != nil {
		t.Fatal(err)
	}
	e, log, list := bootedTPM(t)
	ev := build(t, e, evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, healthyHost(t), engine(t, "")), EventLog: log, IMALog: list})
	out := appraiseOK(t, appraise.New(p, appraise.Options{}), &appraise.Request{Agent: tpmAgent(e), Nonce: nonce, Evidence: ev})
	if out.Level != 0 || !hasFailure(out, "pcr-selection-insufficient", 1) {
		t.Fatalf("level %d\n%s", out.Level, failureSet(out))
	}
}
