package kernelkeys

import (
	"bufio"
	"crypto/x509"
	"encoding/hex"
	"io"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/reason"
)

// What a running kernel's keyrings expose to user space, and what not
// (security/keys/proc.c proc_keys_show, keyctl(2)):
//
//   - /proc/keys lists the keys the reader may view, one a line:
//     "%08x %c%c%c%c%c%c%c %5d %4s %08x %5d %5d %-9.9s " (serial, seven
//     flags, usage, expiry, permissions, uid, gid, the type's name cut to 9
//     characters) then the type's describe(). It does not say which
//     keyring a key is in.
//   - A keyring's describe is its name and ": N" or ": empty"
//     (keyring_describe): ".builtin_trusted_keys: 1".
//   - An asymmetric key's describe is its description, the kernel's
//     "<subject>: <SKID hex, or serial hex>"
//     (crypto/asymmetric_keys/x509_public_key.c x509_key_preparse), then
//     ": X509.rsa", the last 8 hex digits of its key id and " []"
//     (asymmetric_type.c asymmetric_key_describe).
//   - A blacklist key's describe is its description, "tbs:<hex>" or
//     "bin:<hex>" (certs/blacklist.c blacklist_describe).
//   - keyctl(KEYCTL_READ) on a keyring returns its members' serials (the
//     trusted keyrings grant KEY_USR_READ to root). On an asymmetric key it
//     fails (EOPNOTSUPP: the type has no read method): the certificate
//     itself cannot be read back from user space.
//
// So a host's live keyrings name their keys but never give their
// certificates. Live.Match therefore confirms candidate certificates from a
// source whose bytes are known (the image's system list, the firmware's
// db/MokListRT) against the live descriptions: it never makes a
// certificate out of a description.

// ProcKey is one /proc/keys line.
type ProcKey struct {
	Serial   int32
	Flags    string // seven positions: I R D Q U N i, or '-'
	Usage    int
	Expiry   string // "perm", "expd" or a remaining time such as "5d"
	Perm     uint32
	UID      int64
	GID      int64
	Type     string // cut to 9 characters, as printed: "asymmetri"
	Describe string // what the type's describe() printed
}

// Revoked, Dead and Invalidated read the flag positions.
func (k ProcKey) Revoked() bool     { return len(k.Flags) > 1 && k.Flags[1] == 'R' }
func (k ProcKey) Dead() bool        { return len(k.Flags) > 2 && k.Flags[2] == 'D' }
func (k ProcKey) Invalidated() bool { return len(k.Flags) > 6 && k.Flags[6] == 'i' }

// Bounds on /proc/keys input.
const (
	maxProcKeysLine  = 8192
	maxProcKeysLines = 1 << 20
)

// ParseProcKeys parses /proc/keys text. A line not of the kernel's form
// is reason.Malformed (with its number); so is input past the bounds.
func ParseProcKeys(r io.Reader) ([]ProcKey, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxProcKeysLine)
	var out []ProcKey
	for n := 1; sc.Scan(); n++ {
		if n > maxProcKeysLines {
			return nil, reason.New(reason.Malformed, "kernelkeys: /proc/keys: more than %d lines", maxProcKeysLines)
		}
		line := sc.Text()
		if line == "" {
			continue
		}
		k, ok := parseProcKeyLine(line)
		if !ok {
			return nil, reason.New(reason.Malformed, "kernelkeys: /proc/keys line %d: not of the kernel's form", n)
		}
		out = append(out, k)
	}
	if err := sc.Err(); err != nil {
		return nil, reason.New(reason.Malformed, "kernelkeys: /proc/keys: %v", err)
	}
	return out, nil
}

func parseProcKeyLine(line string) (ProcKey, bool) {
	var f [8]string
	rest := line
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		j := strings.IndexByte(rest, ' ')
		if j <= 0 {
			return ProcKey{}, false
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	var k ProcKey
	serial, err := strconv.ParseUint(f[0], 16, 32)
	if err != nil || serial == 0 || serial > 1<<31-1 {
		return k, false
	}
	k.Serial = int32(serial)
	if len(f[1]) != 7 {
		return k, false
	}
	for i, c := range []byte(f[1]) {
		if c != '-' && c != "IRDQUNi"[i] {
			return k, false
		}
	}
	k.Flags = f[1]
	if k.Usage, err = strconv.Atoi(f[2]); err != nil || k.Usage < 0 {
		return k, false
	}
	if !validExpiry(f[3]) {
		return k, false
	}
	k.Expiry = f[3]
	perm, err := strconv.ParseUint(f[4], 16, 32)
	if err != nil || len(f[4]) != 8 {
		return k, false
	}
	k.Perm = uint32(perm)
	if k.UID, err = strconv.ParseInt(f[5], 10, 64); err != nil {
		return k, false
	}
	if k.GID, err = strconv.ParseInt(f[6], 10, 64); err != nil {
		return k, false
	}
	if len(f[7]) > 9 {
		return k, false
	}
	k.Type = f[7]
	k.Describe = strings.TrimLeft(rest, " ")
	return k, true
}

func validExpiry(s string) bool {
	if s == "perm" || s == "expd" {
		return true
	}
	if len(s) < 2 || !strings.ContainsRune("smhdw", rune(s[len(s)-1])) {
		return false
	}
	_, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	return err == nil
}

// The keyrings Live reads.
const (
	KeyringBuiltin   = ".builtin_trusted_keys"
	KeyringSecondary = ".secondary_trusted_keys"
	KeyringMachine   = ".machine"
	KeyringBlacklist = ".blacklist"
)

// LiveKey is an asymmetric key in a live keyring, as /proc/keys names it.
type LiveKey struct {
	Keyring     string
	Serial      int32
	Description string // "<subject>: <id hex>", the kernel's key description
	Algorithm   string // "X509.rsa"
}

// Live is what a running kernel's trust and blacklist keyrings hold.
type Live struct {
	// Trusted are the asymmetric keys of .builtin_trusted_keys,
	// .secondary_trusted_keys and .machine.
	Trusted []LiveKey
	// Revoked are the asymmetric keys of .blacklist (its revocation
	// certificates).
	Revoked []LiveKey
	// Hashes are the .blacklist "tbs:"/"bin:" entries.
	Hashes []Hash
	// Missing names the keyrings /proc/keys did not show (not configured,
	// or not viewable by this reader).
	Missing []string
}

// ReadKeyring returns a keyring's member serials (keyctl KEYCTL_READ).
type ReadKeyring func(serial int32) ([]int32, error)

// LiveKeyrings finds the four keyrings in keys (ParseProcKeys), reads
// their members with read, and sorts the members out. A member /proc/keys
// does not show, or that is revoked, dead or invalidated, is left out. A
// member whose describe is not of the kernel's form is reason.Malformed.
func LiveKeyrings(keys []ProcKey, read ReadKeyring) (*Live, error) {
	bySerial := map[int32]ProcKey{}
	rings := map[string]int32{}
	for _, k := range keys {
		bySerial[k.Serial] = k
		if k.Type == "keyring" {
			name, _, _ := strings.Cut(k.Describe, ":")
			switch name {
			case KeyringBuiltin, KeyringSecondary, KeyringMachine, KeyringBlacklist:
				if _, dup := rings[name]; dup {
					return nil, reason.New(reason.Malformed, "kernelkeys: /proc/keys: two %s keyrings", name)
				}
				rings[name] = k.Serial
			}
		}
	}
	l := &Live{}
	for _, name := range []string{KeyringBuiltin, KeyringSecondary, KeyringMachine, KeyringBlacklist} {
		serial, ok := rings[name]
		if !ok {
			l.Missing = append(l.Missing, name)
			continue
		}
		members, err := read(serial)
		if err != nil {
			return nil, err
		}
		for _, m := range members {
			k, ok := bySerial[m]
			if !ok || k.Revoked() || k.Dead() || k.Invalidated() {
				continue
			}
			switch {
			case k.Type == "asymmetri":
				desc, alg, ok := ParseAsymmetricDescribe(k.Describe)
				if !ok {
					return nil, reason.New(reason.Malformed, "kernelkeys: key %08x in %s: describe %q not of the kernel's form", k.Serial, name, k.Describe)
				}
				lk := LiveKey{Keyring: name, Serial: k.Serial, Description: desc, Algorithm: alg}
				if name == KeyringBlacklist {
					l.Revoked = append(l.Revoked, lk)
				} else {
					l.Trusted = append(l.Trusted, lk)
				}
			case k.Type == "blacklist" && name == KeyringBlacklist:
				h, err := ParseHash(k.Describe)
				if err != nil {
					return nil, err
				}
				l.Hashes = append(l.Hashes, h)
			}
		}
	}
	return l, nil
}

// ParseAsymmetricDescribe splits an asymmetric key's /proc/keys describe,
// "<description>: <subtype> <id tail> []", into the key's description and
// its subtype ("X509.rsa").
func ParseAsymmetricDescribe(s string) (desc, subtype string, ok bool) {
	s, ok = strings.CutSuffix(s, " []")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(s, ": ")
	if i < 0 {
		return "", "", false
	}
	desc, tail := s[:i], s[i+2:]
	subtype, id, _ := strings.Cut(tail, " ")
	if subtype == "" || strings.Contains(id, " ") || !isLowerHex(id) {
		return "", "", false
	}
	if j := strings.LastIndex(desc, ": "); j < 0 || !isLowerHex(desc[j+2:]) || desc[j+2:] == "" {
		return "", "", false
	}
	return desc, subtype, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// KeyDescription is the description the kernel gives the key it loads from
// c (x509_key_preparse): the subject as x509_fabricate_name builds it from
// CN and O, ": ", then the SKID in hex, or the raw serial when there is no
// SKID.
func KeyDescription(c *x509.Certificate) string {
	cn, o := c.Subject.CommonName, strings.Join(c.Subject.Organization, "")
	var name string
	switch {
	case cn != "" && o != "":
		// CN alone when it starts with O, or shares 7 bytes with it.
		if strings.HasPrefix(cn, o) || (len(cn) >= 7 && len(o) >= 7 && cn[:7] == o[:7]) {
			name = cn
		} else {
			name = o + ": " + cn
		}
	case cn != "":
		name = cn
	case o != "":
		name = o
	default:
		for _, a := range c.Subject.Names {
			if a.Type.String() == "1.2.840.113549.1.9.1" {
				name, _ = a.Value.(string)
			}
		}
	}
	id := c.SubjectKeyId
	if len(id) == 0 {
		id = c.SerialNumber.Bytes()
		if len(id) == 0 || id[0]&0x80 != 0 {
			id = append([]byte{0}, id...)
		}
	}
	return name + ": " + hex.EncodeToString(id)
}

// Match sorts candidate certificates by the live keyrings: trusted are the
// candidates a trust keyring holds (by KeyDescription), revoked those
// .blacklist holds; unresolved are live trusted keys no candidate
// explains, which cannot be used (their certificates are not readable).
// A candidate in neither is in neither list: the running kernel does not
// trust it.
func (l *Live) Match(candidates []*x509.Certificate) (trusted, revoked []*x509.Certificate, unresolved []LiveKey) {
	in := func(keys []LiveKey) map[string]bool {
		m := map[string]bool{}
		for _, k := range keys {
			m[k.Description] = true
		}
		return m
	}
	tr, rv := in(l.Trusted), in(l.Revoked)
	used := map[string]bool{}
	for _, c := range candidates {
		d := KeyDescription(c)
		if rv[d] {
			revoked = append(revoked, c)
		}
		if tr[d] && !rv[d] {
			trusted = append(trusted, c)
			used[d] = true
		}
	}
	for _, k := range l.Trusted {
		if !used[k.Description] {
			unresolved = append(unresolved, k)
		}
	}
	return trusted, revoked, unresolved
}
