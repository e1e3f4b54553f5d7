package ima

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// fieldID is a template field (ima_template.c, supported_fields).
type fieldID uint8

const (
	fieldD       fieldID = iota + 1 // digest, no algorithm (sha1 or md5)
	fieldN                          // name, at most 255 characters
	fieldDNG                        // "algo:\0" + digest
	fieldDNGv2                      // "type:algo:\0" + digest
	fieldNNG                        // name, NUL-terminated
	fieldSig                        // security.ima signature
	fieldBuf                        // measured buffer
	fieldDModsig                    // digest of an appended signature's content, maybe empty
	fieldModsig                     // appended signature
	fieldEVMSig                     // EVM portable signature
	fieldIUID
	fieldIGID
	fieldIMode
	fieldXattrNames
	fieldXattrLengths
	fieldXattrValues
)

var fieldIDs = map[string]fieldID{
	"d": fieldD, "n": fieldN, "d-ng": fieldDNG, "d-ngv2": fieldDNGv2, "n-ng": fieldNNG,
	"sig": fieldSig, "buf": fieldBuf, "d-modsig": fieldDModsig, "modsig": fieldModsig,
	"evmsig": fieldEVMSig, "iuid": fieldIUID, "igid": fieldIGID, "imode": fieldIMode,
	"xattrnames": fieldXattrNames, "xattrlengths": fieldXattrLengths, "xattrvalues": fieldXattrValues,
}

// template is a template's field list.
type template struct {
	legacy bool // the "ima" template: its own binary layout and hash
	n      int
	f      [maxFields]fieldID
}

// The built-in templates (ima_template.c, builtin_templates).
var (
	tmplNG      = mustFormat("d-ng|n-ng")
	tmplSig     = mustFormat("d-ng|n-ng|sig")
	tmplNGv2    = mustFormat("d-ngv2|n-ng")
	tmplSigv2   = mustFormat("d-ngv2|n-ng|sig")
	tmplBuf     = mustFormat("d-ng|n-ng|buf")
	tmplModsig  = mustFormat("d-ng|n-ng|sig|d-modsig|modsig")
	tmplEVMSig  = mustFormat("d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode")
	tmplLegacy  = template{legacy: true, n: 2, f: [maxFields]fieldID{fieldD, fieldN}}
	algoSHA1    = []byte("sha1")
	algoMD5     = []byte("md5")
	simpleNames = map[string]bool{"ima": true, "ima-ng": true, "ima-ngv2": true, "ima-sig": true, "ima-sigv2": true, "ima-buf": true}
)

func mustFormat(s string) template {
	t, ok := parseFormat([]byte(s))
	if !ok {
		panic("ima: bad built-in template format " + s)
	}
	return t
}

// parseFormat reads a field format such as "d-ng|n-ng|sig": the kernel
// lists a custom template (ima_template_fmt=) under its format.
func parseFormat(b []byte) (template, bool) {
	var t template
	for len(b) > 0 || t.n == 0 {
		id := b
		if i := bytes.IndexByte(b, '|'); i >= 0 {
			id, b = b[:i], b[i+1:]
			if len(b) == 0 {
				return t, false // trailing '|'
			}
		} else {
			b = nil
		}
		f, ok := fieldIDs[string(id)]
		if !ok || len(id) > maxFieldIDLen || t.n == maxFields {
			return t, false
		}
		t.f[t.n] = f
		t.n++
	}
	return t, true
}

// lookupTemplate finds a template by the name the list gives.
func lookupTemplate(name []byte) (template, bool) {
	switch string(name) {
	case "ima-ng":
		return tmplNG, true
	case "ima-sig":
		return tmplSig, true
	case "ima-buf":
		return tmplBuf, true
	case legacyName:
		return tmplLegacy, true
	case "ima-ngv2":
		return tmplNGv2, true
	case "ima-sigv2":
		return tmplSigv2, true
	case "ima-modsig":
		return tmplModsig, true
	case "evm-sig":
		return tmplEVMSig, true
	}
	return parseFormat(name)
}

// simpleTemplate reports whether a Record of the template is fully
// described by its decoded fields (no Data needed).
func simpleTemplate(name string) bool { return simpleNames[name] }

// decode splits non-legacy template data into its fields, checks them and
// fills the entry's decoded fields. It returns the sentinel and detail of
// the first problem.
func (e *Entry) decode(t *template) (string, error) {
	b := e.Data
	for i := 0; i < t.n; i++ {
		if len(b) < 4 {
			return fmt.Sprintf("field %d: length cut (%d bytes left)", i, len(b)), ErrMalformed
		}
		l := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if uint64(l) > uint64(len(b)) {
			return fmt.Sprintf("field %d: length %d exceeds the %d bytes left", i, l, len(b)), ErrMalformed
		}
		v := b[:l]
		b = b[l:]
		switch t.f[i] {
		case fieldDNG, fieldDNGv2:
			typ, algo, dig, detail := parseDigestField(v, t.f[i] == fieldDNGv2)
			if detail != "" {
				return fmt.Sprintf("field %d: %s", i, detail), ErrMalformed
			}
			if e.DigestAlgo == nil {
				e.DigestType, e.DigestAlgo, e.FileDigest = typ, algo, dig
			}
		case fieldDModsig:
			if len(v) > 0 {
				if _, _, _, detail := parseDigestField(v, false); detail != "" {
					return fmt.Sprintf("field %d: %s", i, detail), ErrMalformed
				}
			}
		case fieldD:
			var algo []byte
			switch len(v) {
			case 20:
				algo = algoSHA1
			case 16:
				algo = algoMD5
			default:
				return fmt.Sprintf("field %d: d digest of %d bytes", i, len(v)), ErrMalformed
			}
			if e.DigestAlgo == nil {
				e.DigestAlgo, e.FileDigest = algo, v
			}
		case fieldNNG, fieldN:
			if len(v) == 0 || v[len(v)-1] != 0 {
				return fmt.Sprintf("field %d: name not NUL-terminated", i), ErrMalformed
			}
			if t.f[i] == fieldN && len(v) > LegacyNameLen {
				return fmt.Sprintf("field %d: n name of %d bytes exceeds %d", i, len(v), LegacyNameLen), ErrMalformed
			}
			if len(v) > MaxNameLen {
				return fmt.Sprintf("field %d: name of %d bytes exceeds %d", i, len(v), MaxNameLen), ErrTooLarge
			}
			if bytes.IndexByte(v[:len(v)-1], 0) >= 0 {
				return fmt.Sprintf("field %d: NUL inside the name", i), ErrMalformed
			}
			if e.Name == nil {
				e.Name = v[:len(v)-1]
			}
		case fieldSig:
			if e.Sig == nil {
				e.Sig = v
			}
		case fieldBuf:
			if e.Buf == nil {
				e.Buf = v
			}
		}
	}
	if len(b) != 0 {
		return fmt.Sprintf("%d bytes after the last of %d fields", len(b), t.n), ErrMalformed
	}
	return "", nil
}

// parseDigestField reads "algo:\0digest", or "type:algo:\0digest" when
// typed (d-ngv2), as ima_eventdigest_init_common writes it. A violation
// carries 20 zero bytes whatever the algorithm.
func parseDigestField(v []byte, typed bool) (typ, algo, dig []byte, detail string) {
	if typed {
		i := bytes.IndexByte(v, ':')
		if i < 1 || i > maxFieldIDLen || !nameChars(v[:i]) {
			return nil, nil, nil, "digest type missing or malformed"
		}
		typ, v = v[:i], v[i+1:]
	}
	i := bytes.IndexByte(v, ':')
	if i < 1 || i > maxAlgoNameLen || i+1 >= len(v) || v[i+1] != 0 || !nameChars(v[:i]) {
		return nil, nil, nil, `digest lacks its "algo:\0" prefix`
	}
	algo, dig = v[:i], v[i+2:]
	if size, ok := algoSize(algo); ok {
		if len(dig) != size && (len(dig) != DigestSize || !allZero(dig)) {
			return nil, nil, nil, fmt.Sprintf("%s digest of %d bytes", algo, len(dig))
		}
	} else if len(dig) == 0 || len(dig) > maxDigestSize {
		return nil, nil, nil, fmt.Sprintf("%s digest of %d bytes", algo, len(dig))
	}
	return typ, algo, dig, ""
}

// nameChars accepts the characters of kernel hash and digest-type names.
func nameChars(b []byte) bool {
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// algoSize is the digest size of the kernel's hash_algo_name entries.
func algoSize(algo []byte) (int, bool) {
	switch string(algo) {
	case "sha256", "sm3", "rmd256", "wp256", "streebog256", "sha3-256":
		return 32, true
	case "sha1", "rmd160", "tgr160":
		return 20, true
	case "sha384", "wp384", "sha3-384":
		return 48, true
	case "sha512", "wp512", "streebog512", "sha3-512":
		return 64, true
	case "md5", "md4", "rmd128", "tgr128":
		return 16, true
	case "sha224":
		return 28, true
	case "tgr192":
		return 24, true
	case "rmd320":
		return 40, true
	}
	return 0, false
}
