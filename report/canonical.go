package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// Canonical returns the report in its canonical form: the JSON
// Canonicalization Scheme (RFC 8785) — members sorted by name, no
// insignificant white space, fixed string and number forms. The same
// inputs give byte-identical output, so the form can be signed and
// compared, and a verifier in any language can reproduce it.
//
// The report is encoded in one pass over its Go value: struct fields in
// the order of their JSON names, map keys sorted, strings escaped as RFC
// 8785 says. The report holds no floating-point numbers.
func (r *Report) Canonical() ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	if err := encodeCanonical(&buf, reflect.ValueOf(r)); err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return buf.Bytes(), nil
}

// Canonicalize returns the canonical form of any JSON document (a report
// received from elsewhere), or an error if it is not JSON.
func Canonicalize(doc []byte) ([]byte, error) {
	return jcs.Transform(doc)
}

// field is a struct field as encoding/json names it.
type field struct {
	name      string
	index     []int
	omitEmpty bool
	// vocab is the member's closed set of values (vocabularies), if any.
	vocab *vocab
}

var fieldCache sync.Map // reflect.Type → []field, sorted by name (UTF-16 order = byte order for ASCII names)

func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			idx := append(slices.Clone(index), i)
			tag := f.Tag.Get("json")
			if f.Anonymous && tag == "" {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" {
				name = f.Name
			}
			fs = append(fs, field{name: name, index: idx, omitEmpty: strings.Contains(opts, "omitempty"), vocab: vocabOf(t, name)})
		}
	}
	walk(t, nil)
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.name, b.name) })
	fieldCache.Store(t, fs)
	return fs
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map, reflect.String:
		return v.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint() == 0
	}
	return false
}

var marshalerType = reflect.TypeFor[json.Marshaler]()

// maxSafeInt is the largest integer RFC 8785 (IEEE 754 doubles) keeps
// exact; larger ones would be written rounded by other implementations.
const maxSafeInt = 1<<53 - 1

func encodeCanonical(buf *bytes.Buffer, v reflect.Value) error {
	if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && v.Type().Implements(marshalerType) ||
		v.Kind() == reflect.Pointer && !v.IsNil() && v.Type().Implements(marshalerType) {
		b, err := v.Interface().(json.Marshaler).MarshalJSON()
		if err != nil {
			return err
		}
		c, err := jcs.Transform(b)
		if err != nil {
			return err
		}
		buf.Write(c)
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		return encodeCanonical(buf, v.Elem())
	case reflect.Struct:
		buf.WriteByte('{')
		first := true
		for _, f := range fieldsOf(v.Type()) {
			fv := v.FieldByIndex(f.index)
			if f.omitEmpty && isEmpty(fv) {
				continue
			}
			if !first {
				buf.WriteByte(',')
			}
			first = false
			writeString(buf, f.name)
			buf.WriteByte(':')
			if err := encodeCanonical(buf, fv); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
		buf.WriteByte('}')
	case reflect.Map:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("map key type %s", v.Type().Key())
		}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.SortFunc(keys, compareUTF16)
		buf.WriteByte('{')
		prev := ""
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			start := buf.Len()
			writeString(buf, k)
			// Keys that differ only in invalid UTF-8 are written alike
			// (U+FFFD); a document with the same name twice is not JSON.
			name := string(buf.Bytes()[start:])
			if i > 0 && name == prev {
				return fmt.Errorf("two keys are both written %s", name)
			}
			prev = name
			buf.WriteByte(':')
			if err := encodeCanonical(buf, v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key()))); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		buf.WriteByte('}')
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b, err := json.Marshal(v.Interface())
			if err != nil {
				return err
			}
			buf.Write(b) // base64: no characters that need escaping
			return nil
		}
		buf.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeCanonical(buf, v.Index(i)); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case reflect.String:
		writeString(buf, v.String())
	case reflect.Bool:
		buf.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if n > maxSafeInt || n < -maxSafeInt {
			return fmt.Errorf("integer %d is not exact in RFC 8785", n)
		}
		buf.WriteString(strconv.FormatInt(n, 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := v.Uint()
		if n > maxSafeInt {
			return fmt.Errorf("integer %d is not exact in RFC 8785", n)
		}
		buf.WriteString(strconv.FormatUint(n, 10))
	default:
		return fmt.Errorf("cannot encode %s canonically", v.Type())
	}
	return nil
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785
// sorts member names.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := utf16Units(ra), utf16Units(rb)
			for i := 0; i < len(ua) && i < len(ub); i++ {
				if ua[i] != ub[i] {
					return int(ua[i]) - int(ub[i])
				}
			}
			return len(ua) - len(ub)
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

func utf16Units(r rune) []uint16 {
	if r < 0x10000 {
		return []uint16{uint16(r)}
	}
	r -= 0x10000
	return []uint16{uint16(0xd800 + (r>>10)&0x3ff), uint16(0xdc00 + r&0x3ff)}
}

// writeString writes s as an RFC 8785 string: '"' and '\' escaped, the
// control characters as \b \t \n \f \r or \u00xx, everything else as is
// (invalid UTF-8 becomes U+FFFD, as encoding/json does).
func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			buf.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				buf.WriteByte('\\')
				buf.WriteByte(c)
			case '\b':
				buf.WriteString(`\b`)
			case '\t':
				buf.WriteString(`\t`)
			case '\n':
				buf.WriteString(`\n`)
			case '\f':
				buf.WriteString(`\f`)
			case '\r':
				buf.WriteString(`\r`)
			default:
				fmt.Fprintf(buf, `\u%04x`, c)
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			buf.WriteString(s[start:i])
			buf.WriteString("\uFFFD")
			i += n
			start = i
			continue
		}
		i += n
	}
	buf.WriteString(s[start:])
	buf.WriteByte('"')
}
