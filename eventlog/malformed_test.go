package eventlog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/eventlog"
)

// boundaries returns the offset of every event and the log's end.
func boundaries(l *eventlog.Log, size int) []int {
	var out []int
	for _, e := range l.Events {
		out = append(out, e.Offset)
	}
	return append(out, size)
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// TestTruncated cuts every real log at every event boundary (a shorter
// valid log) and inside every event (ErrTruncated, unless only zero bytes
// of the cut event remain, which are padding). The two small logs are cut
// at every byte.
func TestTruncated(t *testing.T) {
	for _, name := range realLogs {
		b := readLog(t, name)
		l := mustParse(t, b)
		bs := boundaries(l, len(b))
		cuts := map[int]bool{}
		for _, o := range bs {
			for _, d := range []int{-1, 0, 1, 4, 8, 12, 31} {
				if c := o + d; c >= 0 && c < len(b) {
					cuts[c] = true
				}
			}
		}
		if len(b) < 20000 {
			for c := 0; c < len(b); c++ {
				cuts[c] = true
			}
		}
		for c := range cuts {
			got, err := eventlog.Parse(b[:c])
			// The last boundary at or before c.
			k := 0
			for k+1 < len(bs) && bs[k+1] <= c {
				k++
			}
			switch {
			case c == 0 || allZero(b[:c]):
				if !errors.Is(err, eventlog.ErrEmpty) {
					t.Fatalf("%s cut at %d: %v, want ErrEmpty", name, c, err)
				}
			case bs[k] == c || allZero(b[bs[k]:c]):
				if k == 0 {
					// The cut falls inside (or at the end of nothing
					// but) the first event.
					if !errors.Is(err, eventlog.ErrTruncated) {
						t.Fatalf("%s cut at %d: %v, want ErrTruncated", name, c, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s cut at %d (after event %d): %v", name, c, k-1, err)
				}
				if len(got.Events) != k || got.Padding != c-bs[k] {
					t.Fatalf("%s cut at %d: %d events, padding %d; want %d, %d", name, c, len(got.Events), got.Padding, k, c-bs[k])
				}
			default:
				if !errors.Is(err, eventlog.ErrTruncated) {
					t.Fatalf("%s cut at %d (inside event %d): %v, want ErrTruncated", name, c, k, err)
				}
				if !strings.Contains(err.Error(), "offset") {
					t.Fatalf("error does not say where: %v", err)
				}
			}
		}
	}
}

// TestPadding: zero bytes after the last event are padding; anything
// else is not.
func TestPadding(t *testing.T) {
	for _, name := range realLogs {
		b := readLog(t, name)
		want := mustParse(t, b)
		l := mustParse(t, append(bytes.Clone(b), make([]byte, 4096)...))
		if len(l.Events) != len(want.Events) || l.Padding != 4096 {
			t.Errorf("%s + 4096 zero bytes: %d events, padding %d", name, len(l.Events), l.Padding)
		}
		if _, err := eventlog.Parse(append(bytes.Clone(b), 0, 0, 1, 0)); !errors.Is(err, eventlog.ErrTruncated) {
			t.Errorf("%s + garbage: %v, want ErrTruncated", name, err)
		}
	}
	if _, err := eventlog.Parse(make([]byte, 100)); !errors.Is(err, eventlog.ErrEmpty) {
		t.Errorf("zeros: %v", err)
	}
	if _, err := eventlog.Parse(nil); !errors.Is(err, eventlog.ErrEmpty) {
		t.Errorf("nil: %v", err)
	}
}

// patch returns a copy of b with v written little endian at off.
func patch(b []byte, off int, v uint32) []byte {
	c := bytes.Clone(b)
	binary.LittleEndian.PutUint32(c[off:], v)
	return c
}

// TestMalformed changes one field of a real crypto-agile log at a time.
func TestMalformed(t *testing.T) {
	b := readLog(t, "sb_cert_eventlog") // sha1, sha256, sha384
	l := mustParse(t, b)
	e := l.Events[3] // a TCG_PCR_EVENT2
	countOff := e.Offset + 8
	sizeOff := e.Offset + 12 + 2*3 + 20 + 32 + 48
	if got := binary.LittleEndian.Uint32(b[sizeOff:]); int(got) != len(e.Data) {
		t.Fatalf("EventSize at %d is %d, not %d", sizeOff, got, len(e.Data))
	}
	spec := l.Events[0].Offset + 32 // TCG_EfiSpecIDEventStruct
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"digest count 2", patch(b, countOff, 2), eventlog.ErrMalformed},
		{"digest count 4", patch(b, countOff, 4), eventlog.ErrMalformed},
		{"digest count 0", patch(b, countOff, 0), eventlog.ErrMalformed},
		{"digest count max", patch(b, countOff, 0xffffffff), eventlog.ErrMalformed},
		{"unknown digest algorithm", patch(b, countOff+4, 0x0012_0099), eventlog.ErrMalformed},
		{"repeated digest algorithm", patch(b, countOff+4+2+20, 0x0004), eventlog.ErrMalformed},
		{"event size over the limit", patch(b, sizeOff, eventlog.MaxEventSize+1), eventlog.ErrTooLarge},
		{"event size max", patch(b, sizeOff, 0xffffffff), eventlog.ErrTooLarge},
		{"event size past the end", patch(b, sizeOff, uint32(len(b))), eventlog.ErrTruncated},
		{"spec id signature", append(append(bytes.Clone(b[:spec]), "Spec ID Event04"...), b[spec+15:]...), eventlog.ErrSpecID},
		{"spec id version", patch(b, spec+20, 0x02000100), eventlog.ErrSpecID},
		{"spec id uintn", patch(b, spec+20, 0x03000200), eventlog.ErrSpecID},
		{"spec id no algorithms", patch(b, spec+24, 0), eventlog.ErrSpecID},
		{"spec id 17 algorithms", patch(b, spec+24, 17), eventlog.ErrSpecID},
		{"spec id 4 algorithms", patch(b, spec+24, 4), eventlog.ErrSpecID},
		{"spec id sha256 size", patch(b, spec+28+4, 0x001f000b), eventlog.ErrSpecID},
		{"spec id zero size", patch(b, spec+28+4, 0x0000_0099), eventlog.ErrSpecID},
		{"spec id oversize", patch(b, spec+28+4, 0x0041_0099), eventlog.ErrSpecID},
		{"spec id repeated algorithm", patch(b, spec+28+4, 0x00140004), eventlog.ErrSpecID},
		{"spec id vendor info size", func() []byte { c := bytes.Clone(b); c[spec+28+12]++; return c }(), eventlog.ErrSpecID},
		{"spec id PCR", patch(b, 0, 1), eventlog.ErrSpecID},
		{"spec id digest", func() []byte { c := bytes.Clone(b); c[8] = 1; return c }(), eventlog.ErrSpecID},
		{"spec id event size", patch(b, 28, 20), eventlog.ErrSpecID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := eventlog.Parse(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			for _, other := range []error{eventlog.ErrEmpty, eventlog.ErrTruncated, eventlog.ErrMalformed, eventlog.ErrTooLarge, eventlog.ErrSpecID} {
				if other != c.want && errors.Is(err, other) {
					t.Fatalf("err %v is also %v", err, other)
				}
			}
			if eventlog.Code(err) == "" {
				t.Fatalf("no code for %v", err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	one := new(builder).tcg12(0, eventlog.EvPostCode, nil, []byte("x")).bytes()
	many := func(n int) []byte { return bytes.Repeat(one, n) }
	if l, err := eventlog.Parse(many(eventlog.MaxEvents)); err != nil || len(l.Events) != eventlog.MaxEvents {
		t.Fatalf("MaxEvents events: %v", err)
	}
	if _, err := eventlog.Parse(many(eventlog.MaxEvents + 1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("MaxEvents+1 events: %v", err)
	}
	if _, err := eventlog.Parse(make([]byte, eventlog.MaxLogSize+1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("MaxLogSize+1 bytes: %v", err)
	}
}

func TestStartupLocalityOrder(t *testing.T) {
	loc := append([]byte("StartupLocality\x00"), 3)
	late := agile(sha256Alg).event(0, eventlog.EvSCRTMVersion, []byte("v")).event(0, eventlog.EvNoAction, loc).bytes()
	if _, err := eventlog.Parse(late); !errors.Is(err, eventlog.ErrMalformed) {
		t.Errorf("StartupLocality after a PCR 0 measurement: %v", err)
	}
	twice := agile(sha256Alg).event(0, eventlog.EvNoAction, loc).event(0, eventlog.EvNoAction, loc).bytes()
	if _, err := eventlog.Parse(twice); !errors.Is(err, eventlog.ErrMalformed) {
		t.Errorf("two StartupLocality events: %v", err)
	}
	// Another PCR first is fine.
	ok := agile(sha256Alg).event(7, eventlog.EvSeparator, make([]byte, 4)).event(0, eventlog.EvNoAction, loc).bytes()
	if _, err := eventlog.Parse(ok); err != nil {
		t.Errorf("PCR 7 then StartupLocality: %v", err)
	}
}

// TestUnknownAlgorithm: a bank of an algorithm this package does not know
// parses with the Spec ID event's digest size and is left out of Replay.
func TestUnknownAlgorithm(t *testing.T) {
	odd := eventlog.AlgSize{Alg: 0x0099, Size: 24}
	b := agile(sha1Alg, odd, sha256Alg).event(4, eventlog.EvEFIAction, []byte("Calling EFI Application from Boot Option")).bytes()
	l := mustParse(t, b)
	if got := l.Banks(); len(got) != 3 || got[1] != 0x0099 || got[1].String() != "alg_0x0099" {
		t.Fatalf("banks %v", got)
	}
	r := l.Replay()
	if len(r) != 2 || r[eventlog.AlgSHA1] == nil || r[eventlog.AlgSHA256] == nil {
		t.Fatalf("replay banks %v", r)
	}
	if d := l.Events[1].Digest(0x0099); len(d) != 24 {
		t.Fatalf("unknown digest %x", d)
	}
	if s := l.Summarize(); len(s.Actions) != 1 || len(s.Problems) != 0 {
		t.Fatalf("summary: %+v", s)
	}
}

func TestCode(t *testing.T) {
	for err, want := range map[error]string{
		nil: "", eventlog.ErrEmpty: "empty", eventlog.ErrTruncated: "truncated", eventlog.ErrMalformed: "malformed",
		eventlog.ErrTooLarge: "too-large", eventlog.ErrSpecID: "bad-spec-id", errors.New("x"): "",
	} {
		if got := eventlog.Code(err); got != want {
			t.Errorf("Code(%v) = %q, want %q", err, got, want)
		}
	}
}

// TestTCG12SpecIDEvents: a TPM 1.2 log may start with a Spec ID Event00
// (or 02) and stays SHA-1.
func TestTCG12SpecIDEvents(t *testing.T) {
	for _, sig := range []string{"Spec ID Event00\x00", "Spec ID Event02\x00"} {
		b := new(builder).tcg12(0, eventlog.EvNoAction, nil, []byte(sig+"rest")).tcg12(4, eventlog.EvSeparator, nil, make([]byte, 4)).bytes()
		l := mustParse(t, b)
		if l.Format != eventlog.FormatTCG12 || len(l.Events) != 2 {
			t.Errorf("%q: %s, %d events", sig, l.Format, len(l.Events))
		}
	}
}
