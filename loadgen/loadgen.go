// Package loadgen is the attestation service's load generator, the engine
// of `vigil bench attest`: it enrolls simulated agents through the real
// protocol (credential activation included) and then drives challenge and
// attestation requests at a fixed rate, open loop, recording each
// request's latency, the errors by problem code and the levels the
// service gave.
//
// The agents are simulated TPMs (package enclave/simtpm: real key types,
// real TPM structures, keys in memory) or software keys. Every agent
// sends the same canonical runtime report (measured once), but every
// evidence carries fresh signatures bound to its own nonce, so the
// service does all the work a real fleet costs it. A simulated EK has no
// manufacturer certificate: the service leaves such agents pending
// unless their EK hash is allowlisted, and the generator approves them
// through the admin API when given the admin token.
//
// Run is bounded: it stops after Options.Duration or
// Options.MaxAttestations, whichever comes first, or when ctx ends.
package loadgen

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/simtpm"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/hostfs"
)

// Enclave kinds of the simulated agents.
const (
	// EnclaveTPMSim is a simulated TPM (enclave/simtpm) with an ECC P-256
	// EK: TPM evidence, hardware-rooted levels once approved.
	EnclaveTPMSim = "tpm-sim"
	// EnclaveSoftware is a software key (enclave/soft).
	EnclaveSoftware = "software"
)

// Arrival processes.
const (
	// ArrivalsUniform spaces the attestations evenly at the rate.
	ArrivalsUniform = "uniform"
	// ArrivalsPoisson draws exponential gaps of mean 1/rate: a fleet of
	// independent agents.
	ArrivalsPoisson = "poisson"
)

// Defaults of Options.
const (
	DefaultAgents            = 100
	DefaultRate              = 100
	DefaultDuration          = 10 * time.Second
	DefaultConcurrency       = 64
	DefaultEnrollConcurrency = 16
	DefaultTimeout           = 10 * time.Second
)

// Options configure Run.
type Options struct {
	// ServerURL is the service's base URL (http or https).
	ServerURL string
	// CAFile and RootCAs are the roots trusted for the service's TLS
	// certificate (agent.ClientOptions).
	CAFile  string
	RootCAs *x509.CertPool
	// Agents is the number of simulated agents (DefaultAgents).
	Agents int
	// Rate is the attestations per second over all agents
	// (DefaultRate), started open loop: on schedule whatever the
	// answers' latency, up to Concurrency in flight.
	Rate float64
	// Arrivals is ArrivalsUniform (the default) or ArrivalsPoisson.
	Arrivals string
	// Duration is how long attestations are started (DefaultDuration).
	Duration time.Duration
	// MaxAttestations bounds the attestations started; 0 means
	// ceil(Rate × Duration).
	MaxAttestations int
	// Concurrency caps the attestations in flight (DefaultConcurrency);
	// an arrival that finds them all busy waits, and its wait counts in
	// its response time.
	Concurrency int
	// Enclave is EnclaveTPMSim (the default) or EnclaveSoftware.
	Enclave string
	// Report is the canonical runtime report every agent sends; nil means
	// DefaultReport().
	Report []byte
	// AdminToken approves pending agents through the admin API; without
	// it the service must approve them itself (EK allowlist, software
	// admission "auto").
	AdminToken string
	// EnrollConcurrency is the enrollments in flight
	// (DefaultEnrollConcurrency).
	EnrollConcurrency int
	// IDPrefix starts every agent ID; empty means "sim-" and a random
	// run ID, so runs against one database do not collide.
	IDPrefix string
	// Timeout bounds each request (DefaultTimeout).
	Timeout time.Duration
	// Progress, when set, receives a line of progress every few seconds.
	Progress io.Writer
	// Seed seeds the Poisson arrivals and the agent choice (0: random).
	Seed uint64
	// OnPhase, when set, is called as each phase starts ("enroll",
	// "attest") and when Run is done ("done"): to profile one phase.
	OnPhase func(phase string)
}

// Report is the outcome of Run.
type Report struct {
	Server      string  `json:"server"`
	Enclave     string  `json:"enclave"`
	Agents      int     `json:"agents"`
	ReportBytes int     `json:"report_bytes"`
	Arrivals    string  `json:"arrivals"`
	TargetRate  float64 `json:"target_rate"`
	Concurrency int     `json:"concurrency"`
	// Enrollment is phase 1.
	Enrollment Enrollment `json:"enrollment"`
	// Duration is phase 2's wall time, from the first scheduled start to
	// the last answer; Started and Ended are those instants (to match
	// the service's own CPU and memory figures to the phase).
	DurationSeconds float64   `json:"duration_seconds"`
	Started         time.Time `json:"started"`
	Ended           time.Time `json:"ended"`
	// Attempts were started; OK got a session report, Failed did not.
	// Missed were scheduled but not started when Duration ran out (the
	// service was too slow for the rate and Concurrency).
	Attempts int `json:"attempts"`
	Missed   int `json:"missed"`
	OK       int `json:"ok"`
	Failed   int `json:"failed"`
	// AchievedRate is OK per second of phase 2.
	AchievedRate float64 `json:"achieved_rate"`
	// Latency is challenge plus attestation as the agent sees it
	// (evidence building included), from the first request's start;
	// Challenge and Attest are each request alone; Response is from the
	// scheduled start (waits for a free slot included: the open-loop
	// figure); Lag is how late the starts were.
	Latency   Latency `json:"latency_ms"`
	Challenge Latency `json:"challenge_ms"`
	Attest    Latency `json:"attest_ms"`
	Response  Latency `json:"response_ms"`
	Lag       Latency `json:"lag_ms"`
	// Errors counts failures by problem code ("http-503" without one,
	// "transport" for connection errors, "timeout", "client").
	Errors map[string]int `json:"errors"`
	// Levels counts the levels of the successful attestations ("2": n),
	// Statuses their EAR statuses.
	Levels   map[string]int `json:"levels"`
	Statuses map[string]int `json:"statuses"`
	// FirstErrors are a few error messages, for diagnosis.
	FirstErrors []string `json:"first_errors,omitempty"`
}

// Enrollment is the outcome of phase 1.
type Enrollment struct {
	Agents          int            `json:"agents"`
	Enrolled        int            `json:"enrolled"`
	Approved        int            `json:"approved_by_admin"`
	DurationSeconds float64        `json:"duration_seconds"`
	Rate            float64        `json:"rate"`
	Latency         Latency        `json:"latency_ms"`
	Errors          map[string]int `json:"errors"`
}

// Latency summarizes durations in milliseconds.
type Latency struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// summarize sorts d and summarizes it (nearest-rank percentiles).
func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return math.Round(float64(x)/1e3) / 1e3 }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Latency{N: len(d), Mean: ms(sum / time.Duration(len(d))), P50: ms(rank(0.50)), P90: ms(rank(0.90)), P99: ms(rank(0.99)), Max: ms(d[len(d)-1])}
}

// ErrOptions is an invalid Options value.
var ErrOptions = errors.New("invalid load generator options")

// maxAgents bounds Options.Agents (each holds a few keys in memory).
const maxAgents = 10_000_000

func (o *Options) defaults() error {
	if o.ServerURL == "" {
		return fmt.Errorf("%w: no server URL", ErrOptions)
	}
	if o.Agents == 0 {
		o.Agents = DefaultAgents
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.EnrollConcurrency == 0 {
		o.EnrollConcurrency = DefaultEnrollConcurrency
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Enclave == "" {
		o.Enclave = EnclaveTPMSim
	}
	if o.Arrivals == "" {
		o.Arrivals = ArrivalsUniform
	}
	switch {
	case o.Agents < 1 || o.Agents > maxAgents:
		return fmt.Errorf("%w: %d agents (1 to %d)", ErrOptions, o.Agents, maxAgents)
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("%w: rate %v", ErrOptions, o.Rate)
	case o.Duration < 0:
		return fmt.Errorf("%w: duration %v", ErrOptions, o.Duration)
	case o.Concurrency < 1 || o.EnrollConcurrency < 1:
		return fmt.Errorf("%w: concurrency %d, enroll concurrency %d", ErrOptions, o.Concurrency, o.EnrollConcurrency)
	case o.Enclave != EnclaveTPMSim && o.Enclave != EnclaveSoftware:
		return fmt.Errorf("%w: enclave %q (want %s or %s)", ErrOptions, o.Enclave, EnclaveTPMSim, EnclaveSoftware)
	case o.Arrivals != ArrivalsUniform && o.Arrivals != ArrivalsPoisson:
		return fmt.Errorf("%w: arrivals %q (want %s or %s)", ErrOptions, o.Arrivals, ArrivalsUniform, ArrivalsPoisson)
	case o.MaxAttestations < 0:
		return fmt.Errorf("%w: max attestations %d", ErrOptions, o.MaxAttestations)
	}
	if o.MaxAttestations == 0 {
		o.MaxAttestations = int(math.Ceil(o.Rate * o.Duration.Seconds()))
	}
	if o.IDPrefix == "" {
		o.IDPrefix = fmt.Sprintf("sim-%08x-", rand.Uint32())
	}
	if err := agent.ValidateID(o.IDPrefix + strconv.Itoa(o.Agents)); err != nil {
		return fmt.Errorf("%w: ID prefix: %v", ErrOptions, err)
	}
	return nil
}

// simAgent is one simulated agent.
type simAgent struct {
	id string
	e  enclave.Enclave
}

// Run enrolls the agents, then drives the attestations, and reports. It
// fails only when it cannot run at all (bad options, no agent enrolled);
// failed requests are counted in the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.Report == nil {
		r, err := DefaultReport(ctx)
		if err != nil {
			return nil, err
		}
		o.Report = r
	}
	// One client per worker: each worker's requests are sequential, so
	// each client keeps one connection alive (HTTP/1.1) and no worker
	// waits for another's connection.
	clients := make([]*agent.Client, max(o.Concurrency, o.EnrollConcurrency))
	for i := range clients {
		c, err := agent.NewClient(o.ServerURL, agent.ClientOptions{CAFile: o.CAFile, RootCAs: o.RootCAs, Timeout: o.Timeout, AdminToken: o.AdminToken})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients[i] = c
	}
	rep := &Report{
		Server: o.ServerURL, Enclave: o.Enclave, Agents: o.Agents, ReportBytes: len(o.Report),
		Arrivals: o.Arrivals, TargetRate: o.Rate, Concurrency: o.Concurrency,
		Errors: map[string]int{}, Levels: map[string]int{}, Statuses: map[string]int{},
	}
	phase := func(p string) {
		if o.OnPhase != nil {
			o.OnPhase(p)
		}
	}
	defer phase("done")
	phase("enroll")
	agents, err := enroll(ctx, o, clients[:o.EnrollConcurrency], rep)
	if err != nil {
		return rep, err
	}
	phase("attest")
	attest(ctx, o, clients[:o.Concurrency], agents, rep)
	return rep, nil
}

// progress writes a line every interval until stop is closed.
func progress(w io.Writer, every time.Duration, stop <-chan struct{}, line func() string) {
	if w == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			fmt.Fprintln(w, line())
		}
	}
}

// recorder collects outcomes from the workers.
type recorder struct {
	mu        sync.Mutex
	errors    map[string]int
	first     []string
	durations map[string][]time.Duration
}

func newRecorder() *recorder {
	return &recorder{errors: map[string]int{}, durations: map[string][]time.Duration{}}
}

func (r *recorder) fail(err error) {
	code := errorCode(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[code]++
	if len(r.first) < 5 {
		r.first = append(r.first, err.Error())
	}
}

func (r *recorder) add(name string, d time.Duration) {
	r.mu.Lock()
	r.durations[name] = append(r.durations[name], d)
	r.mu.Unlock()
}

// errorCode classifies err: the problem code, or what failed.
func errorCode(err error) string {
	var pe *agent.ProblemError
	var ne net.Error
	switch {
	case errors.As(err, &pe) && pe.Code != "":
		return pe.Code
	case errors.As(err, &pe):
		return "http-" + strconv.Itoa(pe.Status)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "transport"
	case errors.Is(err, agent.ErrResponse):
		return "bad-response"
	}
	return "client"
}

func newEnclave(kind string) (enclave.Enclave, error) {
	if kind == EnclaveSoftware {
		return soft.New()
	}
	return simtpm.New(simtpm.Options{})
}

// enroll is phase 1: every agent enrolls (activating its credential) and
// is approved through the admin API when pending.
func enroll(ctx context.Context, o Options, clients []*agent.Client, rep *Report) ([]simAgent, error) {
	rec := newRecorder()
	agents := make([]simAgent, o.Agents)
	ok := make([]bool, o.Agents)
	var next, done, approved atomic.Int64
	measure := func(context.Context) ([]byte, hostfs.Source, error) { return o.Report, nil, nil }
	start := time.Now()
	stop := make(chan struct{})
	go progress(o.Progress, 5*time.Second, stop, func() string {
		return fmt.Sprintf("enrolled %d of %d agents (%.0f/s)", done.Load(), o.Agents, float64(done.Load())/time.Since(start).Seconds())
	})
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func(c *agent.Client) {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.Agents {
					return
				}
				id := o.IDPrefix + strconv.Itoa(i)
				e, err := newEnclave(o.Enclave)
				if err != nil {
					rec.fail(err)
					continue
				}
				t0 := time.Now()
				a, err := agent.New(ctx, agent.Options{Client: c, Enclave: e, Measure: measure, AgentID: id})
				if err != nil {
					rec.fail(err)
					continue
				}
				st, err := a.Enroll(ctx)
				if err == nil && st == agent.StatusPending {
					if o.AdminToken == "" {
						err = fmt.Errorf("agent %s is pending and no admin token was given to approve it", id)
					} else if _, err = c.Approve(ctx, id, "vigil bench attest"); err == nil {
						approved.Add(1)
					}
				}
				if err != nil {
					rec.fail(err)
					continue
				}
				rec.add("enroll", time.Since(t0))
				agents[i], ok[i] = simAgent{id: id, e: e}, true
				done.Add(1)
			}
		}(clients[w])
	}
	wg.Wait()
	close(stop)
	el := time.Since(start)
	var out []simAgent
	for i, a := range agents {
		if ok[i] {
			out = append(out, a)
		}
	}
	rep.Enrollment = Enrollment{
		Agents: o.Agents, Enrolled: len(out), Approved: int(approved.Load()), DurationSeconds: round3(el.Seconds()),
		Rate: round1(float64(len(out)) / el.Seconds()), Latency: summarize(rec.durations["enroll"]), Errors: rec.errors,
	}
	rep.FirstErrors = append(rep.FirstErrors, rec.first...)
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if len(out) == 0 {
		msg := "no agent enrolled"
		if len(rec.first) > 0 {
			msg += ": " + rec.first[0]
		}
		return nil, errors.New(msg)
	}
	return out, nil
}

// schedule hands out the arrivals of phase 2 in order: the worker that
// is free takes the next one and starts it at its time, so no dispatcher
// stands between the schedule and the requests.
type schedule struct {
	mu      sync.Mutex
	n, max  int
	at, end time.Time
	gap     time.Duration
	poisson bool
	rng     *rand.Rand
	next    int // agent index, round robin
	agents  int
}

// take returns the next arrival (its time and agent), or false when the
// schedule is done (the count reached, or past the end).
func (s *schedule) take() (time.Time, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.max || s.at.After(s.end) {
		return time.Time{}, 0, false
	}
	at, a := s.at, s.next
	s.n++
	// Round robin from a random start: each agent attests as rarely as
	// the rate allows, as a fleet on an interval does.
	s.next = (s.next + 1) % s.agents
	if s.poisson {
		s.at = s.at.Add(time.Duration(s.rng.ExpFloat64() * float64(s.gap)))
	} else {
		s.at = s.at.Add(s.gap)
	}
	return at, a, true
}

// workerStats are one worker's outcomes, merged when the phase ends (no
// lock shared by the workers while they run).
type workerStats struct {
	started, missed  int
	durations        map[string][]time.Duration
	errors           map[string]int
	first            []string
	levels, statuses map[string]int
}

func newWorkerStats() *workerStats {
	return &workerStats{durations: map[string][]time.Duration{}, errors: map[string]int{},
		levels: map[string]int{}, statuses: map[string]int{}}
}

func (w *workerStats) add(name string, d time.Duration) {
	w.durations[name] = append(w.durations[name], d)
}

func (w *workerStats) fail(err error) {
	w.errors[errorCode(err)]++
	if len(w.first) < 5 {
		w.first = append(w.first, err.Error())
	}
}

// attest is phase 2: attestations started on schedule at o.Rate.
func attest(ctx context.Context, o Options, clients []*agent.Client, agents []simAgent, rep *Report) {
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	start := time.Now()
	sch := &schedule{max: o.MaxAttestations, at: start, end: start.Add(o.Duration), poisson: o.Arrivals == ArrivalsPoisson,
		rng: rng, next: rng.IntN(len(agents)), agents: len(agents)}
	if o.Rate > 0 {
		sch.gap = time.Duration(float64(time.Second) / o.Rate)
	} else {
		sch.max = 0
	}
	var okN, failN atomic.Int64
	stop := make(chan struct{})
	go progress(o.Progress, 5*time.Second, stop, func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("attested %d ok, %d failed, %.0f/s", okN.Load(), failN.Load(), float64(okN.Load())/el)
	})

	stats := make([]*workerStats, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		st := newWorkerStats()
		stats[i] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for {
				at, ai, ok := sch.take()
				if !ok {
					return
				}
				if d := time.Until(at); d > 0 {
					timer.Reset(d)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				// Duration bounds the wall time too: arrivals that could
				// not be started by then are missed, not started late.
				if t0.After(sch.end) {
					st.missed++
					continue
				}
				st.started++
				st.add("lag", t0.Sub(at))
				resp, err := attestOnce(ctx, o, c, &agents[ai], st)
				done := time.Now()
				if err != nil {
					failN.Add(1)
					st.fail(err)
					continue
				}
				okN.Add(1)
				st.add("latency", done.Sub(t0))
				st.add("response", done.Sub(at))
				st.levels[strconv.Itoa(resp.Level)]++
				st.statuses[resp.Status]++
			}
		}()
	}
	wg.Wait()
	close(stop)
	el := time.Since(start)

	all := newWorkerStats()
	for _, st := range stats {
		all.started += st.started
		all.missed += st.missed
		for k, v := range st.durations {
			all.durations[k] = append(all.durations[k], v...)
		}
		for k, v := range st.errors {
			all.errors[k] += v
		}
		for k, v := range st.levels {
			all.levels[k] += v
		}
		for k, v := range st.statuses {
			all.statuses[k] += v
		}
		if len(all.first) < 5 {
			all.first = append(all.first, st.first[:min(len(st.first), 5-len(all.first))]...)
		}
	}
	rep.DurationSeconds = round3(el.Seconds())
	rep.Started, rep.Ended = start.UTC(), start.Add(el).UTC()
	rep.Attempts, rep.OK, rep.Failed, rep.Missed = all.started, int(okN.Load()), int(failN.Load()), all.missed
	rep.AchievedRate = round1(float64(rep.OK) / el.Seconds())
	rep.Latency = summarize(all.durations["latency"])
	rep.Challenge = summarize(all.durations["challenge"])
	rep.Attest = summarize(all.durations["attest"])
	rep.Response = summarize(all.durations["response"])
	rep.Lag = summarize(all.durations["lag"])
	rep.Errors, rep.Levels, rep.Statuses = all.errors, all.levels, all.statuses
	rep.FirstErrors = append(rep.FirstErrors, all.first...)
}

// attestOnce is one agent round: challenge, evidence, attestation.
func attestOnce(ctx context.Context, o Options, c *agent.Client, a *simAgent, rec *workerStats) (*api.AttestResponse, error) {
	t0 := time.Now()
	ch, err := c.Challenge(ctx, a.id)
	if err != nil {
		return nil, err
	}
	rec.add("challenge", time.Since(t0))
	nonce, err := hex.DecodeString(ch.Nonce)
	if err != nil {
		return nil, fmt.Errorf("challenge: %w: nonce is not hex", agent.ErrResponse)
	}
	ev, err := agent.BuildEvidence(ctx, a.e, nil, agent.EvidenceOptions{Nonce: nonce, Report: o.Report, NoLogs: true, IMAOffset: ch.IMAOffset})
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	t1 := time.Now()
	resp, err := c.Attest(ctx, a.id, ev)
	if err != nil {
		return nil, err
	}
	rec.add("attest", time.Since(t1))
	return resp, nil
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
