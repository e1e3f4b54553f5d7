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

// MeasuredBoot holds the claims read from the TCG firmware event log.
// They say what the log records; they are attested only when PCRs, the
// replayed values, equal the values the TPM quotes.
type MeasuredBoot struct {
	Section
	// Format is "tcg1.2-sha1" or "crypto-agile" ("" when not parsed).
	Format string `json:"format"`
	// Events counts the log's events, the Spec ID event included.
	Events int `json:"events"`
	// PCRs are the replayed values: bank ("sha256") → PCR index ("0") →
	// lowercase hex, for the PCRs the log extends.
	PCRs map[string]map[string]string `json:"pcrs"`
	// SecureBootVariables are the EV_EFI_VARIABLE_DRIVER_CONFIG events of
	// PCR 7 (SecureBoot, PK, KEK, db, dbx, SbatLevel…).
	SecureBootVariables []LoggedVariable `json:"secure_boot_variables"`
	// BootApplications are the EV_EFI_BOOT_SERVICES_APPLICATION events.
	BootApplications []LoggedImage `json:"boot_applications"`
	// KernelCmdline is the last kernel command line grub measured.
	KernelCmdline string `json:"kernel_cmdline"`
	// KernelCmdlines are all of them, in order.
	KernelCmdlines []string `json:"kernel_cmdlines"`
	// GrubCommands are the first commands grub measured (at most 256);
	// GrubCommandCount counts them all.
	GrubCommands     []string `json:"grub_commands"`
	GrubCommandCount int      `json:"grub_command_count"`
	// ShimEvents are shim's measurements (PCR 14 MokList events, and its
	// variables in PCR 7).
	ShimEvents []LoggedShimEvent `json:"shim_events"`
	// Separators maps a PCR index to "ok" (0x00000000), "error"
	// (0x00000001 or 0xFFFFFFFF) or "invalid" (other data in PCRs 0–7, or
	// data that does not hash to the event's digests).
	Separators map[string]string `json:"separators"`
	// Actions are the EV_EFI_ACTION (and EV_ACTION) strings, in order.
	Actions []string `json:"actions"`
	// Problems are events that could not be decoded, or whose data does
	// not match their digests, and lists cut to the bounds.
	Problems []string `json:"problems"`
}

// LoggedVariable is a measured UEFI variable.
type LoggedVariable struct {
	Name string `json:"name"`
	GUID string `json:"guid"`
	// Digest is the event's SHA-256 digest ("" in a log without that
	// bank); Digests holds every bank's.
	Digest  string            `json:"digest"`
	Digests map[string]string `json:"digests"`
	// Verified is true when the event data hashes to its digests.
	Verified bool `json:"verified"`
	// Enabled is set for the SecureBoot variable only, when verified.
	Enabled *bool `json:"enabled,omitempty"`
}

// LoggedImage is a measured boot application: its Authenticode digests
// and, when the event's device path decodes, its file path.
type LoggedImage struct {
	Path       string            `json:"path"`
	DevicePath string            `json:"device_path"`
	Digests    map[string]string `json:"digests"`
}

// LoggedShimEvent is one of shim's measurements.
type LoggedShimEvent struct {
	PCR     uint32            `json:"pcr"`
	Type    string            `json:"type"`
	Name    string            `json:"name"`
	Digest  string            `json:"digest"`
	Digests map[string]string `json:"digests"`
}

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
