package kernelkeys

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/kmodsig/decompress"
	"github.com/vigil-attest/vigil/reason"
)

// The kernel's compiled-in key lists (torvalds/linux):
//
//   - certs/system_certificates.S: system_certificate_list, .align 8, the
//     module signing key then CONFIG_SYSTEM_TRUSTED_KEYS, back to back;
//     then, .align 8, system_certificate_list_size (.quad on 64-bit, .long
//     on 32-bit). certs/system_keyring.c load_system_certificate_list()
//     loads that many bytes into .builtin_trusted_keys.
//   - certs/revocation_certificates.S (CONFIG_SYSTEM_REVOCATION_LIST):
//     revocation_certificate_list and revocation_certificate_list_size, the
//     same layout; certs/blacklist.c load_revocation_certificate_list()
//     loads them into .blacklist, where is_key_on_revocation_list() rejects
//     any PKCS#7 whose signer chains to one of them.
//   - certs/blacklist_hashes.c: const char *const blacklist_hashes[],
//     pointers to "tbs:<hex>" / "bin:<hex>" strings, NULL-terminated
//     (blacklist_nohashes.c: just { NULL }); blacklist_init() adds each to
//     .blacklist. A "tbs:" hash is the digest of a certificate's
//     TBSCertificate in the certificate's own signature hash
//     (crypto/asymmetric_keys/x509_public_key.c x509_get_sig_params(),
//     is_hash_blacklisted(..., BLACKLIST_HASH_X509_TBS)): such a
//     certificate is refused as a key, even in the system list. A "bin:"
//     hash is the digest of signed content (is_binary_blacklisted()).
//
// All three live in .init.rodata, which x86's linker script folds into the
// .init.data output section.

// Symbol names read from a System.map.
const (
	SymSystemList     = "system_certificate_list"
	SymSystemListSize = "system_certificate_list_size"
	SymRevList        = "revocation_certificate_list"
	SymRevListSize    = "revocation_certificate_list_size"
	SymBlacklist      = "blacklist_hashes"
	SymBanner         = "linux_banner"
	SymText           = "_text"
)

var wantedSymbols = map[string]bool{SymSystemList: true, SymSystemListSize: true, SymRevList: true,
	SymRevListSize: true, SymBlacklist: true, SymBanner: true, SymText: true}

// Methods by which the lists were located (Keys.Method).
const (
	// MethodSystemMap: at the addresses a System.map gives, mapped through
	// the payload's ELF program headers (or _text for a flat Image).
	MethodSystemMap = "system.map"
	// MethodLayout: without a System.map, the one place in the init data
	// whose bytes have system_certificates.S's layout (see Read).
	MethodLayout = "layout"
)

// Errors, each with a reason code (reason.CodeOf) for callers that report
// one.
var (
	// ErrMapMismatch: the System.map does not describe this image (its
	// linux_banner does not point at "Linux version ", or a list lies
	// outside the image). reason.Malformed.
	ErrMapMismatch = errors.New("the System.map does not match the kernel image")
	// ErrNoSymbols: the System.map lacks system_certificate_list (such as
	// Debian's placeholder, which says the real one is in the -dbg
	// package). reason.Malformed.
	ErrNoSymbols = errors.New("the System.map has no system_certificate_list symbol")
	// ErrNoList: without a System.map, no system certificate list was
	// found. reason.Unsupported.
	ErrNoList = errors.New("no system certificate list found in the image's init data")
	// ErrAmbiguous: without a System.map, more than one list has the
	// layout (a kernel with CONFIG_SYSTEM_REVOCATION_LIST: the revocation
	// list looks the same), so which one is trusted cannot be told.
	// reason.Unsupported; give the System.map.
	ErrAmbiguous = errors.New("more than one certificate list in the image: the system list cannot be told from the revocation list without a System.map")
)

// Hash is one compiled-in blacklist entry: Kind is "tbs" or "bin".
type Hash struct {
	Kind string
	Sum  []byte
}

// String is the kernel's form, "tbs:<hex>".
func (h Hash) String() string { return h.Kind + ":" + hex.EncodeToString(h.Sum) }

// Keys are the kernel's compiled-in key lists.
type Keys struct {
	// System is what the kernel loads into .builtin_trusted_keys: the
	// trust anchors for modules. Certificates the blacklist's "tbs:"
	// hashes name are left out, as x509_key_preparse refuses them.
	System []*x509.Certificate
	// Revoked is the revocation certificate list (.blacklist).
	Revoked []*x509.Certificate
	// Hashes are blacklist_hashes[] (.blacklist), in order.
	Hashes []Hash
	// Method says how the lists were located.
	Method string
	// Notes record what was skipped, as the kernel would log it.
	Notes []string
}

// Symbols are the addresses of the System.map symbols this package reads.
type Symbols map[string]uint64

// Bounds on a System.map (a real one has some 150,000 lines, 7 MB).
const (
	maxMapLine  = 4096
	maxMapBytes = 256 << 20
)

// ParseSystemMap reads a System.map ("ADDR TYPE NAME" lines, as nm(1)
// prints) and keeps the symbols this package needs. Malformed lines are
// reason.Malformed; a symbol given twice with different addresses is too.
func ParseSystemMap(r io.Reader) (Symbols, error) {
	s := Symbols{}
	sc := bufio.NewScanner(io.LimitReader(r, maxMapBytes+1))
	sc.Buffer(make([]byte, 0, 4096), maxMapLine)
	var total int64
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		total += int64(len(line)) + 1
		if total > maxMapBytes {
			return nil, reason.New(reason.Malformed, "kernelkeys: System.map larger than %d bytes", maxMapBytes)
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || len(f[1]) != 1 {
			return nil, reason.New(reason.Malformed, "kernelkeys: System.map line %d: want ADDRESS TYPE NAME", n)
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			return nil, reason.New(reason.Malformed, "kernelkeys: System.map line %d: address %q", n, f[0])
		}
		name := f[2]
		if !wantedSymbols[name] {
			continue
		}
		if old, ok := s[name]; ok && old != addr {
			return nil, reason.New(reason.Malformed, "kernelkeys: System.map: %s at both %#x and %#x", name, old, addr)
		}
		s[name] = addr
	}
	if err := sc.Err(); err != nil {
		return nil, reason.New(reason.Malformed, "kernelkeys: System.map: %v", err)
	}
	return s, nil
}

// Read returns the key lists compiled into the kernel image of size bytes
// read through r. The payload is decompressed (bounded by
// Options.MaxDecompressedSize) into a temporary file in Options.TempDir,
// removed before Read returns, and read from there: the process holds the
// decoder's window and the byte ranges it looks at, never the whole
// payload. When no temporary file can be written the payload is held in
// memory instead, with the same results.
//
// With Options.Symbols (from the image's System.map) the lists are read at
// their symbols' addresses: exact. The map must match the image: its
// linux_banner must point at "Linux version ".
//
// Without symbols, the system list is found by its layout: an 8-aligned run
// of certificates, walked as certs/common.c load_certificate_list() walks
// it, followed at the next 8-aligned offset by a .quad (.long for 32-bit
// ELF) equal to the run's length, within the init data section (.init.data
// or .init.rodata when the payload is ELF with section headers; the whole
// payload otherwise). Exactly one such run must exist: with
// CONFIG_SYSTEM_REVOCATION_LIST there are two alike and ErrAmbiguous asks
// for the System.map. The blacklist hashes are then every NUL-delimited
// string of the kernel's "tbs:"/"bin:" form in the payload: an
// over-approximation, which for revocations errs on the side of refusing.
// The __ksymtab and kallsyms tables are not used: neither list is exported,
// and kallsyms has no fixed place to start from.
func Read(r io.ReaderAt, size int64, o Options) (*Keys, error) {
	p, err := Locate(r, size)
	if err != nil {
		return nil, err
	}
	if !p.Format.Decodable() {
		return nil, reason.New(reason.Unsupported, "kernelkeys: %s-compressed kernels are not supported", p.Format)
	}
	maxOut := o.MaxDecompressedSize
	if maxOut <= 0 {
		maxOut = DefaultMaxDecompressedSize
	}
	do := decompress.Options{MaxOutput: maxOut, MaxWindow: o.MaxWindow, FirstStream: true}
	src := func() io.Reader { return io.NewSectionReader(r, p.Offset, p.Length) }
	f, n, err := spool(src(), p.Format, do, o.TempDir)
	if err == nil {
		defer f.Close()
		return ReadPayloadAt(f, n, o)
	}
	if !errors.Is(err, errSpool) {
		return nil, fmt.Errorf("kernelkeys: %s payload: %w", p.Format, err)
	}
	// No temporary file: hold the payload in memory.
	img, err := decompress.ReadAll(src(), p.Format, do)
	if err != nil {
		return nil, fmt.Errorf("kernelkeys: %s payload: %w", p.Format, err)
	}
	return ReadPayload(img, o)
}

// errSpool marks a failure to create or write the temporary file (as
// opposed to a failure to decode the payload).
var errSpool = errors.New("temporary file")

// spool decompresses src (format f) into a new temporary file in dir (""
// for os.TempDir()), created 0600 and unlinked at once, so that nothing is
// left behind however the process ends. It returns the open file and the
// payload's size; the caller closes it. Decoder errors are returned as
// they are; file errors wrap errSpool.
func spool(src io.Reader, f decompress.Format, o decompress.Options, dir string) (*os.File, int64, error) {
	dec, err := decompress.NewReader(src, f, o)
	if err != nil {
		return nil, 0, err
	}
	defer dec.Close()
	tmp, err := os.CreateTemp(dir, "vigil-kernel-*.tmp")
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errSpool, err)
	}
	if err := os.Remove(tmp.Name()); err != nil {
		tmp.Close()
		return nil, 0, fmt.Errorf("%w: %v", errSpool, err)
	}
	buf := make([]byte, 256<<10)
	var n int64
	zero := 0
	for {
		k, rerr := dec.Read(buf)
		if k > 0 {
			if _, err := tmp.Write(buf[:k]); err != nil {
				tmp.Close()
				return nil, 0, fmt.Errorf("%w: %v", errSpool, err)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return tmp, n, nil
		}
		if rerr != nil {
			tmp.Close()
			return nil, 0, rerr
		}
		if k == 0 {
			if zero++; zero > 100 {
				tmp.Close()
				return nil, 0, io.ErrNoProgress
			}
		}
	}
}

// ReadPayload is Read on an already decompressed payload (vmlinux ELF or a
// flat Image).
func ReadPayload(img []byte, o Options) (*Keys, error) {
	return readPayload(newMemMap(bytes.NewReader(img), int64(len(img)), img), o)
}

// ReadPayloadAt is ReadPayload on a payload of size bytes read through r.
// It holds in memory only what it reads: the ELF headers, the lists, and
// for the layout method the init data section (the whole payload when it is
// not ELF) and a window of the payload at a time for the blacklist hashes.
func ReadPayloadAt(r io.ReaderAt, size int64, o Options) (*Keys, error) {
	return readPayload(newMemMap(r, size, nil), o)
}

func readPayload(m *memMap, o Options) (*Keys, error) {
	var k *Keys
	var err error
	if o.Symbols != nil {
		k, err = m.bySymbols(o.Symbols, o)
	} else {
		k, err = m.byLayout(o)
	}
	if err != nil {
		return nil, err
	}
	k.System = dropBlacklisted(k, k.System)
	return k, nil
}

// memMap maps kernel virtual addresses to payload offsets. The payload is
// read through r; img, when not nil, is the payload itself (ReadPayload),
// sliced instead of copied.
type memMap struct {
	r     io.ReaderAt
	size  int64
	img   []byte
	ptr   int // pointer size: 8 or 4
	order binary.ByteOrder
	elf   *elf.File
}

func newMemMap(r io.ReaderAt, size int64, img []byte) *memMap {
	m := &memMap{r: r, size: size, img: img, ptr: 8, order: binary.LittleEndian}
	head := make([]byte, min(size, int64(len(elf.ELFMAG))))
	if n, _ := r.ReadAt(head, 0); n == len(head) && string(head) == elf.ELFMAG {
		if f, err := elf.NewFile(io.NewSectionReader(r, 0, size)); err == nil {
			m.elf = f
			m.order = f.ByteOrder
			if f.Class == elf.ELFCLASS32 {
				m.ptr = 4
			}
		}
	}
	return m
}

// bytes returns the n payload bytes at offset off, which the caller has
// checked lie inside it.
func (m *memMap) bytes(off, n int64) ([]byte, error) {
	if m.img != nil {
		return m.img[off : off+n], nil
	}
	b := make([]byte, n)
	if err := readFull(m.r, b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// off returns the payload offset of n bytes at virtual address a.
func (m *memMap) off(a uint64, n int, base uint64, flat bool) (int64, bool) {
	size := uint64(m.size)
	if m.elf != nil {
		for _, p := range m.elf.Progs {
			if p.Type != elf.PT_LOAD || a < p.Vaddr || a-p.Vaddr >= p.Filesz {
				continue
			}
			d := a - p.Vaddr
			if uint64(n) > p.Filesz-d || p.Off+d > size || uint64(n) > size-(p.Off+d) {
				return 0, false
			}
			return int64(p.Off + d), true
		}
		return 0, false
	}
	if !flat || a < base || a-base > size || uint64(n) > size-(a-base) {
		return 0, false
	}
	return int64(a - base), true
}

func (m *memMap) word(b []byte) uint64 {
	if m.ptr == 4 {
		return uint64(m.order.Uint32(b))
	}
	return m.order.Uint64(b)
}

// Bounds on what the lists may hold.
const (
	maxListBytes  = 16 << 20
	maxHashes     = 1 << 16
	maxHashString = 3 + 1 + 128 // blacklist.c MAX_HASH_LEN
)

func (m *memMap) bySymbols(s Symbols, o Options) (*Keys, error) {
	base, flat := s[SymText]
	at := func(a uint64, n int) ([]byte, error) {
		i, ok := m.off(a, n, base, flat)
		if !ok {
			return nil, reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: %d bytes at %#x lie outside the image: %w", n, a, ErrMapMismatch))
		}
		return m.bytes(i, int64(n))
	}
	if _, ok := s[SymSystemList]; !ok {
		return nil, reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: %w", ErrNoSymbols))
	}
	ba, ok := s[SymBanner]
	if !ok {
		return nil, reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: no %s symbol: %w", SymBanner, ErrMapMismatch))
	}
	if b, err := at(ba, len("Linux version ")); err != nil || string(b) != "Linux version " {
		return nil, reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: %s does not point at \"Linux version \": %w", SymBanner, ErrMapMismatch))
	}
	list := func(sym, sizeSym string) ([]*x509.Certificate, []string, error) {
		a, ok1 := s[sym]
		sa, ok2 := s[sizeSym]
		if !ok1 || !ok2 {
			return nil, nil, reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: System.map has %s but not %s: %w", sym, sizeSym, ErrMapMismatch))
		}
		w, err := at(sa, m.ptr)
		if err != nil {
			return nil, nil, err
		}
		n := m.word(w)
		if n > maxListBytes {
			return nil, nil, reason.New(reason.Malformed, "kernelkeys: %s is %d bytes (more than %d)", sizeSym, n, maxListBytes)
		}
		b, err := at(a, int(n))
		if err != nil {
			return nil, nil, err
		}
		return walkList(b, o, sym)
	}
	k := &Keys{Method: MethodSystemMap}
	var notes []string
	var err error
	if k.System, notes, err = list(SymSystemList, SymSystemListSize); err != nil {
		return nil, err
	}
	k.Notes = append(k.Notes, notes...)
	if _, ok := s[SymRevList]; ok {
		if k.Revoked, notes, err = list(SymRevList, SymRevListSize); err != nil {
			return nil, err
		}
		k.Notes = append(k.Notes, notes...)
	}
	if a, ok := s[SymBlacklist]; ok {
		for i := 0; ; i++ {
			if i == maxHashes {
				return nil, reason.New(reason.Malformed, "kernelkeys: more than %d blacklist hashes", maxHashes)
			}
			w, err := at(a+uint64(i*m.ptr), m.ptr)
			if err != nil {
				return nil, err
			}
			sp := m.word(w)
			if sp == 0 {
				break
			}
			str, err := m.cstring(sp, base, flat)
			if err != nil {
				return nil, err
			}
			h, err := ParseHash(str)
			if err != nil {
				// blacklist_init logs "- blacklisting failed" and goes on.
				k.Notes = append(k.Notes, fmt.Sprintf("blacklist_hashes[%d] %q refused by the kernel: %v", i, str, err))
				continue
			}
			k.Hashes = append(k.Hashes, h)
		}
	}
	return k, nil
}

func (m *memMap) cstring(a, base uint64, flat bool) (string, error) {
	// off(a, n) picks the same place for every n and fits for the n up to
	// some bound: read the most bytes the loop below can look at once.
	var buf []byte
	if i, ok := m.off(a, 1, base, flat); ok {
		var err error
		if buf, err = m.bytes(i, min(int64(maxHashString+1), m.size-i)); err != nil {
			return "", err
		}
	}
	for n := 1; n <= maxHashString+1; n++ {
		if _, ok := m.off(a, n, base, flat); !ok || n > len(buf) {
			return "", reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: blacklist string at %#x lies outside the image: %w", a, ErrMapMismatch))
		}
		if buf[n-1] == 0 {
			return string(buf[:n-1]), nil
		}
	}
	// Longer than any hash the kernel accepts: it would refuse it too,
	// but a string that long in blacklist_hashes means a wrong map.
	return "", reason.Wrap(reason.Malformed, fmt.Errorf("kernelkeys: blacklist string at %#x longer than %d bytes: %w", a, maxHashString, ErrMapMismatch))
}

// walkList walks a certificate list as certs/common.c
// load_certificate_list() does, including its test "p[0] != 0x30 &&
// p[1] != 0x82" (either byte right lets the entry through) and its stop at
// the first entry that does not fit. An entry that does not parse is
// skipped, as key_create_or_update failing is.
func walkList(b []byte, o Options, name string) ([]*x509.Certificate, []string, error) {
	maxCerts := o.MaxCertificates
	if maxCerts <= 0 {
		maxCerts = DefaultMaxCertificates
	}
	var out []*x509.Certificate
	var notes []string
	seen := map[string]bool{}
	for p := 0; p < len(b); {
		if len(b)-p < 4 || (b[p] != 0x30 && b[p+1] != 0x82) {
			notes = append(notes, fmt.Sprintf("%s: problem parsing the list at byte %d (the kernel stops there)", name, p))
			break
		}
		n := 4 + (int(b[p+2])<<8 | int(b[p+3]))
		if n > len(b)-p {
			notes = append(notes, fmt.Sprintf("%s: entry at byte %d overruns the list (the kernel stops there)", name, p))
			break
		}
		c, err := x509.ParseCertificate(bytes.Clone(b[p : p+n]))
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: entry at byte %d does not parse (the kernel skips it): %v", name, p, err))
		} else if !seen[string(c.Raw)] {
			if len(out) == maxCerts {
				return nil, nil, reason.New(reason.Malformed, "kernelkeys: %s: more than %d certificates", name, maxCerts)
			}
			seen[string(c.Raw)] = true
			out = append(out, c)
		}
		p += n
	}
	return out, notes, nil
}

// initData returns the payload range that holds .init.rodata.
func (m *memMap) initData() ([]byte, error) {
	if m.elf != nil {
		for _, name := range []string{".init.rodata", ".init.data"} {
			if s := m.elf.Section(name); s != nil && s.Type == elf.SHT_PROGBITS &&
				s.Offset <= uint64(m.size) && s.Size <= uint64(m.size)-s.Offset {
				return m.bytes(int64(s.Offset), int64(s.Size))
			}
		}
	}
	return m.bytes(0, m.size)
}

func (m *memMap) byLayout(o Options) (*Keys, error) {
	data, err := m.initData()
	if err != nil {
		return nil, err
	}
	type run struct{ start, end int }
	var runs []run
	for s := 0; s+4 <= len(data); s += 8 {
		if data[s] != 0x30 || data[s+1] != 0x82 {
			continue
		}
		// Walk whole certificates; after each, look for the size word.
		p, failed := s, 0
		for p+4 <= len(data) && data[p] == 0x30 && data[p+1] == 0x82 {
			n := 4 + (int(data[p+2])<<8 | int(data[p+3]))
			if n > len(data)-p || !looksLikeCert(data[p:p+n]) {
				break
			}
			if _, err := x509.ParseCertificate(data[p : p+n]); err != nil {
				if failed++; failed > maxFailedParses {
					return nil, reason.New(reason.Malformed, "kernelkeys: more than %d certificate-like structures that do not parse", maxFailedParses)
				}
				break
			}
			p += n
			q := (p + 7) &^ 7
			if q+m.ptr <= len(data) && allZero(data[p:q]) && m.word(data[q:q+m.ptr]) == uint64(p-s) {
				runs = append(runs, run{s, p})
				break
			}
		}
	}
	switch {
	case len(runs) == 0:
		return nil, reason.Wrap(reason.Unsupported, fmt.Errorf("kernelkeys: %w (give the image's System.map)", ErrNoList))
	case len(runs) > 1:
		return nil, reason.Wrap(reason.Unsupported, fmt.Errorf("kernelkeys: %d lists: %w", len(runs), ErrAmbiguous))
	}
	k := &Keys{Method: MethodLayout}
	if k.System, k.Notes, err = walkList(data[runs[0].start:runs[0].end], o, SymSystemList); err != nil {
		return nil, err
	}
	data = nil // the hash scan reads the payload a window at a time
	if m.img != nil {
		k.Hashes = scanHashes(m.img)
	} else if k.Hashes, err = scanHashesAt(m.r, m.size, scanWindow); err != nil {
		return nil, err
	}
	return k, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// scanHashes finds NUL-delimited "tbs:<hex>" and "bin:<hex>" strings the
// kernel's blacklist_vet_description accepts.
func scanHashes(img []byte) []Hash {
	var out []Hash
	seen := map[string]bool{}
	for _, pfx := range []string{"\x00tbs:", "\x00bin:"} {
		for i := 0; ; {
			j := bytes.Index(img[i:], []byte(pfx))
			if j < 0 {
				break
			}
			st := i + j + 1
			e := bytes.IndexByte(img[st:min(len(img), st+maxHashString+1)], 0)
			i = st
			if e < 0 {
				continue
			}
			str := string(img[st : st+e])
			if h, err := ParseHash(str); err == nil && !seen[str] {
				seen[str] = true
				out = append(out, h)
			}
		}
	}
	return out
}

// scanWindow is how much of the payload scanHashesAt reads at a time.
const scanWindow = 1 << 20

// scanHashesAt is scanHashes on the size bytes read through r, window
// bytes at a time (plus the longest string a match can start). It returns
// what scanHashes returns on the same bytes: the "tbs:" strings in the
// order they occur, then the "bin:" strings.
func scanHashesAt(r io.ReaderAt, size int64, window int) ([]Hash, error) {
	const pfxLen = len("\x00tbs:")
	tail := pfxLen + maxHashString + 1
	buf := make([]byte, window+tail)
	var tbs, bin []Hash
	seen := map[string]bool{}
	for base := int64(0); base < size; base += int64(window) {
		b := buf[:min(int64(len(buf)), size-base)]
		if err := readFull(r, b, base); err != nil {
			return nil, err
		}
		// Matches starting in b[:window]; each has its string, as far as
		// scanHashes looks, inside b.
		for _, pfx := range []string{"\x00tbs:", "\x00bin:"} {
			out := &tbs
			if pfx == "\x00bin:" {
				out = &bin
			}
			for i := 0; i < window; {
				j := bytes.Index(b[i:], []byte(pfx))
				if j < 0 || i+j >= window {
					break
				}
				st := i + j + 1
				i = st
				e := bytes.IndexByte(b[st:min(len(b), st+maxHashString+1)], 0)
				if e < 0 {
					continue
				}
				str := string(b[st : st+e])
				if h, err := ParseHash(str); err == nil && !seen[str] {
					seen[str] = true
					*out = append(*out, h)
				}
			}
		}
	}
	return append(tbs, bin...), nil
}

// ParseHash parses a blacklist entry as certs/blacklist.c
// blacklist_vet_description() accepts it: "tbs" or "bin", a colon, then an
// even, non-zero number (at most 128) of lower-case hex digits.
// Anything else is reason.Malformed.
func ParseHash(s string) (Hash, error) {
	kind, h, ok := strings.Cut(s, ":")
	if !ok || (kind != "tbs" && kind != "bin") {
		return Hash{}, reason.New(reason.Malformed, "kernelkeys: blacklist entry %q: want tbs:HEX or bin:HEX", s)
	}
	if len(h) == 0 || len(h)%2 == 1 || len(h) > 128 {
		return Hash{}, reason.New(reason.Malformed, "kernelkeys: blacklist entry %q: want an even number (2 to 128) of hex digits", s)
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return Hash{}, reason.New(reason.Malformed, "kernelkeys: blacklist entry %q: not lower-case hex", s)
		}
	}
	sum, _ := hex.DecodeString(h)
	return Hash{Kind: kind, Sum: sum}, nil
}

// TBSHash returns the hash of c's TBSCertificate that a "tbs:" entry names:
// in c's own signature hash (x509_get_sig_params), or 0 and nil when Go
// does not know the algorithm.
func TBSHash(c *x509.Certificate) (crypto.Hash, []byte) {
	var h crypto.Hash
	switch c.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		h = crypto.SHA1
	case x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	default:
		return 0, nil
	}
	d := h.New()
	d.Write(c.RawTBSCertificate)
	return h, d.Sum(nil)
}

// dropBlacklisted removes the certificates a "tbs:" hash names: the kernel
// refuses to load them as keys (x509_key_preparse: -EKEYREJECTED).
func dropBlacklisted(k *Keys, cs []*x509.Certificate) []*x509.Certificate {
	tbs := map[string]bool{}
	for _, h := range k.Hashes {
		if h.Kind == "tbs" {
			tbs[string(h.Sum)] = true
		}
	}
	if len(tbs) == 0 {
		return cs
	}
	var out []*x509.Certificate
	for _, c := range cs {
		if _, d := TBSHash(c); d != nil && tbs[string(d)] {
			k.Notes = append(k.Notes, fmt.Sprintf("%s: on the blacklist (tbs:%x), not loaded", c.Subject, d))
			continue
		}
		out = append(out, c)
	}
	return out
}
