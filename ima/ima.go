// Package ima reads the Linux IMA runtime measurement list and replays it
// to the PCR values the kernel extended, the way an attestation verifier
// (Keylime's "template-hash method") does.
//
// The kernel exports the list at
// /sys/kernel/security/ima/binary_runtime_measurements. Each entry is
//
//	u32 PCR | 20-byte SHA-1 template digest | u32 name length | template name |
//	u32 template-data length | template data
//
// in the host's byte order (little endian on x86, and on every host booted
// with ima_canonical_fmt). The template data is a sequence of fields, each a
// u32 length and its bytes (security/integrity/ima/ima_fs.c,
// ima_measurements_show). The legacy "ima" template has no data length: it
// is the 20-byte file digest, a u32 name length and the name without its
// NUL, and its template digest is SHA-1 over the digest and the name padded
// with zeros to 256 bytes (ima_crypto.c, ima_calc_field_array_hash_tfm).
//
// Replay extends each PCR bank with the entry's digest for that bank: the
// listed SHA-1 template digest for the SHA-1 bank, SHA-256 over the same
// template data for the SHA-256 bank. A violation (an all-zero template
// digest) extends every bank with all 0xFF bytes, as the kernel does.
// SHA-1 over the template data must equal the listed digest; a mismatch is
// counted, since it means the data was changed after the kernel measured it.
//
// Parsing is streaming and bounded: a Parser reads entries from an
// io.Reader through one reused buffer, and the byte slices of an Entry refer
// to that buffer. A State carries a replay across calls, so a list that
// grows is read incrementally, and ReplayUntil stops at the first prefix
// whose PCR value equals a quoted one (the list grows between reading it
// and quoting the TPM).
//
// ParseASCII and EncodeBinary turn ascii_runtime_measurements text into the
// binary form, for fixtures and tests.
package ima

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DigestSize is the size of the template digest each entry lists
// (TPM_DIGEST_SIZE: a SHA-1 digest).
const DigestSize = sha1.Size

// MaxPCR bounds the PCR index of an entry: the kernel keeps the PCRs an
// inode was measured into in a 64-bit mask (ima_policy.c, INVALID_PCR).
const MaxPCR = 64

// MeasurementPCR is the PCR IMA extends unless a policy rule says otherwise
// (CONFIG_IMA_MEASURE_PCR_IDX).
const MeasurementPCR = 10

// Bounds on what an entry may hold. The kernel's own limits are lower: a
// template name (or format) fits in 71 bytes, a path in PATH_MAX, a legacy
// name in 255 bytes.
const (
	MaxTemplateNameLen = 255
	MaxNameLen         = 4096 // n-ng field, NUL included (PATH_MAX)
	LegacyNameLen      = 256  // IMA_EVENT_NAME_LEN_MAX + 1: the legacy name field as hashed
	maxFields          = 15   // IMA_TEMPLATE_NUM_FIELDS_MAX
	maxFieldIDLen      = 16   // IMA_TEMPLATE_FIELD_ID_MAX_LEN
	maxAlgoNameLen     = 128  // CRYPTO_MAX_ALG_NAME
	maxDigestSize      = 64   // HASH_MAX_DIGESTSIZE
)

// Defaults for Options.
const (
	// DefaultMaxTemplateData bounds one entry's template data. ima-buf
	// entries (keys, kexec command lines, device-mapper tables) are a few
	// kilobytes at most.
	DefaultMaxTemplateData = 1 << 20
	// DefaultMaxEntries bounds the number of entries in a list. A busy
	// server measures a few hundred thousand files per boot.
	DefaultMaxEntries = 1 << 24
)

// Options bound what a Parser accepts. The zero value uses the defaults.
type Options struct {
	// MaxTemplateData bounds the template data of one entry, in bytes.
	MaxTemplateData int
	// MaxEntries bounds the entries of the whole list, counting those of
	// a resumed State.
	MaxEntries int
	// SHA256Only replays the SHA-256 bank alone, for a verifier whose
	// quote covers only that bank: the SHA-1 bank is not computed and the
	// template data is not checked against the listed SHA-1 digest
	// (Mismatches stays 0). A State records the mode; resuming it in the
	// other mode is ErrStateMismatch.
	SHA256Only bool
	// Visit, when set, is called with each entry a replay adds to its
	// State, after the State took it (the Entry is valid only during the
	// call). The Parser itself does not call it.
	Visit func(*Entry)
}

func (o Options) maxData() int {
	if o.MaxTemplateData <= 0 {
		return DefaultMaxTemplateData
	}
	return o.MaxTemplateData
}

func (o Options) maxEntries() int {
	if o.MaxEntries <= 0 {
		return DefaultMaxEntries
	}
	return o.MaxEntries
}

// The sentinel errors a ParseError wraps.
var (
	// ErrTruncated means the list ends inside an entry.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed means an entry breaks the kernel's format.
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge means a length or count exceeds a bound; the bytes it
	// announces are not read into memory.
	ErrTooLarge = errors.New("too large")
	// ErrStateMismatch means a saved State does not describe a prefix of
	// the list it is resumed on.
	ErrStateMismatch = errors.New("replay state does not match the list")
)

// ParseError says which entry failed, where it starts in the list and why.
// Err is one of the sentinels above, or the reader's error.
type ParseError struct {
	Index  int   // entry index, from 0
	Offset int64 // byte offset of the entry's start
	Err    error
	Detail string
}

func (e *ParseError) Error() string {
	s := fmt.Sprintf("ima: entry %d at offset %d: %v", e.Index, e.Offset, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *ParseError) Unwrap() error { return e.Err }

// Entry is one measurement as the Parser read it. Its byte slices refer to
// the Parser's buffer and stay valid only until the next call to Next; use
// Record for a copy.
type Entry struct {
	Index  int   // position in the list, from 0
	Offset int64 // byte offset of the entry in the list
	Size   int   // bytes the entry takes in the list
	PCR    uint32
	// Digest is the listed SHA-1 template digest; all zeros for a
	// violation.
	Digest [DigestSize]byte
	// Template is the template name, or its field format ("d-ng|n-ng")
	// for a custom template.
	Template []byte
	// Data is the template data as the kernel hashes it. For the legacy
	// "ima" template it is rebuilt: the digest and the name padded to
	// LegacyNameLen bytes.
	Data []byte
	// Raw is the entry as listed, Size bytes.
	Raw []byte

	// Known is true when the template's fields are known and were decoded
	// into the fields below; an unknown template's data is opaque (but is
	// still hashed and replayed).
	Known bool
	// DigestType is the d-ngv2 digest type ("ima", "verity"), else nil.
	DigestType []byte
	// DigestAlgo is the file digest's algorithm name as the kernel spells
	// it ("sha256"); "sha1" for the legacy template.
	DigestAlgo []byte
	// FileDigest is the file (or buffer) digest.
	FileDigest []byte
	// Name is the path or event name, without its NUL.
	Name []byte
	// Sig is the sig field (the security.ima signature) of ima-sig,
	// ima-sigv2 and ima-modsig.
	Sig []byte
	// Buf is the buf field of ima-buf.
	Buf []byte
}

// Violation reports whether the entry records a violation: the kernel
// lists a zero template digest and extends the PCRs with all ones.
func (e *Entry) Violation() bool { return e.Digest == [DigestSize]byte{} }

const (
	headerSize  = 4 + DigestSize + 4 // PCR, template digest, name length
	minBuf      = 4 << 10
	defaultBuf  = 64 << 10
	maxNoRead   = 100
	legacyName  = "ima"
	legacyDSize = DigestSize
)

// Parser reads the binary list entry by entry.
type Parser struct {
	r        io.Reader
	buf      []byte
	pos, end int   // unread bytes are buf[pos:end]
	off      int64 // list offset of buf[pos]
	index    int
	rerr     error // the reader's error, io.EOF at the end
	err      error // sticky result
	maxData  int
	maxCount int
	e        Entry
	legacy   [legacyDSize + LegacyNameLen]byte
}

// NewParser returns a Parser over a whole list.
func NewParser(r io.Reader, o Options) *Parser {
	return NewParserAt(r, 0, 0, o)
}

// NewParserAt returns a Parser over the rest of a list: r is positioned at
// offset, where entry index starts. Offsets and indices it reports are the
// list's.
func NewParserAt(r io.Reader, offset int64, index int, o Options) *Parser {
	return &Parser{r: r, off: offset, index: index, maxData: o.maxData(), maxCount: o.maxEntries()}
}

// Offset is the list offset just past the last entry returned.
func (p *Parser) Offset() int64 { return p.off }

// Index is the index of the next entry.
func (p *Parser) Index() int { return p.index }

// fill makes at least n bytes available at buf[pos:]. It reports false when
// the reader ended (or failed) first.
func (p *Parser) fill(n int) bool {
	noRead := 0
	for p.end-p.pos < n {
		if p.rerr != nil {
			return false
		}
		if len(p.buf)-p.pos < n {
			// The buffer starts small (a warm replay reads a short tail)
			// and doubles while it is smaller than defaultBuf or n.
			size := len(p.buf)
			if size < defaultBuf {
				size = max(minBuf, 2*size)
			}
			for size < n {
				size *= 2
			}
			if size > len(p.buf) {
				nb := make([]byte, size)
				p.end = copy(nb, p.buf[p.pos:p.end])
				p.buf = nb
			} else {
				p.end = copy(p.buf, p.buf[p.pos:p.end])
			}
			p.pos = 0
		}
		m, err := p.r.Read(p.buf[p.end:])
		if m < 0 || m > len(p.buf)-p.end {
			p.rerr = fmt.Errorf("reader returned %d bytes for a %d-byte buffer", m, len(p.buf)-p.end)
			return false
		}
		p.end += m
		switch {
		case err != nil:
			p.rerr = err
		case m == 0:
			if noRead++; noRead >= maxNoRead {
				p.rerr = io.ErrNoProgress
			}
		default:
			noRead = 0
		}
	}
	return true
}

func (p *Parser) fail(err error, format string, args ...any) error {
	p.err = &ParseError{Index: p.index, Offset: p.off, Err: err, Detail: fmt.Sprintf(format, args...)}
	return p.err
}

// short reports why fill(n) failed: the list ended, or the reader failed.
func (p *Parser) short(n int, what string) error {
	if p.rerr == io.EOF || p.rerr == io.ErrUnexpectedEOF {
		return p.fail(ErrTruncated, "%s needs %d bytes, %d left", what, n, p.end-p.pos)
	}
	return p.fail(p.rerr, "read %s", what)
}

// Next returns the next entry, or io.EOF at the end of the list. Any other
// error is a *ParseError and is returned again by later calls.
func (p *Parser) Next() (*Entry, error) {
	if p.err != nil {
		return nil, p.err
	}
	if !p.fill(headerSize) {
		if p.end == p.pos && p.rerr == io.EOF {
			p.err = io.EOF
			return nil, io.EOF
		}
		return nil, p.short(headerSize, "entry header")
	}
	if p.index >= p.maxCount {
		return nil, p.fail(ErrTooLarge, "more than %d entries", p.maxCount)
	}
	b := p.buf[p.pos:p.end]
	pcr := binary.LittleEndian.Uint32(b)
	if pcr >= MaxPCR {
		return nil, p.fail(ErrMalformed, "PCR %d out of range", pcr)
	}
	nameLen := binary.LittleEndian.Uint32(b[4+DigestSize:])
	if nameLen == 0 {
		return nil, p.fail(ErrMalformed, "empty template name")
	}
	if nameLen > MaxTemplateNameLen {
		return nil, p.fail(ErrTooLarge, "template name length %d exceeds %d", nameLen, MaxTemplateNameLen)
	}
	n := headerSize + int(nameLen)
	if !p.fill(n + 4) {
		return nil, p.short(n+4, "template name and data length")
	}
	b = p.buf[p.pos:p.end]
	// name and b are valid until the next fill, which may move the bytes.
	name := b[headerSize:n]
	if !validTemplateName(name) {
		return nil, p.fail(ErrMalformed, "template name %q has characters no template has", name)
	}
	e := &p.e
	*e = Entry{Index: p.index, Offset: p.off, PCR: pcr}
	copy(e.Digest[:], b[4:4+DigestSize])
	d, known := lookupTemplate(name)
	var total int
	if d.legacy {
		if !p.fill(n + legacyDSize + 4) {
			return nil, p.short(n+legacyDSize+4, "legacy digest and name length")
		}
		b = p.buf[p.pos:p.end]
		nl := binary.LittleEndian.Uint32(b[n+legacyDSize:])
		if nl >= LegacyNameLen {
			return nil, p.fail(ErrMalformed, "legacy name length %d exceeds %d", nl, LegacyNameLen-1)
		}
		total = n + legacyDSize + 4 + int(nl)
		if !p.fill(total) {
			return nil, p.short(total, "legacy name")
		}
		b = p.buf[p.pos:p.end]
		e.Name = b[n+legacyDSize+4 : total]
		if bytes.IndexByte(e.Name, 0) >= 0 {
			return nil, p.fail(ErrMalformed, "legacy name holds a NUL")
		}
		copy(p.legacy[:], b[n:n+legacyDSize])
		c := copy(p.legacy[legacyDSize:], e.Name)
		clear(p.legacy[legacyDSize+c:])
		e.Data = p.legacy[:]
		e.FileDigest = p.legacy[:legacyDSize]
		e.DigestAlgo = algoSHA1
	} else {
		dl := binary.LittleEndian.Uint32(b[n:])
		if uint64(dl) > uint64(p.maxData) {
			return nil, p.fail(ErrTooLarge, "template data length %d exceeds %d", dl, p.maxData)
		}
		total = n + 4 + int(dl)
		if !p.fill(total) {
			return nil, p.short(total, "template data")
		}
		b = p.buf[p.pos:p.end]
		e.Data = b[n+4 : total]
		if known {
			if detail, err := e.decode(&d); err != nil {
				return nil, p.fail(err, "%s: %s", b[headerSize:n], detail)
			}
		}
	}
	e.Known = known
	e.Template = b[headerSize:n]
	e.Raw = b[:total]
	e.Size = total
	p.pos += total
	p.off += int64(total)
	p.index++
	return e, nil
}

// validTemplateName accepts printable ASCII without spaces: template names
// and field formats are letters, digits, '-', '_' and '|'.
func validTemplateName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Record returns an owned copy of the entry's decoded form.
func (e *Entry) Record() Record {
	r := Record{
		PCR:          e.PCR,
		TemplateHash: e.Digest,
		Template:     string(e.Template),
		DigestType:   string(e.DigestType),
		DigestAlgo:   string(e.DigestAlgo),
		Digest:       clone(e.FileDigest),
		Name:         string(e.Name),
		Sig:          clone(e.Sig),
		Buf:          clone(e.Buf),
	}
	if !simpleTemplate(r.Template) {
		r.Data = clone(e.Data)
		if r.Data == nil {
			r.Data = []byte{}
		}
	}
	return r
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
