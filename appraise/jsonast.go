package appraise

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// maxJSONDepth bounds the nesting jsonValue accepts (a report nests 5
// deep).
const maxJSONDepth = 64

// jsonValue converts one JSON document to an ast.Value in a single pass:
// no intermediate map[string]any, which costs more than the policy's
// evaluation itself. It accepts exactly what encoding/json accepts (UTF-8
// JSON text, one value, white space around it) and gives the value
// ast.ValueFromReader gives; FuzzJSONValue holds it to that. Duplicate
// object keys keep the last value, as encoding/json does.
func jsonValue(doc []byte) (ast.Value, error) {
	p := jsonParser{b: doc}
	p.space()
	t, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.b) {
		return nil, p.errorf("data after the JSON value")
	}
	return t.Value, nil
}

type jsonParser struct {
	b []byte
	i int
	// kvs and ts are scratch stacks of the objects' pairs and the arrays'
	// elements being read: ast.NewObject copies its pairs, and arrays get
	// an exact-size copy, so nested values share one growing buffer.
	kvs [][2]*ast.Term
	ts  []*ast.Term
}

var errJSONDepth = fmt.Errorf("JSON nests deeper than %d", maxJSONDepth)

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("JSON offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (*ast.Term, error) {
	if depth > maxJSONDepth {
		return nil, errJSONDepth
	}
	if p.i >= len(p.b) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == 't':
		return p.literal("true", ast.InternedTerm(true))
	case c == 'f':
		return p.literal("false", ast.InternedTerm(false))
	case c == 'n':
		return p.literal("null", ast.NullTerm())
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, p.errorf("unexpected %q", p.b[p.i])
}

func (p *jsonParser) literal(word string, t *ast.Term) (*ast.Term, error) {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal")
	}
	p.i += len(word)
	return t, nil
}

// key reads an object member's key and the ':' after it, and leaves p at
// the value.
func (p *jsonParser) key() (*ast.Term, error) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, p.errorf("object key expected")
	}
	k, err := p.str()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return nil, p.errorf("':' expected")
	}
	p.i++
	p.space()
	return k, nil
}

func (p *jsonParser) object(depth int) (*ast.Term, error) {
	p.i++ // {
	p.space()
	base := len(p.kvs)
	defer func() { p.kvs = p.kvs[:base] }()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return ast.NewTerm(ast.NewObject()), nil
	}
	for {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.kvs = append(p.kvs, [2]*ast.Term{k, v})
		p.space()
		if p.i >= len(p.b) {
			return nil, p.errorf("unexpected end in object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.space()
			continue
		case '}':
			p.i++
		default:
			return nil, p.errorf("',' or '}' expected")
		}
		break
	}
	return ast.NewTerm(objectOf(p.kvs[base:])), nil
}

// objectOf builds an object from its pairs in document order. Duplicate
// keys (never in a canonical report, whose keys are sorted) keep the last
// value, as encoding/json does.
func objectOf(kvs [][2]*ast.Term) ast.Object {
	sorted := true
	for i := 1; i < len(kvs) && sorted; i++ {
		sorted = kvs[i-1][0].Value.(ast.String) < kvs[i][0].Value.(ast.String)
	}
	if sorted {
		return ast.NewObject(kvs...)
	}
	out := make([][2]*ast.Term, 0, len(kvs))
	seen := make(map[ast.String]int, len(kvs))
	for _, kv := range kvs {
		k := kv[0].Value.(ast.String)
		if j, ok := seen[k]; ok {
			out[j][1] = kv[1]
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	return ast.NewObject(out...)
}

func (p *jsonParser) array(depth int) (*ast.Term, error) {
	p.i++ // [
	p.space()
	base := len(p.ts)
	defer func() { p.ts = p.ts[:base] }()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return ast.NewTerm(ast.NewArray()), nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.ts = append(p.ts, v)
		p.space()
		if p.i >= len(p.b) {
			return nil, p.errorf("unexpected end in array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.space()
			continue
		case ']':
			p.i++
		default:
			return nil, p.errorf("',' or ']' expected")
		}
		break
	}
	ts := make([]*ast.Term, len(p.ts)-base)
	copy(ts, p.ts[base:])
	return ast.NewTerm(ast.NewArray(ts...)), nil
}

// Terms of short identifier-like strings — the report's member names,
// status words, module and template names — are shared between
// conversions (terms are immutable), up to maxInterned of them: a report
// has hundreds of them, and each costs three allocations otherwise.
const (
	maxInterned    = 4096
	maxInternedLen = 40
)

// interned is the shared terms, copied on write: reads take no lock.
var (
	interned   atomic.Pointer[map[string]*ast.Term]
	internedMu sync.Mutex // serializes writers
)

// stringTerm returns the term of the string b, shared when it is short
// and made of [a-z0-9_.-] only.
func stringTerm(b []byte) *ast.Term {
	if len(b) > maxInternedLen || !identLike(b) {
		return ast.StringTerm(string(b))
	}
	var m map[string]*ast.Term
	if mp := interned.Load(); mp != nil {
		m = *mp
		if t, ok := m[string(b)]; ok { // no allocation for the lookup
			return t
		}
	}
	t := ast.StringTerm(string(b))
	if len(m) < maxInterned {
		internedMu.Lock()
		old := interned.Load()
		n := map[string]*ast.Term{}
		if old != nil {
			n = make(map[string]*ast.Term, len(*old)+1)
			for k, v := range *old {
				n[k] = v
			}
		}
		if len(n) < maxInterned {
			n[string(t.Value.(ast.String))] = t
			interned.Store(&n)
		}
		internedMu.Unlock()
	}
	return t
}

func identLike(s []byte) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// str reads a string at p.i (its opening quote).
func (p *jsonParser) str() (*ast.Term, error) {
	start := p.i
	p.i++
	plain := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if plain {
				return stringTerm(p.b[start+1 : p.i-1]), nil
			}
			var s string
			if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
				return nil, p.errorf("string: %v", err)
			}
			return ast.StringTerm(s), nil
		case c == '\\':
			plain = false
			p.i += 2
		case c < 0x20:
			return nil, p.errorf("control character in string")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n == 1 {
				// encoding/json replaces invalid UTF-8 with U+FFFD.
				plain = false
			}
			p.i += n
		}
	}
	return nil, p.errorf("unterminated string")
}

// number reads a JSON number, checked against the grammar.
func (p *jsonParser) number() (*ast.Term, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, p.errorf("invalid number")
	}
	integer := true
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		integer = false
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		integer = false
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	s := string(p.b[start:p.i])
	if integer {
		if t := ast.InternedIntNumberTermFromString(s); t != nil {
			return t, nil
		}
	}
	n, err := ast.NumberChecked(s)
	if err != nil {
		return nil, p.errorf("%v", err)
	}
	return ast.NewTerm(n), nil
}

// maxSectionCache bounds the report section cache.
const maxSectionCache = 4096

// sectionCache keeps the policy values of report sections seen before,
// by the SHA-256 of their JSON: from round to round a host's modules,
// Secure Boot and measured boot sections rarely change, and hosts built
// alike share them, so most of a report is converted once. Values are
// shared and never changed (OPA does not change its input).
type sectionCache struct {
	mu sync.Mutex
	m  map[[32]byte]*ast.Term
}

// reportValue is jsonValue of a report document (a JSON object already
// verified by the report decoder), converting only the top-level members
// the cache does not hold.
func (c *sectionCache) reportValue(doc []byte) (ast.Value, error) {
	p := jsonParser{b: doc}
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return jsonValue(doc)
	}
	p.i++
	var kvs [][2]*ast.Term
	for {
		p.space()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			break
		}
		if len(kvs) > 0 {
			if p.i >= len(p.b) || p.b[p.i] != ',' {
				return nil, p.errorf("',' or '}' expected")
			}
			p.i++
			p.space()
		}
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		start := p.i
		if err := p.skip(1); err != nil {
			return nil, err
		}
		raw := p.b[start:p.i]
		key := sha256.Sum256(raw)
		c.mu.Lock()
		v, ok := c.m[key]
		c.mu.Unlock()
		if !ok {
			if v, err = jsonTerm(raw); err != nil {
				return nil, err
			}
			c.mu.Lock()
			if c.m == nil || len(c.m) >= maxSectionCache {
				c.m = make(map[[32]byte]*ast.Term, 256)
			}
			c.m[key] = v
			c.mu.Unlock()
		}
		kvs = append(kvs, [2]*ast.Term{k, v})
	}
	p.space()
	if p.i != len(p.b) {
		return nil, p.errorf("data after the JSON value")
	}
	return objectOf(kvs), nil
}

func jsonTerm(doc []byte) (*ast.Term, error) {
	v, err := jsonValue(doc)
	if err != nil {
		return nil, err
	}
	return ast.NewTerm(v), nil
}

// skip moves past one JSON value without converting it. It checks the
// structure only as far as finding the value's end needs; the value
// itself is converted (and checked) by jsonValue when it is not cached.
func (p *jsonParser) skip(depth int) error {
	if depth > maxJSONDepth {
		return errJSONDepth
	}
	if p.i >= len(p.b) {
		return p.errorf("unexpected end")
	}
	switch c := p.b[p.i]; c {
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		p.i++
		for {
			p.space()
			if p.i >= len(p.b) {
				return p.errorf("unexpected end")
			}
			switch p.b[p.i] {
			case end:
				p.i++
				return nil
			case ',', ':':
				p.i++
				continue
			case '}', ']':
				return p.errorf("unexpected %q", p.b[p.i])
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
		}
	case '"':
		for p.i++; p.i < len(p.b); p.i++ {
			switch p.b[p.i] {
			case '\\':
				p.i++
			case '"':
				p.i++
				return nil
			}
		}
		return p.errorf("unterminated string")
	default:
		start := p.i
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r', ':':
				if p.i == start {
					return p.errorf("unexpected %q", p.b[p.i])
				}
				return nil
			}
			p.i++
		}
		if p.i == start {
			return p.errorf("unexpected end")
		}
		return nil
	}
}
