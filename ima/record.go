package ima

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Record is an owned, decoded entry: what a line of
// ascii_runtime_measurements shows. Records of the templates ima, ima-ng,
// ima-ngv2, ima-sig, ima-sigv2 and ima-buf are fully described by their
// fields; any other template keeps its template data in Data.
type Record struct {
	PCR uint32
	// TemplateHash is the listed SHA-1 template digest (zero for a
	// violation).
	TemplateHash [DigestSize]byte
	Template     string
	// DigestType is the d-ngv2 digest type ("ima", "verity").
	DigestType string
	// DigestAlgo is the file digest's algorithm ("sha256"); "sha1" for
	// the legacy template.
	DigestAlgo string
	Digest     []byte
	Name       string
	Sig        []byte // ima-sig, ima-sigv2
	Buf        []byte // ima-buf
	// Data is the template data, as listed, of a template other than the
	// six above; for those six it is nil and ignored.
	Data []byte
}

// HashedData returns the template data the kernel hashes into the
// template digest and the PCR banks.
func (r *Record) HashedData() ([]byte, error) {
	if r.Template == legacyName {
		if err := r.checkLegacy(); err != nil {
			return nil, err
		}
		out := make([]byte, legacyDSize+LegacyNameLen)
		copy(out, r.Digest)
		copy(out[legacyDSize:], r.Name)
		return out, nil
	}
	return r.templateData()
}

// SetTemplateHash sets TemplateHash to SHA-1 over the hashed data, as the
// kernel computes it for an entry that is not a violation.
func (r *Record) SetTemplateHash() error {
	d, err := r.HashedData()
	if err != nil {
		return err
	}
	r.TemplateHash = sha1.Sum(d)
	return nil
}

func (r *Record) checkLegacy() error {
	switch {
	case len(r.Digest) != legacyDSize:
		return fmt.Errorf("ima: legacy template needs a %d-byte digest, not %d", legacyDSize, len(r.Digest))
	case r.DigestAlgo != "" && r.DigestAlgo != "sha1":
		return fmt.Errorf("ima: legacy template digest is sha1, not %s", r.DigestAlgo)
	case len(r.Name) >= LegacyNameLen:
		return fmt.Errorf("ima: legacy name of %d bytes exceeds %d", len(r.Name), LegacyNameLen-1)
	case strings.IndexByte(r.Name, 0) >= 0:
		return errors.New("ima: legacy name holds a NUL")
	}
	return nil
}

// templateData builds the length-prefixed fields of a non-legacy record.
func (r *Record) templateData() ([]byte, error) {
	if !simpleTemplate(r.Template) {
		if r.Data == nil {
			return nil, fmt.Errorf("ima: template %q needs its template data in Data", r.Template)
		}
		return r.Data, nil
	}
	var b []byte
	d := r.DigestAlgo + ":\x00"
	if r.Template == "ima-ngv2" || r.Template == "ima-sigv2" {
		d = r.DigestType + ":" + d
	}
	b = appendField(b, []byte(d), r.Digest)
	b = appendField(b, []byte(r.Name), []byte{0})
	switch r.Template {
	case "ima-sig", "ima-sigv2":
		b = appendField(b, r.Sig)
	case "ima-buf":
		b = appendField(b, r.Buf)
	}
	return b, nil
}

func appendField(b []byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// AppendBinary appends the record in the binary list form. The result is
// checked by parsing it back, so whatever AppendBinary writes, Parser
// reads.
func AppendBinary(dst []byte, r *Record) ([]byte, error) {
	if r.PCR >= MaxPCR {
		return dst, fmt.Errorf("ima: PCR %d out of range", r.PCR)
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, r.PCR)
	dst = append(dst, r.TemplateHash[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(r.Template)))
	dst = append(dst, r.Template...)
	if r.Template == legacyName {
		if err := r.checkLegacy(); err != nil {
			return dst[:start], err
		}
		dst = append(dst, r.Digest...)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(r.Name)))
		dst = append(dst, r.Name...)
	} else {
		data, err := r.templateData()
		if err != nil {
			return dst[:start], err
		}
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
		dst = append(dst, data...)
	}
	p := NewParser(bytes.NewReader(dst[start:]), Options{MaxTemplateData: len(dst)})
	if _, err := p.Next(); err != nil {
		return dst[:start], fmt.Errorf("ima: record does not encode: %w", err)
	}
	if p.Offset() != int64(len(dst)-start) {
		return dst[:start], errors.New("ima: record does not encode to one entry")
	}
	return dst, nil
}

// EncodeBinary writes records as a binary measurement list.
func EncodeBinary(w io.Writer, recs []Record) error {
	var b []byte
	for i := range recs {
		var err error
		if b, err = AppendBinary(b[:0], &recs[i]); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// String returns the record as the kernel prints it in
// ascii_runtime_measurements, without the newline. A template other than
// the six simple ones is shown with its template data in hex, which is not
// the kernel's form.
func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%2d %x %s", r.PCR, r.TemplateHash, r.Template)
	switch {
	case r.Template == legacyName:
		fmt.Fprintf(&b, " %x %s", r.Digest, r.Name)
	case simpleTemplate(r.Template):
		b.WriteByte(' ')
		if r.DigestType != "" {
			b.WriteString(r.DigestType + ":")
		}
		fmt.Fprintf(&b, "%s:%x %s", r.DigestAlgo, r.Digest, r.Name)
		switch r.Template {
		case "ima-sig", "ima-sigv2":
			fmt.Fprintf(&b, " %x", r.Sig)
		case "ima-buf":
			fmt.Fprintf(&b, " %x", r.Buf)
		}
	default:
		fmt.Fprintf(&b, " %x", r.Data)
	}
	return b.String()
}

// ParseASCIILine parses one line of ascii_runtime_measurements:
//
//	PCR template-hash template-name [type:]algo:digest name [sig-or-buf-hex]
//
// for the templates ima-ng, ima-ngv2, ima-sig, ima-sigv2 and ima-buf, and
// "PCR template-hash ima digest name" for the legacy template. Since Linux
// 5.15 names carry no spaces (the kernel writes '_'); for an older list a
// name with spaces is read whole, and for ima-sig and ima-buf the hex field
// is what follows the last space.
func ParseASCIILine(line string) (Record, error) {
	var r Record
	s := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	s = strings.TrimLeft(s, " ") // the PCR is printed "%2d"
	pcr, s, ok1 := strings.Cut(s, " ")
	th, s, ok2 := strings.Cut(s, " ")
	tmpl, s, ok3 := strings.Cut(s, " ")
	if !ok1 || !ok2 || !ok3 {
		return r, errors.New("fewer than four space-separated fields")
	}
	v, err := strconv.ParseUint(pcr, 10, 32)
	if err != nil || v >= MaxPCR || pcr[0] == '+' {
		return r, fmt.Errorf("PCR %q", pcr)
	}
	r.PCR = uint32(v)
	if len(th) != 2*DigestSize {
		return r, fmt.Errorf("template hash %q is not %d hex digits", th, 2*DigestSize)
	}
	if _, err := hex.Decode(r.TemplateHash[:], []byte(th)); err != nil {
		return r, fmt.Errorf("template hash: %v", err)
	}
	r.Template = tmpl
	dig, rest, _ := strings.Cut(s, " ")
	switch tmpl {
	case legacyName:
		r.DigestAlgo, r.Name = "sha1", rest
		if r.Digest, err = hex.DecodeString(dig); err != nil {
			return r, fmt.Errorf("digest: %v", err)
		}
	case "ima-ng", "ima-ngv2", "ima-sig", "ima-sigv2", "ima-buf":
		if tmpl == "ima-ngv2" || tmpl == "ima-sigv2" {
			var ok bool
			if r.DigestType, dig, ok = strings.Cut(dig, ":"); !ok {
				return r, fmt.Errorf("digest %q lacks its type", dig)
			}
		}
		algo, hx, ok := strings.Cut(dig, ":")
		if !ok {
			return r, fmt.Errorf("digest %q lacks its algorithm", dig)
		}
		r.DigestAlgo = algo
		if r.Digest, err = hex.DecodeString(hx); err != nil {
			return r, fmt.Errorf("digest: %v", err)
		}
		r.Name = rest
		if tmpl == "ima-sig" || tmpl == "ima-sigv2" || tmpl == "ima-buf" {
			var extra []byte
			if i := strings.LastIndexByte(rest, ' '); i >= 0 {
				r.Name = rest[:i]
				if extra, err = hex.DecodeString(rest[i+1:]); err != nil {
					return r, fmt.Errorf("%s hex field: %v", tmpl, err)
				}
			}
			if len(extra) == 0 {
				extra = nil
			}
			if tmpl == "ima-buf" {
				r.Buf = extra
			} else {
				r.Sig = extra
			}
		}
	default:
		return r, fmt.Errorf("template %q has no ASCII form here", tmpl)
	}
	if len(r.Digest) == 0 {
		r.Digest = nil
	}
	if _, err := AppendBinary(nil, &r); err != nil {
		return r, err
	}
	return r, nil
}

// ParseASCII parses an ascii_runtime_measurements list. Empty lines are
// skipped. Errors are *ParseError values whose Index is the entry's and
// Offset the line's.
func ParseASCII(rd io.Reader, o Options) ([]Record, error) {
	sc := bufio.NewScanner(rd)
	maxLine := 2*o.maxData() + 2*MaxNameLen + 1024
	sc.Buffer(make([]byte, 0, min(maxLine, 64<<10)), maxLine)
	var out []Record
	var off int64
	for sc.Scan() {
		line := sc.Text()
		lineOff := off
		off += int64(len(line)) + 1
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(out) >= o.maxEntries() {
			return out, &ParseError{Index: len(out), Offset: lineOff, Err: ErrTooLarge, Detail: fmt.Sprintf("more than %d entries", o.maxEntries())}
		}
		r, err := ParseASCIILine(line)
		if err != nil {
			return out, &ParseError{Index: len(out), Offset: lineOff, Err: ErrMalformed, Detail: err.Error()}
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, &ParseError{Index: len(out), Offset: off, Err: ErrTooLarge, Detail: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return out, &ParseError{Index: len(out), Offset: off, Err: err, Detail: "read"}
	}
	return out, nil
}
