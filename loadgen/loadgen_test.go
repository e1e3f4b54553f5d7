package loadgen_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/loadgen"
	"github.com/vigil-attest/vigil/server"
)

func run(t *testing.T, o loadgen.Options) *loadgen.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := loadgen.Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v (report %+v)", err, rep)
	}
	return rep
}

func TestRunTPMSim(t *testing.T) {
	// The service leaves simulated TPMs pending (no EK certificate, no
	// allowlist): the generator approves them with the admin token.
	svc := testserver.Start(t, testserver.Options{Rate: -1})
	// 50/s for 2 s, with room for a loaded machine: Duration only bounds.
	rep := run(t, loadgen.Options{ServerURL: svc.URL, AdminToken: svc.AdminToken, Agents: 20, Rate: 50, MaxAttestations: 100, Duration: 15 * time.Second})
	if rep.Enrollment.Enrolled != 20 || rep.Enrollment.Approved != 20 || len(rep.Enrollment.Errors) != 0 {
		t.Fatalf("enrollment %+v", rep.Enrollment)
	}
	if rep.Failed != 0 || len(rep.Errors) != 0 {
		t.Fatalf("%d failed: %v %v", rep.Failed, rep.Errors, rep.FirstErrors)
	}
	// 100 attestations, each with a session report.
	if rep.Attempts != 100 || rep.Missed != 0 || rep.OK != 100 || rep.Latency.N != 100 || rep.Challenge.N != 100 || rep.Attest.N != 100 {
		t.Fatalf("attempts %d, ok %d, latencies %d/%d/%d", rep.Attempts, rep.OK, rep.Latency.N, rep.Challenge.N, rep.Attest.N)
	}
	var n int
	for lvl, c := range rep.Levels {
		if lvl < "1" || lvl > "4" {
			t.Errorf("%d attestations at level %s", c, lvl)
		}
		n += c
	}
	if n != rep.OK {
		t.Fatalf("levels %v do not add up to %d", rep.Levels, rep.OK)
	}
	if rep.Latency.P50 <= 0 || rep.Latency.P50 > rep.Latency.P99 || rep.Latency.P99 > rep.Latency.Max {
		t.Fatalf("latency %+v", rep.Latency)
	}
	// Every agent is now approved and attested.
	list := adminAgents(t, svc)
	if len(list) != 20 {
		t.Fatalf("%d agents listed", len(list))
	}
	for _, a := range list {
		if a.Status != "approved" || a.Level < 1 {
			t.Fatalf("agent %+v", a)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
}

func TestRunSoftware(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Software: server.SoftwareAuto, Rate: -1})
	rep := run(t, loadgen.Options{ServerURL: svc.URL, Enclave: loadgen.EnclaveSoftware, Agents: 5, Rate: 20, MaxAttestations: 20, Duration: 15 * time.Second,
		Arrivals: loadgen.ArrivalsPoisson, Seed: 1})
	if rep.Enrollment.Enrolled != 5 || rep.Enrollment.Approved != 0 || rep.Failed != 0 || rep.OK == 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Levels["1"] != rep.OK {
		t.Fatalf("software levels %v, want all 1", rep.Levels)
	}
}

func TestRunMissed(t *testing.T) {
	// One attestation in flight cannot keep up with 2,000/s: the arrivals
	// left when the second is over are missed, not started late.
	svc := testserver.Start(t, testserver.Options{Rate: -1})
	rep := run(t, loadgen.Options{ServerURL: svc.URL, AdminToken: svc.AdminToken, Agents: 5, Rate: 2000, Concurrency: 1, Duration: time.Second})
	if rep.Missed == 0 || rep.Attempts+rep.Missed != 2000 || rep.Failed != 0 || rep.OK != rep.Attempts {
		t.Fatalf("attempts %d, missed %d, ok %d, failed %d", rep.Attempts, rep.Missed, rep.OK, rep.Failed)
	}
	if rep.DurationSeconds > 5 {
		t.Fatalf("phase 2 took %.1f s for a 1 s duration", rep.DurationSeconds)
	}
}

func TestRunPendingWithoutToken(t *testing.T) {
	svc := testserver.Start(t, testserver.Options{Rate: -1})
	rep, err := loadgen.Run(context.Background(), loadgen.Options{ServerURL: svc.URL, Agents: 2, Rate: 10, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("no admin token: %v", err)
	}
	if rep.Enrollment.Enrolled != 0 || rep.Enrollment.Errors["client"] != 2 {
		t.Fatalf("enrollment %+v", rep.Enrollment)
	}
}

func TestRunCountsProblems(t *testing.T) {
	// A wrong admin token: every approval is refused with its code.
	svc := testserver.Start(t, testserver.Options{Rate: -1})
	_, err := loadgen.Run(context.Background(), loadgen.Options{ServerURL: svc.URL, AdminToken: "wrong", Agents: 3, Rate: 10, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), api.CodeUnauthorized) {
		t.Fatalf("wrong admin token: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []loadgen.Options{
		{},
		{ServerURL: "http://x", Agents: -1},
		{ServerURL: "http://x", Rate: -1},
		{ServerURL: "http://x", Enclave: "sgx"},
		{ServerURL: "http://x", Arrivals: "bursty"},
		{ServerURL: "http://x", IDPrefix: "no spaces "},
	} {
		if _, err := loadgen.Run(context.Background(), o); !errors.Is(err, loadgen.ErrOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func adminAgents(t *testing.T, svc *testserver.Service) []api.Agent {
	t.Helper()
	req, _ := newAdminRequest(svc, api.PathAgents+"?limit=100")
	resp, err := svc.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l api.AgentList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l.Agents
}

func newAdminRequest(svc *testserver.Service, path string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodGet, svc.URL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+svc.AdminToken)
	return req, nil
}
