// Package eventlog parses the TCG firmware event log that Linux exposes as
// /sys/kernel/security/tpm0/binary_bios_measurements, replays it into PCR
// values and says what it records about the boot (Secure Boot variables,
// boot applications, the kernel command line, grub and shim events).
//
// Two formats exist (TCG PC Client Platform Firmware Profile, section 10):
//
//   - the TPM 1.2 log: TCG_PCR_EVENT entries only, one SHA-1 digest each:
//     PCRIndex u32, EventType u32, Digest [20]byte, EventSize u32, Event;
//   - the crypto-agile log: a first TCG_PCR_EVENT of type EV_NO_ACTION whose
//     data is the TCG_EfiSpecIDEventStruct ("Spec ID Event03\0" and the list
//     of algorithms with their digest sizes), then TCG_PCR_EVENT2 entries:
//     PCRIndex u32, EventType u32, TPML_DIGEST_VALUES (count u32, then
//     count × {AlgorithmId u16, digest}), EventSize u32, Event.
//
// All integers are little endian. Parse is bounded (MaxLogSize, MaxEvents,
// MaxEventSize), never panics, and its errors wrap exactly one of the Err*
// sentinels, which Code turns into a stable reason code.
//
// Nothing in a log is trustworthy until its replay equals PCR values quoted
// by the TPM: the event data is not covered by the PCRs, only the digests
// are. Summarize therefore reports, for events whose digest is defined as
// the hash of their data, whether the data matches.
package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Bounds of Parse. A real firmware log has a few hundred events and is
// well under a megabyte; the largest single events are the Secure Boot
// databases (tens of kilobytes).
const (
	// MaxLogSize is the largest log Parse accepts.
	MaxLogSize = 64 << 20
	// MaxEvents is the largest number of events (the Spec ID event
	// included).
	MaxEvents = 1 << 16
	// MaxEventSize is the largest EventSize of one event.
	MaxEventSize = 16 << 20
	// MaxAlgorithms is the largest number of algorithms a Spec ID event
	// may list (and so of digests per event).
	MaxAlgorithms = 16
	// MaxDigestSize is the largest digest size a Spec ID event may give.
	MaxDigestSize = 64
)

// The error categories. Every error Parse returns wraps exactly one.
var (
	// ErrEmpty: the input holds no event (empty, or zero padding only).
	ErrEmpty = errors.New("event log is empty")
	// ErrTruncated: the input ends inside an event.
	ErrTruncated = errors.New("event log truncated")
	// ErrMalformed: a field holds a value the format does not allow.
	ErrMalformed = errors.New("event log malformed")
	// ErrTooLarge: a bound of this package is exceeded.
	ErrTooLarge = errors.New("event log exceeds a limit")
	// ErrSpecID: the first event claims to be a Spec ID event but is not a
	// valid one (or is of a version this package does not know).
	ErrSpecID = errors.New("invalid Spec ID event")
)

// Code returns the stable reason code of an error from Parse: "empty",
// "truncated", "malformed", "too-large" or "bad-spec-id", and "" for nil
// or an error of no category.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrEmpty):
		return "empty"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrTooLarge):
		return "too-large"
	case errors.Is(err, ErrSpecID):
		return "bad-spec-id"
	}
	return ""
}

// Format is the log's format; the values are stable claim values.
type Format string

const (
	// FormatTCG12 is the TPM 1.2 SHA-1 log.
	FormatTCG12 Format = "tcg1.2-sha1"
	// FormatCryptoAgile is the TPM 2.0 crypto-agile log.
	FormatCryptoAgile Format = "crypto-agile"
)

// Digest is one event digest.
type Digest struct {
	Alg   Alg
	Value []byte
}

// Event is one log entry. Data and the digest values alias the input
// given to Parse.
type Event struct {
	// Num is the event's position in the log, from 0 (the Spec ID event of
	// a crypto-agile log is event 0, as tpm2_eventlog numbers them).
	Num int
	// Offset is the event's byte offset in the log.
	Offset int
	PCR    uint32
	Type   EventType
	// Digests in the order of the log: one SHA-1 for a TPM 1.2 event (and
	// for the Spec ID event), one per bank for a crypto-agile event.
	Digests Digests
	Data    []byte
}

// Digest returns the event's digest for alg, or nil.
func (e *Event) Digest(alg Alg) []byte { return e.Digests.Get(alg) }

// AlgSize is one entry of the Spec ID event's algorithm list.
type AlgSize struct {
	Alg  Alg
	Size uint16
}

// SpecID is the TCG_EfiSpecIDEventStruct of a crypto-agile log.
type SpecID struct {
	PlatformClass uint32
	VersionMinor  uint8
	VersionMajor  uint8
	Errata        uint8
	// UintnSize is 1 for UINT32, 2 for UINT64 firmware.
	UintnSize  uint8
	Algorithms []AlgSize
	VendorInfo []byte
}

// Log is a parsed event log.
type Log struct {
	Format Format
	// SpecID is nil for a TPM 1.2 log.
	SpecID *SpecID
	// Events holds every event, the Spec ID event included.
	Events []Event
	// Padding is the number of zero bytes after the last event (logs
	// copied from a fixed-size ACPI log area end with them).
	Padding int
}

// Banks returns the digest algorithms of the log's events: the Spec ID
// event's list, or SHA-1 for a TPM 1.2 log.
func (l *Log) Banks() []Alg {
	if l.SpecID == nil {
		return []Alg{AlgSHA1}
	}
	out := make([]Alg, len(l.SpecID.Algorithms))
	for i, a := range l.SpecID.Algorithms {
		out[i] = a.Alg
	}
	return out
}

const (
	tcgPCREventHeader = 32 // PCRIndex, EventType, SHA-1 digest, EventSize
	specIDHeader      = 24 // signature, platform class, versions, uintn, count
)

var (
	specIDSignature03 = []byte("Spec ID Event03\x00")
	specIDPrefix      = []byte("Spec ID Event")
)

// parser walks the input; off is the offset of the next unread byte.
type parser struct {
	b     []byte
	off   int
	start int // offset of the event being read
	num   int // number of the event being read
}

func (p *parser) errf(kind error, format string, args ...any) error {
	return fmt.Errorf("eventlog: event %d at offset %d: %w: %s", p.num, p.start, kind, fmt.Sprintf(format, args...))
}

func (p *parser) need(n int, what string) error {
	if n < 0 || len(p.b)-p.off < n {
		return p.errf(ErrTruncated, "%s needs %d bytes at offset %d, %d left", what, n, p.off, len(p.b)-p.off)
	}
	return nil
}

func (p *parser) u32(what string) (uint32, error) {
	if err := p.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(p.b[p.off:])
	p.off += 4
	return v, nil
}

func (p *parser) bytes(n int, what string) ([]byte, error) {
	if err := p.need(n, what); err != nil {
		return nil, err
	}
	v := p.b[p.off : p.off+n : p.off+n]
	p.off += n
	return v, nil
}

// data reads EventSize and the event data.
func (p *parser) data() ([]byte, error) {
	size, err := p.u32("EventSize")
	if err != nil {
		return nil, err
	}
	if size > MaxEventSize {
		return nil, p.errf(ErrTooLarge, "EventSize %d exceeds %d", size, MaxEventSize)
	}
	return p.bytes(int(size), "event data")
}

// Parse parses a TPM 1.2 or crypto-agile event log.
func Parse(b []byte) (*Log, error) {
	if len(b) > MaxLogSize {
		return nil, fmt.Errorf("eventlog: %w: log is %d bytes, limit %d", ErrTooLarge, len(b), MaxLogSize)
	}
	// Everything after the last non-zero byte is padding when an event
	// would start there; finding it once keeps the check O(1) per event.
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	if end == 0 {
		return nil, fmt.Errorf("eventlog: %w (%d bytes, all zero)", ErrEmpty, len(b))
	}
	p := &parser{b: b}
	first, err := p.tcgPCREvent()
	if err != nil {
		return nil, err
	}
	l := &Log{Format: FormatTCG12}
	l.Events = make([]Event, 0, 64) // grows with the events actually read
	l.Events = append(l.Events, first)
	if first.Type == EvNoAction && bytes.HasPrefix(first.Data, specIDPrefix) {
		switch {
		case bytes.HasPrefix(first.Data, specIDSignature03):
			sid, err := p.specID(&first)
			if err != nil {
				return nil, err
			}
			l.SpecID = sid
			l.Format = FormatCryptoAgile
		case len(first.Data) >= 16 && (string(first.Data[:16]) == "Spec ID Event00\x00" || string(first.Data[:16]) == "Spec ID Event02\x00"):
			// TPM 1.2 era Spec ID events (TCG_PCClientSpecIDEventStruct):
			// the log stays SHA-1.
		default:
			return nil, p.errf(ErrSpecID, "unknown signature %q", first.Data[:min(len(first.Data), 16)])
		}
	}
	var locality bool // a StartupLocality event was seen
	var pcr0 bool     // PCR 0 was extended
	for p.off < len(b) {
		if p.off >= end {
			l.Padding = len(b) - p.off
			break
		}
		p.num++
		p.start = p.off
		if p.num >= MaxEvents {
			return nil, p.errf(ErrTooLarge, "more than %d events", MaxEvents)
		}
		var e Event
		if l.SpecID != nil {
			e, err = p.tcgPCREvent2(l.SpecID)
		} else {
			e, err = p.tcgPCREvent()
		}
		if err != nil {
			return nil, err
		}
		if e.PCR == 0 {
			if isStartupLocality(&e) {
				if locality || pcr0 {
					return nil, p.errf(ErrMalformed, "StartupLocality event after the first measurement of PCR 0 or repeated")
				}
				locality = true
			} else if e.Type != EvNoAction {
				pcr0 = true
			}
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

// tcgPCREvent reads a TCG_PCR_EVENT (SHA-1 format).
func (p *parser) tcgPCREvent() (Event, error) {
	e := Event{Num: p.num, Offset: p.off}
	if err := p.need(tcgPCREventHeader, "TCG_PCR_EVENT header"); err != nil {
		return e, err
	}
	e.PCR, _ = p.u32("PCRIndex")
	t, _ := p.u32("EventType")
	e.Type = EventType(t)
	d, _ := p.bytes(20, "SHA-1 digest")
	e.Digests = Digests{{Alg: AlgSHA1, Value: d}}
	var err error
	e.Data, err = p.data()
	return e, err
}

// tcgPCREvent2 reads a TCG_PCR_EVENT2 (crypto-agile format). Every event
// must carry one digest for each algorithm of the Spec ID event: that is
// what the Platform Firmware Profile requires, and a digest count that is
// off would otherwise shift every later field.
func (p *parser) tcgPCREvent2(sid *SpecID) (Event, error) {
	e := Event{Num: p.num, Offset: p.off}
	if err := p.need(12, "TCG_PCR_EVENT2 header"); err != nil {
		return e, err
	}
	e.PCR, _ = p.u32("PCRIndex")
	t, _ := p.u32("EventType")
	e.Type = EventType(t)
	n, _ := p.u32("digest count")
	if int64(n) != int64(len(sid.Algorithms)) {
		return e, p.errf(ErrMalformed, "digest count %d, the Spec ID event lists %d algorithms", n, len(sid.Algorithms))
	}
	e.Digests = make(Digests, n)
	var seen uint64 // bit i: sid.Algorithms[i] seen
	for i := range e.Digests {
		if err := p.need(2, "digest AlgorithmId"); err != nil {
			return e, err
		}
		alg := Alg(binary.LittleEndian.Uint16(p.b[p.off:]))
		p.off += 2
		j := -1
		for k, a := range sid.Algorithms {
			if a.Alg == alg {
				j = k
				break
			}
		}
		if j < 0 {
			return e, p.errf(ErrMalformed, "digest %d: algorithm %s is not in the Spec ID event", i, alg)
		}
		if seen&(1<<j) != 0 {
			return e, p.errf(ErrMalformed, "digest %d: algorithm %s repeated", i, alg)
		}
		seen |= 1 << j
		v, err := p.bytes(int(sid.Algorithms[j].Size), alg.String()+" digest")
		if err != nil {
			return e, err
		}
		e.Digests[i] = Digest{Alg: alg, Value: v}
	}
	var err error
	e.Data, err = p.data()
	return e, err
}

// specID decodes the TCG_EfiSpecIDEventStruct of the first event.
func (p *parser) specID(e *Event) (*SpecID, error) {
	b := e.Data
	if e.PCR != 0 {
		return nil, p.errf(ErrSpecID, "Spec ID event in PCR %d, not 0", e.PCR)
	}
	if !allZero(e.Digests[0].Value) {
		return nil, p.errf(ErrSpecID, "Spec ID event digest is not zero")
	}
	if len(b) < specIDHeader+1 {
		return nil, p.errf(ErrSpecID, "TCG_EfiSpecIDEventStruct is %d bytes, at least %d needed", len(b), specIDHeader+1)
	}
	s := &SpecID{
		PlatformClass: binary.LittleEndian.Uint32(b[16:]),
		VersionMinor:  b[20],
		VersionMajor:  b[21],
		Errata:        b[22],
		UintnSize:     b[23],
	}
	if s.VersionMajor != 2 || s.VersionMinor != 0 {
		return nil, p.errf(ErrSpecID, "spec version %d.%d, want 2.0", s.VersionMajor, s.VersionMinor)
	}
	if s.UintnSize != 1 && s.UintnSize != 2 {
		return nil, p.errf(ErrSpecID, "uintnSize %d, want 1 or 2", s.UintnSize)
	}
	n := binary.LittleEndian.Uint32(b[24:])
	if n == 0 || n > MaxAlgorithms {
		return nil, p.errf(ErrSpecID, "numberOfAlgorithms %d, want 1 to %d", n, MaxAlgorithms)
	}
	rest := b[28:]
	if len(rest) < int(n)*4+1 {
		return nil, p.errf(ErrSpecID, "%d algorithms need %d bytes, %d left", n, n*4+1, len(rest))
	}
	s.Algorithms = make([]AlgSize, n)
	for i := range s.Algorithms {
		a := AlgSize{Alg: Alg(binary.LittleEndian.Uint16(rest[4*i:])), Size: binary.LittleEndian.Uint16(rest[4*i+2:])}
		if a.Size == 0 || a.Size > MaxDigestSize {
			return nil, p.errf(ErrSpecID, "algorithm %s: digest size %d, want 1 to %d", a.Alg, a.Size, MaxDigestSize)
		}
		if want := a.Alg.Size(); want != 0 && int(a.Size) != want {
			return nil, p.errf(ErrSpecID, "algorithm %s: digest size %d, want %d", a.Alg, a.Size, want)
		}
		for _, prev := range s.Algorithms[:i] {
			if prev.Alg == a.Alg {
				return nil, p.errf(ErrSpecID, "algorithm %s listed twice", a.Alg)
			}
		}
		s.Algorithms[i] = a
	}
	rest = rest[4*n:]
	vs := int(rest[0])
	if len(rest)-1 != vs {
		return nil, p.errf(ErrSpecID, "vendorInfoSize %d, %d bytes left in the event", vs, len(rest)-1)
	}
	s.VendorInfo = rest[1:]
	return s, nil
}

var startupLocality = []byte("StartupLocality\x00")

// isStartupLocality reports whether e is the EV_NO_ACTION StartupLocality
// event (TCG_EfiStartupLocalityEvent: the signature and one byte).
func isStartupLocality(e *Event) bool {
	return e.Type == EvNoAction && len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
