package measure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/hostfs"
)

// EventLogPath is where Linux exposes the TCG firmware event log.
const EventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// Bounds of the measured_boot section: a hostile log must not make the
// report huge. What is cut is said in Problems.
const (
	// mbMaxListed bounds every list of the section.
	mbMaxListed = 256
	// mbMaxString bounds every string of the section (a kernel command
	// line is at most a few kilobytes).
	mbMaxString = 8 << 10
	// mbMaxProblems bounds the problems listed.
	mbMaxProblems = 64
)

// newMeasuredBoot returns an empty section: lists are [] and maps {} in
// JSON whatever the status.
func newMeasuredBoot(s Section) MeasuredBoot {
	return MeasuredBoot{
		Section: s, PCRs: map[string]map[string]string{},
		SecureBootVariables: []LoggedVariable{}, BootApplications: []LoggedImage{},
		KernelCmdlines: []string{}, GrubCommands: []string{}, ShimEvents: []LoggedShimEvent{},
		Separators: map[string]string{}, Actions: []string{}, Problems: []string{},
	}
}

// readEventLog reads the log, at most eventlog.MaxLogSize bytes, and
// records its digest.
func readEventLog(src hostfs.Source) ([]byte, error) {
	f, err := src.Open(EventLogPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, eventlog.MaxLogSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", EventLogPath, err)
	}
	if len(b) > eventlog.MaxLogSize {
		return nil, fmt.Errorf("read %s: %w: more than %d bytes", EventLogPath, eventlog.ErrTooLarge, eventlog.MaxLogSize)
	}
	sum := sha256.Sum256(b)
	src.Record(EventLogPath, hex.EncodeToString(sum[:]))
	return b, nil
}

func (m *Measurer) collectMeasuredBoot(ctx context.Context, src hostfs.Source) MeasuredBoot {
	b, err := readEventLog(src)
	if err != nil {
		return newMeasuredBoot(statusOf(err))
	}
	l, err := eventlog.Parse(b)
	if err != nil {
		return newMeasuredBoot(Section{Status: StatusError, Error: fmt.Sprintf("%s: %v", EventLogPath, err)})
	}
	mb := newMeasuredBoot(Section{Status: StatusOK})
	mb.Format = string(l.Format)
	mb.Events = len(l.Events)
	mb.PCRs = l.Replay().Hex()
	s := l.Summarize()

	for _, v := range s.Problems {
		mb.Problems = append(mb.Problems, v.String())
	}
	cut := func(what string, n int) int {
		if n > mbMaxListed {
			mb.Problems = append(mb.Problems, fmt.Sprintf("%s: %d entries, the first %d listed", what, n, mbMaxListed))
			return mbMaxListed
		}
		return n
	}
	for _, v := range s.SecureBootVariables[:cut("secure_boot_variables", len(s.SecureBootVariables))] {
		mb.SecureBootVariables = append(mb.SecureBootVariables, LoggedVariable{
			Name: mbBound(v.Name), GUID: v.GUID, Digest: mbHex(v.Digests.Get(eventlog.AlgSHA256)),
			Digests: v.Digests.Hex(), Verified: v.Verified, Enabled: v.Enabled,
		})
	}
	for _, a := range s.BootApplications[:cut("boot_applications", len(s.BootApplications))] {
		mb.BootApplications = append(mb.BootApplications, LoggedImage{Path: mbBound(a.Path), DevicePath: mbBound(a.DevicePath), Digests: a.Digests.Hex()})
	}
	if n := len(s.KernelCmdlines); n > 0 {
		mb.KernelCmdline = mbBound(s.KernelCmdlines[n-1])
	}
	for _, c := range s.KernelCmdlines[:cut("kernel_cmdlines", len(s.KernelCmdlines))] {
		mb.KernelCmdlines = append(mb.KernelCmdlines, mbBound(c))
	}
	mb.GrubCommandCount = len(s.GrubCommands)
	for _, c := range s.GrubCommands[:min(len(s.GrubCommands), mbMaxListed)] {
		mb.GrubCommands = append(mb.GrubCommands, mbBound(c))
	}
	for _, e := range s.ShimEvents[:cut("shim_events", len(s.ShimEvents))] {
		mb.ShimEvents = append(mb.ShimEvents, LoggedShimEvent{
			PCR: e.PCR, Type: e.Type.String(), Name: mbBound(e.Name),
			Digest: mbHex(e.Digests.Get(eventlog.AlgSHA256)), Digests: e.Digests.Hex(),
		})
	}
	for pcr, st := range s.SeparatorStates() {
		mb.Separators[strconv.FormatUint(uint64(pcr), 10)] = string(st)
	}
	for _, a := range s.Actions[:cut("actions", len(s.Actions))] {
		mb.Actions = append(mb.Actions, mbBound(a.Text))
	}
	if n := len(mb.Problems); n > mbMaxProblems {
		mb.Problems = append(mb.Problems[:mbMaxProblems-1], fmt.Sprintf("and %d more problems", n-mbMaxProblems+1))
	}
	for i, p := range mb.Problems {
		mb.Problems[i] = mbBound(p)
	}
	if len(s.Problems) > 0 {
		m.log.Warn("event log problems", "path", EventLogPath, "count", len(s.Problems), "first", s.Problems[0].String())
	}
	return mb
}

func mbHex(b []byte) string { return hex.EncodeToString(b) }

// mbBound cuts a string to mbMaxString bytes (on a rune boundary),
// marking the cut.
func mbBound(s string) string {
	if len(s) <= mbMaxString {
		return s
	}
	i := mbMaxString
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
