package ima_test

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// prefixStates replays every prefix of list: states[k] covers k entries.
func prefixStates(t *testing.T, list []byte) []*ima.State {
	t.Helper()
	sp := spans(t, list)
	out := []*ima.State{parse(t, nil)}
	for _, s := range sp {
		out = append(out, parse(t, list[:s.off+s.size]))
	}
	return out
}

// TestIncremental resumes from every entry boundary of a list that grew:
// the result equals a full replay.
func TestIncremental(t *testing.T) {
	list := imatest.List(1100) // holds ima-sig, ima-buf and a violation
	full := parse(t, list)
	if full.Violations != 1 || len(full.Templates) != 3 {
		t.Fatalf("fixture: %d violations, templates %v", full.Violations, full.Templates)
	}
	sp := spans(t, list)
	for i, s := range sp {
		// Every boundary of the first entries and around the violation,
		// a stride elsewhere (each round replays the whole list).
		if i >= 40 && i%53 != 0 && (i < 1007 || i > 1010) && i < len(sp)-2 {
			continue
		}
		end := s.off + s.size
		st := parse(t, list[:end])
		if err := st.Check(bytes.NewReader(list)); err != nil {
			t.Fatalf("check at %d: %v", end, err)
		}
		saved := st.Clone()
		if err := ima.Replay(bytes.NewReader(list[end:]), st, ima.Options{}); err != nil {
			t.Fatalf("resume at %d: %v", end, err)
		}
		if !reflect.DeepEqual(st, full) {
			t.Fatalf("resumed at %d: state differs from a full replay", end)
		}
		// Resuming a State on the same list twice is idempotent.
		if err := ima.Replay(bytes.NewReader(list[end:]), &saved, ima.Options{}); err != nil || !reflect.DeepEqual(&saved, full) {
			t.Fatalf("second resume at %d: %v", end, err)
		}
	}
}

// TestStreaming reads through readers that return little at a time.
func TestStreaming(t *testing.T) {
	list := imatest.List(300)
	full := parse(t, list)
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(list)),
		"half":     iotest.HalfReader(bytes.NewReader(list)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(list)),
	} {
		st, err := ima.Parse(r, ima.Options{})
		if err != nil || !reflect.DeepEqual(st, full) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestReplayUntil stops at the first prefix whose PCR equals the quote,
// and the next round resumes from there.
func TestReplayUntil(t *testing.T) {
	list := imatest.List(60)
	states := prefixStates(t, list)
	full := states[len(states)-1]
	for _, bank := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, k := range []int{0, 1, 17, 59, 60} {
			target := states[k].PCR(bank, 10)
			st := &ima.State{}
			ok, err := ima.ReplayUntil(bytes.NewReader(list), st, bank, 10, target, ima.Options{})
			if err != nil || !ok {
				t.Fatalf("%v, prefix %d: %v %v", bank, k, ok, err)
			}
			if !reflect.DeepEqual(st, states[k]) {
				t.Fatalf("%v, prefix %d: stopped after %d entries", bank, k, st.Entries)
			}
			// The list grew since: go on from the match.
			if err := st.Check(bytes.NewReader(list)); err != nil {
				t.Fatal(err)
			}
			if err := ima.Replay(bytes.NewReader(list[st.Offset:]), st, ima.Options{}); err != nil || !reflect.DeepEqual(st, full) {
				t.Fatalf("%v, resume after %d: %v", bank, k, err)
			}
			// Already at the quote: nothing is read.
			st = states[k]
			st2 := st.Clone()
			if ok, err := ima.ReplayUntil(iotest.ErrReader(errors.New("must not read")), &st2, bank, 10, target, ima.Options{}); !ok || err != nil {
				t.Fatalf("at the quote: %v %v", ok, err)
			}
		}
		st := &ima.State{}
		ok, err := ima.ReplayUntil(bytes.NewReader(list), st, bank, 10, bytes.Repeat([]byte{7}, len(full.PCR(bank, 10))), ima.Options{})
		if ok || err != nil || !reflect.DeepEqual(st, full) {
			t.Fatalf("%v, no match: %v %v, %d entries", bank, ok, err, st.Entries)
		}
	}
	for _, bad := range []struct {
		bank   crypto.Hash
		pcr    int
		target []byte
	}{{crypto.SHA384, 10, make([]byte, 48)}, {crypto.SHA1, 10, make([]byte, 32)}, {crypto.SHA256, 64, make([]byte, 32)}, {crypto.SHA256, -1, make([]byte, 32)}} {
		if _, err := ima.ReplayUntil(bytes.NewReader(list), &ima.State{}, bad.bank, bad.pcr, bad.target, ima.Options{}); err == nil {
			t.Fatalf("%v PCR %d with %d bytes accepted", bad.bank, bad.pcr, len(bad.target))
		}
	}
}

// TestStateMismatch resumes from states that do not describe the list.
func TestStateMismatch(t *testing.T) {
	list := imatest.List(20)
	other := imatest.List(21)[len(imatest.List(1)):] // the same sizes, other entries
	st := parse(t, list[:spans(t, list)[10].off])
	firstChanged := bytes.Clone(list)
	firstChanged[30] ^= 1 // in entry 0's template name length: same size, other bytes
	firstChanged[len(firstChanged)-1] ^= 1

	// A mid-entry offset: Check refuses it, and a replay from there fails
	// naming the entry.
	moved := st.Clone()
	moved.Offset += 7
	if err := moved.Check(bytes.NewReader(list)); !errors.Is(err, ima.ErrStateMismatch) {
		t.Fatalf("mid-entry check: %v", err)
	}
	err := ima.Replay(bytes.NewReader(list[moved.Offset:]), &moved, ima.Options{})
	if pe := parseErr(t, err); pe.Index != 10 || pe.Offset != moved.Offset {
		t.Fatalf("mid-entry replay: %v", err)
	}
	t.Log(err)

	tests := map[string]struct {
		st   func() ima.State
		list []byte
	}{
		"list replaced":      {func() ima.State { return st.Clone() }, other},
		"list shrank":        {func() ima.State { return st.Clone() }, list[:st.Offset-1]},
		"offset past":        {func() ima.State { s := st.Clone(); s.Offset = s.LastOffset + 3; return s }, list},
		"negative":           {func() ima.State { s := st.Clone(); s.Offset = -1; return s }, list},
		"offset, no entries": {func() ima.State { return ima.State{Offset: 5} }, list},
		"wrong last sum":     {func() ima.State { s := st.Clone(); s.LastSum[0] ^= 1; return s }, list},
	}
	for name, tt := range tests {
		s := tt.st()
		if err := s.Check(bytes.NewReader(tt.list)); !errors.Is(err, ima.ErrStateMismatch) {
			t.Errorf("%s: check %v", name, err)
		}
	}
	bad := ima.State{Offset: 5}
	if err := ima.Replay(bytes.NewReader(list), &bad, ima.Options{}); !errors.Is(err, ima.ErrStateMismatch) {
		t.Fatalf("replay from an impossible state: %v", err)
	}
	var zero ima.State
	if err := zero.Check(bytes.NewReader(nil)); err != nil {
		t.Fatalf("zero state: %v", err)
	}
}
