package codepolicy

import (
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
)

// Distinguished names.
//
// A policy names issuers and subjects as text ("CN=Foo, O=Bar"). Vigil parses
// that text into (attribute type OID, value) pairs and compares the pairs with
// the certificate's own RDN attributes, parsed from the DER:
//
//   - the comparison is of multisets: order and RDN grouping do not matter,
//     but every attribute must be present on both sides (no subset matches);
//   - types are names (case-insensitive: CN, O, OU, C, L, ST or S, ...) or
//     dotted OIDs, optionally written "OID.2.5.4.3";
//   - values are case-sensitive for allow rules (an exact match, so that an
//     allow rule never admits more than it names); leading and trailing
//     white space is ignored and internal runs of white space compare as one
//     space, on both sides;
//   - revocation issuers compare as RFC 5280 section 7.1 requires (LDAP
//     StringPrep, RFC 4518: case-insensitive and white-space folded), so
//     that a CRL or revocation whose issuer differs only in letter case
//     still revokes (see foldedKey);
//   - non-string values compare by their DER, written "#hex" in the text.

// dnAttrTypes maps attribute type names to OIDs; the first name is the one
// Vigil writes.
var dnAttrTypes = []struct {
	names []string
	oid   string
}{
	{[]string{"CN", "commonName"}, "2.5.4.3"},
	{[]string{"SN", "surname"}, "2.5.4.4"},
	{[]string{"SERIALNUMBER", "serialNumber"}, "2.5.4.5"},
	{[]string{"C", "countryName"}, "2.5.4.6"},
	{[]string{"L", "localityName"}, "2.5.4.7"},
	{[]string{"ST", "S", "stateOrProvinceName"}, "2.5.4.8"},
	{[]string{"STREET", "streetAddress"}, "2.5.4.9"},
	{[]string{"O", "organizationName"}, "2.5.4.10"},
	{[]string{"OU", "organizationalUnitName"}, "2.5.4.11"},
	{[]string{"title", "T"}, "2.5.4.12"},
	{[]string{"businessCategory"}, "2.5.4.15"},
	{[]string{"postalCode"}, "2.5.4.17"},
	{[]string{"GN", "givenName", "G"}, "2.5.4.42"},
	{[]string{"initials", "I"}, "2.5.4.43"},
	{[]string{"generationQualifier"}, "2.5.4.44"},
	{[]string{"dnQualifier"}, "2.5.4.46"},
	{[]string{"pseudonym"}, "2.5.4.65"},
	{[]string{"organizationIdentifier"}, "2.5.4.97"},
	{[]string{"DC", "domainComponent"}, "0.9.2342.19200300.100.1.25"},
	{[]string{"UID", "userId"}, "0.9.2342.19200300.100.1.1"},
	{[]string{"emailAddress", "E", "EMAIL"}, "1.2.840.113549.1.9.1"},
	{[]string{"jurisdictionC", "jurisdictionCountryName"}, "1.3.6.1.4.1.311.60.2.1.3"},
	{[]string{"jurisdictionST", "jurisdictionStateOrProvinceName"}, "1.3.6.1.4.1.311.60.2.1.2"},
	{[]string{"jurisdictionL", "jurisdictionLocalityName"}, "1.3.6.1.4.1.311.60.2.1.1"},
}

var (
	dnTypeByName = map[string]string{} // lower-case name → OID
	dnNameByOID  = map[string]string{} // OID → preferred name
)

func init() {
	for _, t := range dnAttrTypes {
		for _, n := range t.names {
			dnTypeByName[strings.ToLower(n)] = t.oid
		}
		dnNameByOID[t.oid] = t.names[0]
	}
}

// dnAttr is one attribute in canonical form.
type dnAttr struct {
	oid string // dotted
	val string // normalised string value, or "#" + lower-case hex DER for a non-string value
	str bool   // val is a string value (not "#" DER)
}

// dnKey is the canonical, order-free form of a name: equal names have equal keys.
type dnKey string

func makeKey(attrs []dnAttr) dnKey {
	sort.Slice(attrs, func(i, j int) bool {
		if attrs[i].oid != attrs[j].oid {
			return attrs[i].oid < attrs[j].oid
		}
		return attrs[i].val < attrs[j].val
	})
	var b strings.Builder
	for _, a := range attrs {
		b.WriteString(a.oid)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(len(a.val)))
		b.WriteByte(':')
		b.WriteString(a.val)
		b.WriteByte(';')
	}
	return dnKey(b.String())
}

// normValue trims white space and collapses internal runs to one space.
func normValue(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || (c >= '\t' && c <= '\r') || (c == ' ' && (i == 0 || i == len(s)-1 || s[i-1] == ' ')) {
			return strings.Join(strings.Fields(s), " ")
		}
	}
	return s
}

// parseDN parses a textual distinguished name (RFC 4514 style, with the
// tolerances described above) into its canonical key.
func parseDN(s string) (dnKey, error) {
	attrs, err := parseDNAttrs(s)
	if err != nil {
		return "", err
	}
	return makeKey(attrs), nil
}

// parseDNFolded parses a textual name into its RFC 5280 comparison key
// (foldedKey), the form revocation issuers are matched in.
func parseDNFolded(s string) (dnKey, error) {
	attrs, err := parseDNAttrs(s)
	if err != nil {
		return "", err
	}
	return foldedKey(attrs), nil
}

// foldedKey is the key of attrs under RFC 5280 section 7.1 name
// comparison: the string values (PrintableString, UTF8String and the other
// directory strings) are case folded (every rune mapped to the smallest of
// its Unicode simple case folding orbit, the equivalence strings.EqualFold
// uses: a superset of OpenSSL's ASCII-only X509_NAME canonical form) after
// the white-space folding every key has (RFC 4518 insignificant space
// handling). Non-string values still compare by DER.
func foldedKey(attrs []dnAttr) dnKey {
	f := make([]dnAttr, len(attrs))
	for i, a := range attrs {
		if a.str {
			a.val = foldCase(a.val)
		}
		f[i] = a
	}
	return makeKey(f)
}

// foldCase maps every rune to the smallest rune of its simple case folding
// orbit, so that two strings are equal after foldCase exactly when
// strings.EqualFold says they are.
func foldCase(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	return strings.Map(func(r rune) rune {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		return min
	}, s)
}

func parseDNAttrs(s string) ([]dnAttr, error) {
	s = strings.TrimSpace(s)
	for _, p := range []string{"subject=", "issuer="} {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			s = strings.TrimSpace(s[len(p):])
			break
		}
	}
	if s == "" {
		return nil, errors.New("empty distinguished name")
	}
	isSep := func(c byte) bool { return c == ',' || c == ';' || c == '+' }
	if s[0] == '/' { // OpenSSL's legacy one-line form: /C=US/O=Foo/CN=Bar
		s = strings.TrimSuffix(s[1:], "/")
		isSep = func(c byte) bool { return c == '/' || c == '+' }
	}
	var attrs []dnAttr
	i := 0
	for {
		// Attribute type.
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q: expected TYPE=value", strings.TrimSpace(s[i:]))
		}
		typ := strings.TrimSpace(s[i : i+eq])
		oid, err := dnTypeOID(typ)
		if err != nil {
			return nil, err
		}
		i += eq + 1
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		// Attribute value.
		var val string
		str := true
		switch {
		case i < len(s) && s[i] == '"':
			v, n, err := parseQuoted(s[i:])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", typ, err)
			}
			val, i = normValue(v), i+n
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && !isSep(s[i]) {
				return nil, fmt.Errorf("%s: text after quoted value", typ)
			}
		case i < len(s) && s[i] == '#':
			j := i + 1
			for j < len(s) && isHexDigit(s[j]) {
				j++
			}
			v, isStr, err := derValue(s[i+1 : j])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", typ, err)
			}
			val, i = v, j
			str = isStr
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && !isSep(s[i]) {
				return nil, fmt.Errorf("%s: text after #hex value", typ)
			}
		default:
			var buf []byte
			for i < len(s) && !isSep(s[i]) {
				c := s[i]
				if c == '\\' {
					if i+1 >= len(s) {
						return nil, fmt.Errorf("%s: trailing backslash", typ)
					}
					b, n := unescape(s, i)
					buf = append(buf, b)
					i += n
					continue
				}
				buf = append(buf, c)
				i++
			}
			val = normValue(string(buf))
		}
		attrs = append(attrs, dnAttr{oid: oid, val: val, str: str})
		if i >= len(s) {
			return attrs, nil
		}
		i++ // separator
		if strings.TrimSpace(s[i:]) == "" {
			return nil, errors.New("distinguished name ends with a separator")
		}
	}
}

func dnTypeOID(typ string) (string, error) {
	if typ == "" {
		return "", errors.New("empty attribute type")
	}
	if oid, ok := dnTypeByName[strings.ToLower(typ)]; ok {
		return oid, nil
	}
	t := typ
	if len(t) > 4 && strings.EqualFold(t[:4], "oid.") {
		t = t[4:]
	}
	if t[0] >= '0' && t[0] <= '9' {
		oid, err := parseOID(t)
		if err != nil {
			return "", fmt.Errorf("attribute type: %w", err)
		}
		return oid.String(), nil
	}
	return "", fmt.Errorf("unknown attribute type %q (use CN, O, OU, C, L, ST, ... or a dotted OID)", typ)
}

// parseQuoted reads a "quoted" value at the start of s; it returns the value
// and the number of bytes consumed.
func parseQuoted(s string) (string, int, error) {
	var buf []byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return string(buf), i + 1, nil
		case '\\':
			if i+1 >= len(s) {
				return "", 0, errors.New("unterminated quoted value")
			}
			b, n := unescape(s, i)
			buf = append(buf, b)
			i += n - 1
		default:
			buf = append(buf, c)
		}
	}
	return "", 0, errors.New("unterminated quoted value")
}

// unescape decodes the escape at s[i] (a backslash, with s[i+1] present):
// a backslash and two hex digits, or a backslash and one character. It
// returns the byte and the length of the escape.
func unescape(s string, i int) (byte, int) {
	if i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
		b, _ := hex.DecodeString(s[i+1 : i+3])
		return b[0], 3
	}
	return s[i+1], 2
}

func isHexDigit(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// derValue decodes the hex of a BER/DER attribute value ("#..." form); it
// reports whether the value is a string.
func derValue(h string) (string, bool, error) {
	der, err := hex.DecodeString(h)
	if err != nil || len(der) == 0 {
		return "", false, errors.New("bad #hex value")
	}
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(der, &rv)
	if err != nil || len(rest) != 0 {
		return "", false, errors.New("#hex value is not one DER element")
	}
	v, str := canonValue(rv)
	return v, str, nil
}

// canonValue returns the canonical comparison value of an attribute value,
// and whether it is a string.
func canonValue(rv asn1.RawValue) (string, bool) {
	if s, ok := asn1String(rv); ok {
		return normValue(s), true
	}
	return "#" + hex.EncodeToString(rv.FullBytes), false
}

// asn1String decodes the directory string types.
func asn1String(rv asn1.RawValue) (string, bool) {
	if rv.Class != asn1.ClassUniversal || rv.IsCompound {
		return "", false
	}
	b := rv.Bytes
	switch rv.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString,
		26 /* VisibleString */, 25 /* GraphicString */, 27 /* GeneralString */ :
		return string(b), true
	case asn1.TagT61String: // treated as Latin-1, as most software does
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), true
	case asn1.TagBMPString:
		if len(b)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(b[2*i:])
		}
		return string(utf16.Decode(u)), true
	case 28: // UniversalString
		if len(b)%4 != 0 {
			return "", false
		}
		r := make([]rune, len(b)/4)
		for i := range r {
			r[i] = rune(binary.BigEndian.Uint32(b[4*i:]))
		}
		return string(r), true
	}
	return "", false
}

type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rawRDNSET is a SET OF AttributeTypeAndValue (encoding/asn1 keys on the
// "SET" suffix of the type name).
type rawRDNSET []rawATV

func parseRawRDNs(der []byte) ([]rawRDNSET, error) {
	var rdns []rawRDNSET
	rest, err := asn1.Unmarshal(der, &rdns)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after name")
	}
	return rdns, nil
}

// keyOfRawDN returns the canonical key of a DER-encoded Name (a
// certificate's RawIssuer or RawSubject, a CRL's RawIssuer).
func keyOfRawDN(der []byte) (dnKey, error) {
	attrs, err := rawDNAttrs(der)
	if err != nil {
		return "", err
	}
	return makeKey(attrs), nil
}

// foldedKeyOfRawDN returns the RFC 5280 comparison key (foldedKey) of a
// DER-encoded Name.
func foldedKeyOfRawDN(der []byte) (dnKey, error) {
	attrs, err := rawDNAttrs(der)
	if err != nil {
		return "", err
	}
	return foldedKey(attrs), nil
}

func rawDNAttrs(der []byte) ([]dnAttr, error) {
	rdns, err := parseRawRDNs(der)
	if err != nil {
		return nil, err
	}
	var attrs []dnAttr
	for _, rdn := range rdns {
		for _, atv := range rdn {
			v, str := canonValue(atv.Value)
			attrs = append(attrs, dnAttr{oid: atv.Type.String(), val: v, str: str})
		}
	}
	return attrs, nil
}

// formatRawDN writes a DER-encoded Name as RFC 4514 text (last RDN first),
// which parseDN reads back to the same key.
func formatRawDN(der []byte) (string, error) {
	rdns, err := parseRawRDNs(der)
	if err != nil {
		return "", err
	}
	var parts []string
	for i := len(rdns) - 1; i >= 0; i-- {
		var atvs []string
		for _, atv := range rdns[i] {
			oid := atv.Type.String()
			name, ok := dnNameByOID[oid]
			if !ok {
				name = oid
			}
			var v string
			if s, ok := asn1String(atv.Value); ok {
				v = escapeDNValue(normValue(s))
			} else {
				v = "#" + hex.EncodeToString(atv.Value.FullBytes)
			}
			atvs = append(atvs, name+"="+v)
		}
		parts = append(parts, strings.Join(atvs, "+"))
	}
	return strings.Join(parts, ", "), nil
}

// escapeDNValue escapes a value as RFC 4514 requires.
func escapeDNValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '#' && i == 0, c == ' ' && (i == 0 || i == len(s)-1):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// canonicalDNText rewrites a textual name in the canonical order and
// spelling: attributes sorted as the comparison sorts them, preferred type
// names, RFC 4514 escaping. Text that does not parse is returned unchanged.
func canonicalDNText(s string) string {
	if s == "" {
		return s
	}
	attrs, err := parseDNAttrs(s)
	if err != nil {
		return s
	}
	makeKey(attrs) // sorts
	parts := make([]string, len(attrs))
	for i, a := range attrs {
		name, ok := dnNameByOID[a.oid]
		if !ok {
			name = a.oid
		}
		v := a.val
		if !strings.HasPrefix(v, "#") {
			v = escapeDNValue(v)
		}
		parts[i] = name + "=" + v
	}
	return strings.Join(parts, ", ")
}
