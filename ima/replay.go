package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"io"
)

// MaxTemplates bounds the distinct template names in one list; a real list
// has one to three.
const MaxTemplates = 64

// MaxMismatchIndices is how many indices of entries whose data does not
// hash to their template digest a State keeps.
const MaxMismatchIndices = 8

// TemplateCount is how many entries use a template.
type TemplateCount struct {
	Name  string
	Count int
}

// State is a replay of a prefix of the list: where it ends, what it
// counted and the running PCR values of each bank. The zero State is the
// start of a list. Replaying the rest of a list onto a saved State gives
// the same State as replaying the whole list.
type State struct {
	// Offset is the byte offset where the next entry starts.
	Offset int64
	// Entries is the number of entries replayed.
	Entries int
	// Violations counts entries with a zero template digest.
	Violations int
	// Mismatches counts entries whose SHA-1 over the template data is not
	// their listed template digest; MismatchIndices holds the first few.
	Mismatches      int
	MismatchIndices []int
	// Templates counts entries by template name, in order of first use.
	Templates []TemplateCount
	// BootAggregate is "algo:hex" of the file digest of entry 0 when it is
	// the boot_aggregate entry.
	BootAggregate string
	// PCRs has bit i set when an entry extended PCR i.
	PCRs uint64
	// SHA1 and SHA256 are the running PCR values of the two banks.
	SHA1   [MaxPCR][sha1.Size]byte
	SHA256 [MaxPCR][sha256.Size]byte
	// FirstEnd and FirstSum identify the first entry (where it ends and
	// the SHA-256 of its bytes), LastOffset and LastSum the last one
	// replayed, for Check.
	FirstEnd   int64
	FirstSum   [sha256.Size]byte
	LastOffset int64
	LastSum    [sha256.Size]byte
	// SHA256Only is set when the state was replayed with
	// Options.SHA256Only: SHA1 and Mismatches are then not computed.
	SHA256Only bool
}

// Clone returns a deep copy.
func (s *State) Clone() State {
	c := *s
	c.MismatchIndices = append([]int(nil), s.MismatchIndices...)
	c.Templates = append([]TemplateCount(nil), s.Templates...)
	return c
}

// PCR returns a copy of the running value of PCR index in bank
// (crypto.SHA1 or crypto.SHA256), or nil for another bank or index.
func (s *State) PCR(bank crypto.Hash, index int) []byte {
	if index < 0 || index >= MaxPCR {
		return nil
	}
	switch bank {
	case crypto.SHA1:
		if s.SHA256Only {
			return nil
		}
		return bytes.Clone(s.SHA1[index][:])
	case crypto.SHA256:
		return bytes.Clone(s.SHA256[index][:])
	}
	return nil
}

// TemplateCounts returns the counts by template name.
func (s *State) TemplateCounts() map[string]int {
	m := make(map[string]int, len(s.Templates))
	for _, t := range s.Templates {
		m[t.Name] = t.Count
	}
	return m
}

var (
	ones1   = bytes.Repeat([]byte{0xff}, sha1.Size)
	ones256 = bytes.Repeat([]byte{0xff}, sha256.Size)
)

// valid rejects a State no replay could have produced.
func (s *State) valid() error {
	switch {
	case s.Offset < 0 || s.Entries < 0 || s.LastOffset < 0:
		return fmt.Errorf("ima: %w: negative offset or count", ErrStateMismatch)
	case s.Entries == 0 && (s.Offset != 0 || s.LastOffset != 0 || s.FirstEnd != 0):
		return fmt.Errorf("ima: %w: offset %d with no entries", ErrStateMismatch, s.Offset)
	case s.Entries > 0 && (s.Offset-s.LastOffset < headerSize || s.FirstEnd < headerSize || s.FirstEnd > s.Offset):
		return fmt.Errorf("ima: %w: entries at offsets 0 to %d and %d cannot end at %d", ErrStateMismatch, s.FirstEnd, s.LastOffset, s.Offset)
	case s.Entries == 1 && (s.LastOffset != 0 || s.FirstEnd != s.Offset):
		return fmt.Errorf("ima: %w: one entry from %d to %d", ErrStateMismatch, s.LastOffset, s.Offset)
	}
	return nil
}

// add replays one entry. It leaves s unchanged when it fails.
func (s *State) add(e *Entry, sha256Only bool) error {
	t := -1
	for i := range s.Templates {
		if s.Templates[i].Name == string(e.Template) {
			t = i
			break
		}
	}
	if t < 0 {
		if len(s.Templates) >= MaxTemplates {
			return &ParseError{Index: e.Index, Offset: e.Offset, Err: ErrTooLarge, Detail: fmt.Sprintf("more than %d template names", MaxTemplates)}
		}
		s.Templates = append(s.Templates, TemplateCount{Name: string(e.Template)})
		t = len(s.Templates) - 1
	}
	s.Templates[t].Count++

	var buf [sha256.Size * 2]byte
	switch {
	case e.Violation():
		s.Violations++
		if !sha256Only {
			s.SHA1[e.PCR] = sha1.Sum(append(append(buf[:0], s.SHA1[e.PCR][:]...), ones1...))
		}
		s.SHA256[e.PCR] = sha256.Sum256(append(append(buf[:0], s.SHA256[e.PCR][:]...), ones256...))
	case sha256Only:
		d := sha256.Sum256(e.Data)
		s.SHA256[e.PCR] = sha256.Sum256(append(append(buf[:0], s.SHA256[e.PCR][:]...), d[:]...))
	default:
		if sha1.Sum(e.Data) != e.Digest {
			s.Mismatches++
			if len(s.MismatchIndices) < MaxMismatchIndices {
				s.MismatchIndices = append(s.MismatchIndices, e.Index)
			}
		}
		d := sha256.Sum256(e.Data)
		s.SHA1[e.PCR] = sha1.Sum(append(append(buf[:0], s.SHA1[e.PCR][:]...), e.Digest[:]...))
		s.SHA256[e.PCR] = sha256.Sum256(append(append(buf[:0], s.SHA256[e.PCR][:]...), d[:]...))
	}
	s.PCRs |= 1 << e.PCR
	if e.Index == 0 && e.Known && e.FileDigest != nil && string(e.Name) == "boot_aggregate" {
		s.BootAggregate = fmt.Sprintf("%s:%x", e.DigestAlgo, e.FileDigest)
	}
	s.Entries++
	s.LastOffset = e.Offset
	s.Offset = e.Offset + int64(e.Size)
	return nil
}

// Parse replays a whole list. On error the State covers the entries before
// the failing one.
func Parse(r io.Reader, o Options) (*State, error) {
	st := &State{}
	_, err := replay(r, st, o, nil)
	return st, err
}

// Replay replays the entries r holds onto st; r is positioned at
// st.Offset (a new State starts at the start of the list). On error st
// covers the entries before the failing one.
func Replay(r io.Reader, st *State, o Options) error {
	_, err := replay(r, st, o, nil)
	return err
}

// ReplayUntil replays entries from r (positioned at st.Offset) onto st
// until PCR pcr of bank (crypto.SHA1 or crypto.SHA256) equals target, and
// reports whether it did. It stops at the first matching prefix, which may
// be st itself: the list grows between reading it and quoting the TPM, so
// the quote matches a prefix of what was read. Without a match st covers
// the whole list. r may have been read past st.Offset when it returns; to
// go on, resume from st.Offset.
func ReplayUntil(r io.Reader, st *State, bank crypto.Hash, pcr int, target []byte, o Options) (bool, error) {
	var cur func(*State) []byte
	switch {
	case pcr < 0 || pcr >= MaxPCR:
		return false, fmt.Errorf("ima: PCR %d out of range", pcr)
	case bank == crypto.SHA1 && len(target) == sha1.Size && !o.SHA256Only:
		cur = func(s *State) []byte { return s.SHA1[pcr][:] }
	case bank == crypto.SHA256 && len(target) == sha256.Size:
		cur = func(s *State) []byte { return s.SHA256[pcr][:] }
	default:
		return false, fmt.Errorf("ima: no %v bank of %d-byte values", bank, len(target))
	}
	return replay(r, st, o, func(s *State) bool { return bytes.Equal(cur(s), target) })
}

func replay(r io.Reader, st *State, o Options, match func(*State) bool) (bool, error) {
	if err := st.valid(); err != nil {
		return false, err
	}
	if st.Entries == 0 {
		st.SHA256Only = o.SHA256Only
	} else if st.SHA256Only != o.SHA256Only {
		return false, fmt.Errorf("ima: %w: the state was replayed with SHA256Only=%t", ErrStateMismatch, st.SHA256Only)
	}
	if match != nil && match(st) {
		return true, nil
	}
	p := NewParserAt(r, st.Offset, st.Entries, o)
	var last []byte
	defer func() {
		if last != nil {
			st.LastSum = sha256.Sum256(last)
		}
	}()
	for {
		e, err := p.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if err := st.add(e, o.SHA256Only); err != nil {
			return false, err
		}
		if o.Visit != nil {
			o.Visit(e)
		}
		if e.Index == 0 {
			st.FirstEnd, st.FirstSum = int64(e.Size), sha256.Sum256(e.Raw)
		}
		last = append(last[:0], e.Raw...)
		if match != nil && match(st) {
			return true, nil
		}
	}
}

// Check confirms that the list r holds is the one st was saved from: its
// first entry and the last entry st replayed are unchanged. It reads those
// two entries only; a list that has grown passes, and Replay goes on from
// st.Offset. A mismatch, or a list shorter than st.Offset, is
// ErrStateMismatch.
func (st *State) Check(r io.ReaderAt) error {
	if err := st.valid(); err != nil {
		return err
	}
	if st.Entries == 0 {
		return nil
	}
	buf := make([]byte, 4<<10)
	for _, c := range []struct {
		index    int
		off, end int64
		sum      []byte
	}{{0, 0, st.FirstEnd, st.FirstSum[:]}, {st.Entries - 1, st.LastOffset, st.Offset, st.LastSum[:]}} {
		h := sha256.New()
		n, err := io.CopyBuffer(h, io.NewSectionReader(r, c.off, c.end-c.off), buf)
		if err != nil {
			return fmt.Errorf("ima: read entry %d at offset %d: %w", c.index, c.off, err)
		}
		if n != c.end-c.off {
			return fmt.Errorf("ima: %w: the list ends at %d, before entry %d ends at %d", ErrStateMismatch, c.off+n, c.index, c.end)
		}
		if !bytes.Equal(h.Sum(nil), c.sum) {
			return fmt.Errorf("ima: %w: entry %d at offset %d (%d bytes) differs", ErrStateMismatch, c.index, c.off, n)
		}
	}
	return nil
}
