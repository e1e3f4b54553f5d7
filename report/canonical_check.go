package report

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"
)

// maxCanonicalDepth bounds the nesting of arrays and objects IsCanonical
// accepts: encoding/json's and the jcs package's limit.
const maxCanonicalDepth = 10000

// IsCanonical returns nil when b is exactly one JSON value in the JSON
// Canonicalization Scheme (RFC 8785): no insignificant white space,
// object members in strictly increasing order of their names' UTF-16
// code units (so no name twice), strings in valid UTF-8 with only the
// escapes RFC 8785 writes (\" \\ \b \t \n \f \r, \u00xx in lowercase for
// the other control characters, nothing else escaped), numbers in their
// ECMAScript shortest form, and nothing after the value. It reads b once
// and allocates only for its error.
func IsCanonical(b []byte) error {
	c := canonChecker{b: b}
	if len(b) == 0 {
		return errors.New("not canonical JSON (RFC 8785): empty")
	}
	if err := c.value(0); err != nil {
		return err
	}
	if c.i != len(b) {
		return c.fail("data after the value")
	}
	return nil
}

type canonChecker struct {
	b []byte
	i int
}

func (c *canonChecker) fail(what string) error {
	return fmt.Errorf("not canonical JSON (RFC 8785): byte %d: %s", c.i, what)
}

func (c *canonChecker) value(depth int) error {
	if c.i >= len(c.b) {
		return c.fail("unexpected end")
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		if depth >= maxCanonicalDepth {
			return c.fail("nested too deeply")
		}
		return c.object(depth + 1)
	case ch == '[':
		if depth >= maxCanonicalDepth {
			return c.fail("nested too deeply")
		}
		return c.array(depth + 1)
	case ch == '"':
		_, err := c.str()
		return err
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
		return c.fail("white space")
	}
	return c.fail(fmt.Sprintf("unexpected %q", c.b[c.i]))
}

func (c *canonChecker) literal(s string) error {
	if len(c.b)-c.i < len(s) || string(c.b[c.i:c.i+len(s)]) != s {
		return c.fail("not a literal")
	}
	c.i += len(s)
	return nil
}

func (c *canonChecker) object(depth int) error {
	c.i++ // '{'
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return nil
	}
	prevStart, prevEnd := -1, -1
	for {
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return c.fail("want a member name")
		}
		start := c.i + 1
		end, err := c.str()
		if err != nil {
			return err
		}
		if prevStart >= 0 && compareEscapedUTF16(c.b[prevStart:prevEnd], c.b[start:end]) >= 0 {
			c.i = start - 1
			return c.fail("member name not after the previous one in UTF-16 order (out of order or repeated)")
		}
		prevStart, prevEnd = start, end
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return c.fail("want ':'")
		}
		c.i++
		if err := c.value(depth); err != nil {
			return err
		}
		if c.i >= len(c.b) {
			return c.fail("unexpected end")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return nil
		default:
			return c.fail("want ',' or '}'")
		}
	}
}

func (c *canonChecker) array(depth int) error {
	c.i++ // '['
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return nil
	}
	for {
		if err := c.value(depth); err != nil {
			return err
		}
		if c.i >= len(c.b) {
			return c.fail("unexpected end")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case ']':
			c.i++
			return nil
		default:
			return c.fail("want ',' or ']'")
		}
	}
}

// plain marks the bytes a canonical string holds as they are: printable
// ASCII but '"' and '\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str checks the string at c.i (its opening quote) and returns the
// offset of its closing quote; c.i moves past it.
func (c *canonChecker) str() (int, error) {
	b := c.b
	i := c.i + 1
	for {
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			c.i = i
			return 0, c.fail("unterminated string")
		}
		switch ch := b[i]; {
		case ch == '"':
			c.i = i + 1
			return i, nil
		case ch == '\\':
			if i+1 >= len(b) {
				c.i = i
				return 0, c.fail("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', 'b', 't', 'n', 'f', 'r':
				i += 2
			case 'u':
				// Only the control characters without a short form.
				if len(b)-i < 6 || b[i+2] != '0' || b[i+3] != '0' || (b[i+4] != '0' && b[i+4] != '1') ||
					(b[i+5] < '0' || b[i+5] > '9') && (b[i+5] < 'a' || b[i+5] > 'f') {
					c.i = i
					return 0, c.fail(`\u escape of a character written as itself or with a short escape, or not lowercase`)
				}
				switch b[i+4] - '0' {
				case 0:
					if x := b[i+5]; x == '8' || x == '9' || x == 'a' || x == 'c' || x == 'd' {
						c.i = i
						return 0, c.fail(`\u escape of a character with a short escape`)
					}
				}
				i += 6
			default:
				c.i = i
				return 0, c.fail(fmt.Sprintf("escape \\%c", b[i+1]))
			}
		case ch < 0x20:
			c.i = i
			return 0, c.fail("unescaped control character")
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				c.i = i
				return 0, c.fail("invalid UTF-8")
			}
			i += n
		}
	}
}

// number checks that the number at c.i is written as ECMAScript writes
// its value (Number.prototype.toString, RFC 8785 section 3.2.2.3).
func (c *canonChecker) number() error {
	b := c.b
	start, i := c.i, c.i
	if b[i] == '-' {
		i++
	}
	digits := i
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		c.i = i
		return c.fail("malformed number")
	}
	intDigits := i - digits
	simple := true
	if i < len(b) && b[i] == '.' {
		simple = false
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			c.i = i
			return c.fail("malformed number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		simple = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			c.i = i
			return c.fail("malformed number")
		}
	}
	s := b[start:i]
	c.i = start
	if simple && intDigits <= 15 {
		// An integer of at most 15 digits is exact in a double and
		// ECMAScript writes it in full; only "-0" is written otherwise.
		if string(s) == "-0" {
			return c.fail(`"-0" is written "0"`)
		}
		c.i = i
		return nil
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		return c.fail(fmt.Sprintf("number %s: %v", s, err))
	}
	var buf [32]byte
	if string(appendES(buf[:0], f)) != string(s) {
		return c.fail(fmt.Sprintf("number %s is written %s", s, appendES(buf[:0], f)))
	}
	c.i = i
	return nil
}

// appendES appends f as ECMAScript's Number.prototype.toString writes a
// finite double: the shortest round-tripping digits, in positional form
// for 1e-6 ≤ |f| < 1e21 and otherwise as d.ddde±x.
func appendES(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	if f >= 1e-6 && f < 1e21 {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'e', -1, 64)
	// Go writes at least two exponent digits ("1e+07"), ECMAScript the
	// fewest ("1e+7").
	for k := n; k < len(dst); k++ {
		if dst[k] == 'e' && k+2 < len(dst)-1 && dst[k+2] == '0' {
			return append(dst[:k+2], dst[k+3:]...)
		}
	}
	return dst
}

// compareEscapedUTF16 compares two canonical string bodies (between the
// quotes, escapes as IsCanonical allows them) by the UTF-16 code units
// of what they denote.
func compareEscapedUTF16(a, b []byte) int {
	for len(a) > 0 && len(b) > 0 {
		ra, na := nextEscapedRune(a)
		rb, nb := nextEscapedRune(b)
		if ra != rb {
			ua, ub := firstUTF16(ra), firstUTF16(rb)
			if ua != ub {
				return int(ua) - int(ub)
			}
			return int(ra) - int(rb)
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

// firstUTF16 is the first UTF-16 code unit of r.
func firstUTF16(r rune) rune {
	if r < 0x10000 {
		return r
	}
	return 0xd800 + (r-0x10000)>>10
}

// nextEscapedRune decodes the first character of a canonical string
// body and returns it and its length in s.
func nextEscapedRune(s []byte) (rune, int) {
	if s[0] < utf8.RuneSelf && s[0] != '\\' {
		return rune(s[0]), 1
	}
	if s[0] != '\\' {
		return utf8.DecodeRune(s)
	}
	if len(s) < 2 {
		return utf8.RuneError, len(s)
	}
	switch s[1] {
	case 'b':
		return '\b', 2
	case 't':
		return '\t', 2
	case 'n':
		return '\n', 2
	case 'f':
		return '\f', 2
	case 'r':
		return '\r', 2
	case 'u':
		if len(s) >= 6 {
			v, err := strconv.ParseUint(string(s[2:6]), 16, 16)
			if err == nil {
				return rune(v), 6
			}
		}
		return utf8.RuneError, len(s)
	}
	return rune(s[1]), 2 // '"' or '\'
}

// ParseReport decodes a report that must be exactly the canonical form
// Report.Canonical writes, of a report this package can write. It
// refuses, with a *ParseError that names the claim:
//   - bytes that are not canonical JSON (RFC 8785, IsCanonical);
//   - a member no field has (in its exact case), at every level: the
//     report is closed;
//   - a member Canonical writes that is missing, and an omitempty member
//     holding its empty value;
//   - a value of the wrong JSON type, and an integer that does not fit
//     its field or is not exact in a double;
//   - null anywhere but a nullable claim (a pointer field: the sysctls,
//     ipe, evm, sysrq). An absent or null section, list or map is
//     malformed, never "nothing measured": Canonical always writes every
//     section, and a list with no items as [];
//   - a value outside its claim's vocabulary (Vocabularies): every
//     status is ok, unavailable or error, lockdown one of the kernel's
//     modes or unknown, version exactly Version, and so on.
//
// So the accepted bytes are Canonical() of the report returned, and
// they validate against the published schema. It decodes in one pass
// after IsCanonical, without re-encoding, and only the types
// reportTypesOK accepts.
func ParseReport(b []byte) (*Report, error) {
	if err := IsCanonical(b); err != nil {
		return nil, err
	}
	if err := reportTypesOK(); err != nil {
		return nil, err
	}
	var r Report
	d := reportDecoder{b: b}
	if err := d.value(reflect.ValueOf(&r).Elem()); err != nil {
		return nil, err
	}
	if d.i != len(b) {
		return nil, d.fail("data after the report")
	}
	return &r, nil
}

// ParseError is ParseReport's refusal of a canonical document that is
// not a report it writes.
type ParseError struct {
	// Path is the claim at fault: members joined by ".", list items as
	// "[3]", map values as `["key"]` ("modules.loaded[3].reasons[0]");
	// "" for the report itself.
	Path string
	// Offset is the byte of the document where the fault was found.
	Offset int
	// Problem says what is wrong.
	Problem string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("byte %d: %s", e.Offset, e.Problem)
	}
	return fmt.Sprintf("%s: byte %d: %s", e.Path, e.Offset, e.Problem)
}

// within prefixes err's path with seg: a member name, "[i]" or `["k"]`.
func within(err error, seg string) error {
	var pe *ParseError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.Path == "" || pe.Path[0] == '[':
		pe.Path = seg + pe.Path
	default:
		pe.Path = seg + "." + pe.Path
	}
	return pe
}

// reportDecoder decodes canonical JSON (IsCanonical has accepted it)
// into the report's types, by the field lists the encoder writes them
// with. Any input still gives an error, never a panic.
type reportDecoder struct {
	b []byte
	i int
	// vocab is the vocabulary of the claim being decoded: its strings (a
	// string, a list's items, a map's values) must be in it.
	vocab *vocab
}

func (d *reportDecoder) fail(what string) error {
	return &ParseError{Offset: d.i, Problem: what}
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

// hasCodec reports whether t (or *t) encodes or decodes itself, which
// reportDecoder does not reproduce.
func hasCodec(t reflect.Type) bool {
	for _, it := range []reflect.Type{marshalerType, unmarshalerType, textMarshalerType, textUnmarshalerType} {
		if t.Implements(it) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(it) {
			return true
		}
	}
	return false
}

// reportTypesOK checks once that every type in a Report is one
// reportDecoder decodes as the encoder writes it, and that every
// vocabulary names a member of strings (or of lists or maps of them).
var reportTypesOK = sync.OnceValue(func() error {
	if err := decodable(reflect.TypeFor[Report](), map[reflect.Type]bool{}); err != nil {
		return err
	}
	for t, members := range vocabularies {
		for name, v := range members {
			f, ok := memberOf(t, name)
			if !ok {
				return fmt.Errorf("vocabulary of %s.%s: no such member", t, name)
			}
			ft := t.FieldByIndex(f.index).Type
			if k := ft.Kind(); k == reflect.Slice || k == reflect.Map {
				ft = ft.Elem()
			}
			if ft.Kind() != reflect.String || f.omitEmpty {
				return fmt.Errorf("vocabulary of %s.%s: a member of %s (omitempty %v)", t, name, ft, f.omitEmpty)
			}
			if v.match == nil && len(v.values) == 0 {
				return fmt.Errorf("vocabulary of %s.%s: empty", t, name)
			}
		}
	}
	return nil
})

// memberOf finds the member of struct t (its own field, or an embedded
// one's) by JSON name.
func memberOf(t reflect.Type, name string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

func decodable(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if hasCodec(t) {
		return fmt.Errorf("cannot decode %s canonically: it has its own JSON or text form", t)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return decodable(t.Elem(), seen)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return fmt.Errorf("cannot decode %s canonically", t)
		}
		return decodable(t.Elem(), seen)
	case reflect.Map:
		if t.Key().Kind() != reflect.String || hasCodec(t.Key()) {
			return fmt.Errorf("cannot decode %s canonically", t)
		}
		return decodable(t.Elem(), seen)
	case reflect.Struct:
		for _, f := range fieldsOf(t) {
			ft := t.FieldByIndex(f.index)
			if err := decodable(ft.Type, seen); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
		return nil
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return nil
	}
	return fmt.Errorf("cannot decode %s canonically", t)
}

func (d *reportDecoder) isNull() bool {
	if string(d.b[d.i:min(d.i+4, len(d.b))]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// jsonKinds names the JSON type a Go kind is written as.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	}
	return "an integer"
}

func (d *reportDecoder) value(v reflect.Value) error {
	if d.i >= len(d.b) {
		return d.fail("unexpected end")
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		// The only nullable claims.
		if d.isNull() {
			return nil
		}
		p := reflect.New(t.Elem())
		if err := d.value(p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if d.b[d.i] == 'n' {
		return d.fail("null, want " + jsonKind(t) + " (only a nullable claim may be null; Report.Canonical writes every section, and [] or {} for none)")
	}
	switch t.Kind() {
	case reflect.Struct:
		return d.object(v)
	case reflect.Map:
		return d.mapValue(v)
	case reflect.Slice:
		return d.slice(v)
	case reflect.String:
		if d.vocab != nil && d.vocab.match == nil {
			// A closed claim takes its vocabulary's string, without a
			// copy of the document's.
			if s, ok := d.vocabStr(); ok {
				v.SetString(s)
				return nil
			}
		}
		start := d.i
		s, err := d.str()
		if err != nil {
			return err
		}
		if d.vocab != nil && !d.vocab.accepts(s) {
			d.i = start
			return d.fail(fmt.Sprintf("%s %s", quoteBounded(s), d.vocab.describe()))
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		switch {
		case d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "true":
			v.SetBool(true)
			d.i += 4
		case d.i+5 <= len(d.b) && string(d.b[d.i:d.i+5]) == "false":
			d.i += 5
		default:
			return d.fail("want true or false")
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		neg := d.b[d.i] == '-'
		if neg {
			d.i++
		}
		u, err := d.uint()
		if err != nil {
			return err
		}
		n := int64(u)
		if neg {
			n = -n
		}
		if u > maxSafeInt || v.OverflowInt(n) || neg && u == 0 {
			return d.fail(fmt.Sprintf("integer out of range for %s", t))
		}
		v.SetInt(n)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := d.uint()
		if err != nil {
			return err
		}
		if u > maxSafeInt || v.OverflowUint(u) {
			return d.fail(fmt.Sprintf("integer out of range for %s", t))
		}
		v.SetUint(u)
		return nil
	}
	return fmt.Errorf("cannot decode %s canonically", t)
}

// memberSeg is a member name as a path segment: itself when it is a
// plain name, else quoted as a map key.
func memberSeg(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c >= 'A' && c <= 'Z') {
			return "[" + quoteBounded(name) + "]"
		}
	}
	if name == "" {
		return `[""]`
	}
	return name
}

// quoteBounded quotes s for an error, cut to 64 bytes.
func quoteBounded(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q…", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

// uint reads a canonical unsigned integer, at most maxSafeInt+1 or an
// error.
func (d *reportDecoder) uint() (uint64, error) {
	b, start := d.b, d.i
	var u uint64
	for d.i < len(b) && b[d.i] >= '0' && b[d.i] <= '9' {
		if u <= maxSafeInt {
			u = u*10 + uint64(b[d.i]-'0')
		}
		d.i++
	}
	switch {
	case d.i == start:
		return 0, d.fail("want an integer")
	case b[start] == '0' && d.i-start > 1:
		return 0, d.fail("leading zero")
	case d.i < len(b) && (b[d.i] == '.' || b[d.i] == 'e' || b[d.i] == 'E'):
		return 0, d.fail("want an integer")
	}
	return min(u, maxSafeInt+1), nil
}

func (d *reportDecoder) object(v reflect.Value) error {
	if d.b[d.i] != '{' {
		return d.fail("want an object")
	}
	d.i++
	fields := fieldsOf(v.Type())
	next := 0
	// missing fails unless every field before name (all if name is "")
	// is one the encoder omits when empty.
	missing := func(name []byte, all bool) error {
		for ; next < len(fields) && (all || fields[next].name < string(name)); next++ {
			if !fields[next].omitEmpty {
				return within(d.fail("missing (Report.Canonical always writes it)"), fields[next].name)
			}
		}
		return nil
	}
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return missing(nil, true)
	}
	for {
		start := d.i
		name, err := d.memberName()
		if err != nil {
			return err
		}
		if err := missing(name, false); err != nil {
			return err
		}
		if next == len(fields) || fields[next].name != string(name) {
			d.i = start
			return within(d.fail("unknown member (the report is closed)"), memberSeg(string(name)))
		}
		f := fields[next]
		next++
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return d.fail("want ':'")
		}
		d.i++
		fv := v.FieldByIndex(f.index)
		vstart := d.i
		d.vocab = f.vocab
		err = d.value(fv)
		d.vocab = nil
		if err != nil {
			return within(err, f.name)
		}
		if f.omitEmpty && isEmpty(fv) {
			d.i = vstart
			return within(d.fail("has its empty value (Report.Canonical omits it)"), f.name)
		}
		if d.i >= len(d.b) {
			return d.fail("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return missing(nil, true)
		default:
			return d.fail("want ',' or '}'")
		}
	}
}

func (d *reportDecoder) mapValue(v reflect.Value) error {
	t := v.Type()
	if d.b[d.i] != '{' {
		return d.fail("want an object")
	}
	d.i++
	m := reflect.MakeMap(t)
	v.Set(m)
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return nil
	}
	ev := reflect.New(t.Elem()).Elem()
	zero := reflect.Zero(t.Elem())
	for {
		k, err := d.str()
		if err != nil {
			return err
		}
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return d.fail("want ':'")
		}
		d.i++
		ev.Set(zero)
		if err := d.value(ev); err != nil {
			return within(err, fmt.Sprintf("[%s]", quoteBounded(k)))
		}
		m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		if d.i >= len(d.b) {
			return d.fail("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.fail("want ',' or '}'")
		}
	}
}

func (d *reportDecoder) slice(v reflect.Value) error {
	t := v.Type()
	if d.b[d.i] != '[' {
		return d.fail("want an array")
	}
	d.i++
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		v.Set(reflect.MakeSlice(t, 0, 0))
		return nil
	}
	s := reflect.MakeSlice(t, 4, 4)
	for n := 0; ; n++ {
		if n == s.Len() {
			grown := reflect.MakeSlice(t, 2*n, 2*n)
			reflect.Copy(grown, s)
			s = grown
		}
		if err := d.value(s.Index(n)); err != nil {
			return within(err, fmt.Sprintf("[%d]", n))
		}
		if d.i >= len(d.b) {
			return d.fail("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			v.Set(s.Slice(0, n+1))
			return nil
		default:
			return d.fail("want ',' or ']'")
		}
	}
}

// memberName reads a member name: the document's bytes when it has no
// escape (every field's name), else what it denotes.
func (d *reportDecoder) memberName() ([]byte, error) {
	b := d.b
	if d.i >= len(b) || b[d.i] != '"' {
		return nil, d.fail("want a string")
	}
	start := d.i + 1
	i := start
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	if i < len(b) && b[i] == '"' {
		d.i = i + 1
		return b[start:i], nil
	}
	s, err := d.str()
	return []byte(s), err
}

// vocabStr reads a string without escapes that is in d.vocab's values
// and returns the value; otherwise it reads nothing and returns false.
func (d *reportDecoder) vocabStr() (string, bool) {
	b := d.b
	if d.i >= len(b) || b[d.i] != '"' {
		return "", false
	}
	start := d.i + 1
	i := start
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	if i >= len(b) || b[i] != '"' {
		return "", false
	}
	raw := b[start:i]
	vals := d.vocab.values
	lo, hi := 0, len(vals)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if vals[m] < string(raw) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(vals) && vals[lo] == string(raw) {
		d.i = i + 1
		return vals[lo], true
	}
	return "", false
}

// str reads a canonical string and returns what it denotes.
func (d *reportDecoder) str() (string, error) {
	b := d.b
	if d.i >= len(b) || b[d.i] != '"' {
		return "", d.fail("want a string")
	}
	start := d.i + 1
	i := start
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	if i < len(b) && b[i] == '"' {
		d.i = i + 1
		return string(b[start:i]), nil
	}
	out := make([]byte, 0, i-start+16)
	out = append(out, b[start:i]...)
	for i < len(b) && b[i] != '"' {
		if b[i] != '\\' {
			out = append(out, b[i])
			i++
			continue
		}
		r, n := nextEscapedRune(b[i:])
		if r == utf8.RuneError || r >= utf8.RuneSelf {
			d.i = i
			return "", d.fail("bad escape")
		}
		out = append(out, byte(r))
		i += n
	}
	if i >= len(b) {
		d.i = i
		return "", d.fail("unterminated string")
	}
	d.i = i + 1
	return string(out), nil
}
