package loadgen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/token"
	"github.com/vigil-attest/vigil/token/tokentest"
)

// Defaults of GateOptions.
const (
	DefaultGateDuration    = 20 * time.Second
	DefaultGateConcurrency = 16
	DefaultGateRounds      = 4
	// gateAudience, gatePublicURL and gatePath are the bench's relying
	// party, the URL its clients address and the route they call.
	gateAudience  = "bench.vigil.test"
	gatePublicURL = "http://bench.vigil.test"
	gatePath      = "/api/bench"
	// The proofs minted for a gate round: for twice the rate the last
	// round achieved, within these bounds.
	initialProofsPerSecond = 8000
	minProofsPerSecond     = 1000
	maxProofsPerSecond     = 20000
)

// GateOptions configure RunGate.
type GateOptions struct {
	// StartGate starts the gate (`vigil gate --config configPath`, a
	// process of its own) and returns its proxy's URL, the process whose
	// CPU time is the gate's (0: not measured) and how to stop it.
	StartGate func(ctx context.Context, configPath string) (url string, pid int, stop func(), err error)
	// Duration is the timed phase, half on the upstream alone and half
	// through the gate (DefaultGateDuration).
	Duration time.Duration
	// Concurrency is the closed-loop clients: each sends its next
	// request when the last is answered (DefaultGateConcurrency).
	Concurrency int
	// Rounds alternate the two targets (upstream, gate, upstream, …) so
	// that other load on the machine falls on both alike
	// (DefaultGateRounds).
	Rounds int
	// Dir holds the gate's configuration and the report CA (a temporary
	// directory, removed afterwards, when empty).
	Dir string
	// Progress, when set, receives a line per round.
	Progress io.Writer
}

// GateReport is the outcome of RunGate.
type GateReport struct {
	Concurrency int     `json:"concurrency"`
	Rounds      int     `json:"rounds"`
	CPUs        int     `json:"cpus"`
	Upstream    Target  `json:"upstream"`
	Gate        Target  `json:"gate"`
	RateRatio   float64 `json:"rate_ratio"`
	// AddedP50 and AddedP99 are the gate's latency less the upstream's,
	// at each percentile (ms).
	AddedP50 float64 `json:"added_p50_ms"`
	AddedP99 float64 `json:"added_p99_ms"`
	// GateCPU is the gate process's CPU time per admitted request (ms);
	// GateCapacityPerCore is what one core of it admits a second at that
	// cost. GeneratorCPU is this process's (load generator and upstream)
	// per request through the gate.
	GateCPU             float64 `json:"gate_cpu_ms_per_request,omitempty"`
	GateCapacityPerCore float64 `json:"gate_capacity_per_core,omitempty"`
	GeneratorCPU        float64 `json:"generator_cpu_ms_per_request,omitempty"`
	// ReportBytes and ProofBytes are the credentials' sizes.
	ReportBytes int `json:"report_bytes"`
	ProofBytes  int `json:"proof_bytes"`
}

// Target is one target's figures over its rounds.
type Target struct {
	OK      int            `json:"ok"`
	Failed  int            `json:"failed"`
	Errors  map[string]int `json:"errors,omitempty"`
	Seconds float64        `json:"seconds"`
	Rate    float64        `json:"rate"`
	Latency Latency        `json:"latency_ms"`
}

// RunGate measures what `vigil gate` adds to an upstream, in one run: a
// trivial upstream on loopback (in this process) is loaded closed loop
// at Concurrency, alone and behind the gate, in alternating rounds. The
// gate verifies by the report CA (a key set it holds: nothing fetched)
// a session report a test issuer signs for a software report key, and a
// fresh proof of that key for every request (minted before each gate
// round: the gate refuses a replayed one), on a route requiring level 2,
// an affirming hardware claim and a report at most 5 minutes old. Every
// request through the gate must be admitted: a refusal is a failure.
func RunGate(ctx context.Context, o GateOptions) (*GateReport, error) {
	if o.Duration == 0 {
		o.Duration = DefaultGateDuration
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultGateConcurrency
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultGateRounds
	}
	if o.StartGate == nil || o.Duration < 0 || o.Concurrency < 1 || o.Concurrency > 4096 || o.Rounds < 1 {
		return nil, fmt.Errorf("%w: a gate starter, duration %v, concurrency %d (1–4096), rounds %d", ErrOptions, o.Duration, o.Concurrency, o.Rounds)
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-bench-gate-")
		if err != nil {
			return nil, fmt.Errorf("bench gate: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	iss, err := token.NewIssuer(ctx, tokentest.NewKeyStore(), token.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("bench gate: issuer: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench gate: report key: %w", err)
	}
	report, err := iss.Issue(ctx, &ear.Claims{
		AgentID: "bench-gate-1", Nonce: []byte("0123456789abcdef"), Level: 2, Status: "affirming",
		TrustVector: map[string]int{"hardware": 2}, ReportKey: &key.PublicKey, Audience: []string{gateAudience},
	})
	if err != nil {
		return nil, fmt.Errorf("bench gate: report: %w", err)
	}

	// The upstream.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench gate: upstream: %w", err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 10 * time.Second}
	go up.Serve(ln)
	defer up.Close()
	upURL := "http://" + ln.Addr().String()

	caPath, confPath := filepath.Join(dir, "report-ca.pem"), filepath.Join(dir, "gate.yaml")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.CA().Raw}), 0o644); err != nil {
		return nil, fmt.Errorf("bench gate: %w", err)
	}
	conf := fmt.Sprintf(`listen: 127.0.0.1:0
upstream: %s
audience: %s
public-url: %s
ca: %s
routes:
  - path: /api
    min-level: 2
    max-age: 5m
    trust-vector: {hardware: affirming}
`, upURL, gateAudience, gatePublicURL, caPath)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("bench gate: %w", err)
	}
	gateURL, pid, stop, err := o.StartGate(ctx, confPath)
	if err != nil {
		return nil, fmt.Errorf("bench gate: starting the gate: %w", err)
	}
	defer stop()

	// mint makes n proofs for the route, on every core (each proof's jti
	// unique over the run).
	var seq atomic.Int64
	mint := func(n int) ([]string, error) {
		ps := make([]string, n)
		now := time.Now().Unix()
		ath := ear.ReportHash(report)
		sign := func(_ context.Context, m []byte) ([]byte, error) {
			d := sha256.Sum256(m)
			return ecdsa.SignASN1(rand.Reader, key, d[:])
		}
		var wg sync.WaitGroup
		errs := make(chan error, runtime.NumCPU())
		var next atomic.Int64
		for range runtime.NumCPU() {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					p, err := ear.SignProof(ctx, &key.PublicKey, ear.ProofClaims{
						Audience: gateAudience, Method: http.MethodGet, URL: gatePublicURL + gatePath, IssuedAt: now,
						ID: "bench-" + strconv.FormatInt(seq.Add(1), 10), ReportHash: ath,
					}, sign)
					if err != nil {
						errs <- err
						return
					}
					ps[i] = p
				}
			})
		}
		wg.Wait()
		select {
		case err := <-errs:
			return nil, err
		default:
		}
		return ps, nil
	}
	rep := &GateReport{Concurrency: o.Concurrency, Rounds: o.Rounds, CPUs: runtime.NumCPU(), ReportBytes: len(report)}
	round := o.Duration / time.Duration(2*o.Rounds)
	client := func() *http.Client {
		return &http.Client{Timeout: DefaultTimeout, Transport: &http.Transport{
			MaxIdleConns: o.Concurrency * 2, MaxIdleConnsPerHost: o.Concurrency * 2, IdleConnTimeout: time.Minute,
		}}
	}
	upC, gateC := client(), client()
	var upLat, gateLat []time.Duration
	var upSec, gateSec, gateCPU, selfCPU float64
	// A warm-up: connections made, the report verified once.
	warm, err := mint(o.Concurrency * 4)
	if err != nil {
		return nil, fmt.Errorf("bench gate: proofs: %w", err)
	}
	rep.ProofBytes = len(warm[0])
	if _, err := load(ctx, upC, upURL+gatePath, "", nil, o.Concurrency, time.Second, len(warm)); err != nil {
		return nil, err
	}
	if r, err := load(ctx, gateC, gateURL+gatePath, report, warm, o.Concurrency, time.Second, len(warm)); err != nil {
		return nil, err
	} else if r.failed > 0 {
		return nil, fmt.Errorf("bench gate: the gate refused the warm-up: %v (%s)", r.errors, r.first)
	}
	rep.Upstream.Errors, rep.Gate.Errors = map[string]int{}, map[string]int{}
	est := float64(initialProofsPerSecond)
	for i := 0; i < o.Rounds; i++ {
		r, err := load(ctx, upC, upURL+gatePath, "", nil, o.Concurrency, round, 0)
		if err != nil {
			return nil, err
		}
		upLat, upSec = append(upLat, r.lat...), upSec+r.seconds
		rep.Upstream.Failed += r.failed
		merge(rep.Upstream.Errors, r.errors)
		// Enough proofs for twice the last round's rate (a round that
		// uses them all ends early: its rate holds).
		proofs, err := mint(int(math.Ceil(round.Seconds() * est)))
		if err != nil {
			return nil, fmt.Errorf("bench gate: proofs: %w", err)
		}
		g0, s0 := cpuTicks(pid), cpuTicks(os.Getpid())
		r, err = load(ctx, gateC, gateURL+gatePath, report, proofs, o.Concurrency, round, len(proofs))
		if err != nil {
			return nil, err
		}
		g1, s1 := cpuTicks(pid), cpuTicks(os.Getpid())
		gateCPU += float64(g1-g0) / clockTicks
		selfCPU += float64(s1-s0) / clockTicks
		gateLat, gateSec = append(gateLat, r.lat...), gateSec+r.seconds
		if r.seconds > 0 {
			est = min(maxProofsPerSecond, max(minProofsPerSecond, 2*float64(len(r.lat))/r.seconds))
		}
		rep.Gate.Failed += r.failed
		merge(rep.Gate.Errors, r.errors)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "round %d/%d: upstream %d, gate %d requests\n", i+1, o.Rounds, len(upLat), len(gateLat))
		}
	}
	fill := func(t *Target, lat []time.Duration, sec float64) {
		t.OK, t.Seconds, t.Latency = len(lat), round3(sec), summarize(lat)
		if sec > 0 {
			t.Rate = round1(float64(len(lat)) / sec)
		}
	}
	fill(&rep.Upstream, upLat, upSec)
	fill(&rep.Gate, gateLat, gateSec)
	if rep.Upstream.Rate > 0 {
		rep.RateRatio = round3(rep.Gate.Rate / rep.Upstream.Rate)
	}
	rep.AddedP50 = round3(rep.Gate.Latency.P50 - rep.Upstream.Latency.P50)
	rep.AddedP99 = round3(rep.Gate.Latency.P99 - rep.Upstream.Latency.P99)
	if pid > 0 && rep.Gate.OK > 0 && gateCPU > 0 {
		rep.GateCPU = round3(gateCPU * 1000 / float64(rep.Gate.OK))
		rep.GateCapacityPerCore = round1(1000 / rep.GateCPU)
		rep.GeneratorCPU = round3(selfCPU * 1000 / float64(rep.Gate.OK))
	}
	if rep.Upstream.OK == 0 || rep.Gate.OK == 0 {
		return rep, errors.New("bench gate: no request answered")
	}
	return rep, nil
}

func merge(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

// loadResult is one round against one target.
type loadResult struct {
	lat     []time.Duration
	failed  int
	errors  map[string]int
	first   string
	seconds float64
}

// load sends GET url closed loop from c clients for d (or until max
// requests, when max > 0), each request with the report and the next
// proof when report is set. Only answers 200 count; the others are
// failures by their status (and Vigil refusal code).
func load(ctx context.Context, hc *http.Client, url, report string, proofs []string, c int, d time.Duration, max int) (*loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	res := &loadResult{errors: map[string]int{}}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			errs := map[string]int{}
			first := ""
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if max > 0 && i >= max {
					break
				}
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, url, nil)
				if report != "" {
					req.Header.Set("Authorization", "Vigil "+report)
					req.Header.Set("Vigil-PoP", proofs[i])
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				var code string
				if err != nil {
					code = "transport"
					if first == "" {
						first = err.Error()
					}
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						code = strconv.Itoa(resp.StatusCode)
						if v := resp.Header.Get("Www-Authenticate"); v != "" && first == "" {
							first = v
						}
					}
				}
				el := time.Since(t0)
				if code != "" {
					errs[code]++
					continue
				}
				lat = append(lat, el)
			}
			mu.Lock()
			defer mu.Unlock()
			res.lat = append(res.lat, lat...)
			for k, v := range errs {
				res.errors[k] += v
				res.failed += v
			}
			if res.first == "" {
				res.first = first
			}
		}()
	}
	wg.Wait()
	res.seconds = time.Since(start).Seconds()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	return res, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// Linux everywhere).
const clockTicks = 100

// cpuTicks is the user and system CPU time of process pid so far, in
// clock ticks (0 when pid ≤ 0 or it cannot be read).
func cpuTicks(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in
	// parentheses: utime and stime are fields 14 and 15.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}
