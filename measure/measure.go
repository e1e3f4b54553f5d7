// Package measure collects a Linux host's runtime report: the typed,
// deterministic set of security claims that the agent signs and the
// attestation service appraises. Collectors read only through a
// hostfs.Source, so a captured tree is measured exactly like a live host,
// and each one is an independent unit: an absent file makes its section
// "unavailable", a broken one makes it "error", and neither stops the
// others.
//
// The report is built to catch hiding: modules and processes are listed by
// several kernel views and compared, and taint bits are matched against
// the modules that could have set them.
package measure

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/integrity"
)

// Config is the agent's measurement configuration (the `measure:` section
// of the agent's config file).
type Config struct {
	// CriticalProcesses must be running, untampered and untraced.
	CriticalProcesses []CriticalProcess `yaml:"critical_processes" json:"critical_processes,omitempty"`
	// ProbePIDs bounds the PID probe of the process cross-view: PIDs from 1
	// to max(highest PID seen, last PID allocated) + ProbePIDs are probed
	// by stat. Only a process created before the PID counter wrapped can
	// sit above both; raise this (up to pid_max) to look further. 0 means
	// DefaultProbePIDs.
	ProbePIDs int `yaml:"probe_pids" json:"probe_pids,omitempty"`
}

// DefaultProbePIDs is the probe margin above the highest PID seen.
const DefaultProbePIDs = 1024

// Options configures a Measurer.
type Options struct {
	Config Config
	// Engine judges module files and boot binaries. Nil skips signature
	// checks: loaded modules then carry no signed/allowed claims.
	Engine *integrity.Engine
	Logger *slog.Logger
}

// Measurer measures a host. It keeps caches between runs (module verdicts
// in the engine, the IMA list's replay state), so an agent reuses one.
// It is not safe for concurrent Measure calls.
type Measurer struct {
	opts Options
	log  *slog.Logger

	ima imaCollector

	// mok is the module engine as the running kernel judges modules (its
	// keyrings, the MOK certificates of its .machine keyring): built once
	// while what it is built from stays the same (kernelView).
	mokMu  sync.Mutex
	mokKey [32]byte
	mok    *integrity.Engine

	// view is the running kernel's keys as this measurement read them
	// (kernelView), nil before.
	view *kernelView
}

// New returns a Measurer.
func New(o Options) *Measurer {
	m := &Measurer{opts: o, log: o.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m
}

// Measure reads the host through src and returns its report. It fails
// only if ctx is cancelled; every other problem is a section's status.
func (m *Measurer) Measure(ctx context.Context, src hostfs.Source) (*Report, error) {
	r := &Report{Version: Version}
	m.view = nil
	defer func() { m.view = nil }()
	if m.opts.Engine != nil {
		r.CodePolicy = m.opts.Engine.Policy().Digest()
	}
	// Order matters only where one section uses another's result: taint
	// is explained by modules, debug reads enforcement.
	steps := []struct {
		name string
		run  func()
	}{
		{"kernel", func() { r.Kernel = m.collectKernel(ctx, src) }},
		{"modules", func() { r.Modules = m.collectModules(ctx, src, r.Kernel.Release) }},
		{"taint", func() { r.Taint = m.collectTaint(ctx, src, &r.Modules) }},
		{"enforcement", func() { r.Enforcement = m.collectEnforcement(ctx, src, r.Kernel.Cmdline) }},
		{"debug", func() { r.Debug = m.collectDebug(ctx, src, r.Kernel.Cmdline, &r.Enforcement) }},
		{"secure_boot", func() { r.SecureBoot = m.collectSecureBoot(ctx, src) }},
		{"measured_boot", func() { r.MeasuredBoot = m.collectMeasuredBoot(ctx, src) }},
		{"ima", func() { r.IMA = m.ima.collect(ctx, src) }},
		{"processes", func() { r.Processes = m.collectProcesses(ctx, src) }},
		{"keyrings", func() { r.Keyrings = m.collectKeyrings(src) }},
		{"revocations", func() { r.Revocations = m.collectRevocations(ctx, src) }},
	}
	secs := r.Sections()
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := guard(s.run); err != nil {
			m.log.Error("collector failed", "section", s.name, "err", err)
			*secs[s.name] = Section{Status: StatusError, Error: err.Error()}
		}
	}
	if in, ok := src.(interface{ Inputs() map[string]string }); ok {
		r.Inputs = in.Inputs()
	}
	// A collector that left a list or a map nil (or a section a panic
	// cut short) still gives a report ParseReport accepts.
	r.FillEmpty()
	return r, nil
}

// guard runs a collector, turning a panic into an error: one broken
// collector must not take the agent down.
func guard(f func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v\n%s", p, debug.Stack())
		}
	}()
	f()
	return nil
}

// statusOf maps a read error to a section: absent → unavailable.
func statusOf(err error) Section {
	switch {
	case err == nil:
		return Section{Status: StatusOK}
	case errors.Is(err, fs.ErrNotExist):
		return Section{Status: StatusUnavailable, Error: err.Error()}
	default:
		return Section{Status: StatusError, Error: err.Error()}
	}
}
