package cms

import (
	"errors"
	"fmt"
)

// maxDepth bounds the nesting of ASN.1 structures Vigil accepts. Real
// signatures nest less than 20 deep; a hostile input may nest millions.
const maxDepth = 64

var errBER = errors.New("invalid BER encoding")

// normalize converts a BER encoding (indefinite lengths, constructed string
// chunks, non-minimal lengths) into DER-shaped definite-length encoding. It
// returns b itself when b is already a single definite-length element that
// needs no change. Depth and output size are bounded by the input.
func normalize(b []byte) ([]byte, error) {
	if isDefinite(b, 0) {
		return b, nil
	}
	out, rest, err := berElement(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBER, len(rest))
	}
	return out, nil
}

// isDefinite reports whether b is one element whose encoding, and that of
// every constructed element inside it, uses definite minimal lengths and no
// constructed OCTET STRING chunks.
func isDefinite(b []byte, depth int) bool {
	if depth > maxDepth {
		return false
	}
	tag, constructed, hdr, length, indefinite, ok := header(b)
	if !ok || indefinite || hdr+length != len(b) {
		return false
	}
	if !constructed {
		return true
	}
	if tag == 0x24 || tag == 0x23 { // constructed OCTET/BIT STRING
		return false
	}
	body := b[hdr:]
	for len(body) > 0 {
		_, _, h, l, ind, ok := header(body)
		if !ok || ind || h+l > len(body) {
			return false
		}
		if !isDefinite(body[:h+l], depth+1) {
			return false
		}
		body = body[h+l:]
	}
	return true
}

// header parses one identifier and length. tag is the first identifier octet
// (high-tag-number form is accepted and reported as 0x1f|class bits).
func header(b []byte) (tag byte, constructed bool, hdr, length int, indefinite, ok bool) {
	if len(b) < 2 {
		return
	}
	tag = b[0]
	constructed = tag&0x20 != 0
	i := 1
	if tag&0x1f == 0x1f { // high tag number
		for {
			if i >= len(b) || i > 5 {
				return
			}
			c := b[i]
			i++
			if c&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return
	}
	l := b[i]
	i++
	switch {
	case l < 0x80:
		length = int(l)
	case l == 0x80:
		if !constructed {
			return
		}
		indefinite = true
	default:
		n := int(l & 0x7f)
		if n > 4 || i+n > len(b) || b[i] == 0 {
			return // too long, truncated or non-minimal
		}
		for j := 0; j < n; j++ {
			length = length<<8 | int(b[i+j])
		}
		i += n
		if length < 0x80 || length > len(b)-i {
			return // non-minimal or past the end
		}
	}
	return tag, constructed, i, length, indefinite, true
}

// berElement re-encodes one BER element as definite-length.
func berElement(b []byte, depth int) (out, rest []byte, err error) {
	if depth > maxDepth {
		return nil, nil, fmt.Errorf("%w: nesting deeper than %d", errBER, maxDepth)
	}
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated", errBER)
	}
	// identifier
	i := 1
	if b[0]&0x1f == 0x1f {
		for {
			if i >= len(b) || i > 5 {
				return nil, nil, fmt.Errorf("%w: bad tag", errBER)
			}
			c := b[i]
			i++
			if c&0x80 == 0 {
				break
			}
		}
	}
	ident := b[:i]
	constructed := b[0]&0x20 != 0
	if i >= len(b) {
		return nil, nil, fmt.Errorf("%w: truncated length", errBER)
	}
	l := b[i]
	i++
	var body []byte
	switch {
	case l == 0x80:
		if !constructed {
			return nil, nil, fmt.Errorf("%w: indefinite length on primitive", errBER)
		}
		// Children until end-of-contents.
		var children []byte
		p := b[i:]
		for {
			if len(p) < 2 {
				return nil, nil, fmt.Errorf("%w: missing end-of-contents", errBER)
			}
			if p[0] == 0 && p[1] == 0 {
				p = p[2:]
				break
			}
			c, r, err := berElement(p, depth+1)
			if err != nil {
				return nil, nil, err
			}
			children = append(children, c...)
			p = r
		}
		out = encode(ident, constructed, children)
		return out, p, nil
	case l < 0x80:
		if int(l) > len(b)-i {
			return nil, nil, fmt.Errorf("%w: length past end", errBER)
		}
		body = b[i : i+int(l)]
		rest = b[i+int(l):]
	default:
		n := int(l & 0x7f)
		if n > 4 || i+n > len(b) {
			return nil, nil, fmt.Errorf("%w: bad length", errBER)
		}
		length := 0
		for j := 0; j < n; j++ {
			length = length<<8 | int(b[i+j])
		}
		i += n
		if length < 0 || length > len(b)-i {
			return nil, nil, fmt.Errorf("%w: length past end", errBER)
		}
		body = b[i : i+length]
		rest = b[i+length:]
	}
	if !constructed {
		return encode(ident, false, body), rest, nil
	}
	var children []byte
	p := body
	for len(p) > 0 {
		c, r, err := berElement(p, depth+1)
		if err != nil {
			return nil, nil, err
		}
		children = append(children, c...)
		p = r
	}
	return encode(ident, true, children), rest, nil
}

// encode writes identifier, definite length and body. Constructed OCTET
// STRINGs (tag 0x24) become primitive by concatenating their chunks.
func encode(ident []byte, constructed bool, body []byte) []byte {
	id := append([]byte(nil), ident...)
	if constructed && len(id) == 1 && id[0] == 0x24 {
		var cat []byte
		p := body
		for len(p) > 0 {
			_, _, h, l, _, ok := header(p)
			if !ok || h+l > len(p) {
				break
			}
			cat = append(cat, p[h:h+l]...)
			p = p[h+l:]
		}
		id[0] = 0x04
		body = cat
	}
	return append(appendLength(id, len(body)), body...)
}

func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}
