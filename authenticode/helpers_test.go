package authenticode

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// cacheDir holds files shared by all tests of one test binary run: the test
// PKI and osslsigncode outputs. TestMain removes it and the Go-built PEs.
var cacheDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "authenticode-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = d
	code := m.Run()
	os.RemoveAll(d)
	testpe.Cleanup()
	os.Exit(code)
}

// onceResult is the outcome of one cached call.
type onceResult struct {
	once sync.Once
	val  string
	ok   bool
}

var onces sync.Map

// cached runs fn once per key for the whole test binary and returns its
// result to every caller. fn may fail the test; every later caller for the
// same key then fails too.
func cached(tb testing.TB, key string, fn func() string) string {
	tb.Helper()
	v, _ := onces.LoadOrStore(key, &onceResult{})
	o := v.(*onceResult)
	o.once.Do(func() { o.val = fn(); o.ok = true })
	if !o.ok {
		tb.Fatalf("%s: failed earlier", key)
	}
	return o.val
}

// goPE returns the path of a tiny Windows program built by the Go toolchain
// for goarch (amd64 gives PE32+, 386 gives PE32) with its DWARF sections and
// symbol table, built once per run.
func goPE(tb testing.TB, goarch string) string {
	tb.Helper()
	return testpe.BuildWith(tb, testpe.Options{GOARCH: goarch, Debug: true})
}

// goPEOdd returns the amd64 PE of goPE with 3 bytes appended, so that its
// size is not a multiple of 8.
func goPEOdd(tb testing.TB) string {
	tb.Helper()
	return testpe.BuildWith(tb, testpe.Options{GOARCH: "amd64", Debug: true, Unaligned: true})
}

// pki is the test hierarchy, written once as PEM files.
type pkiFiles struct {
	H                    *testpki.Hierarchy
	Root, Leaf, LeafKey  string // PEM paths
	Chain                string // leaf + intermediate, for -certs
	RSALeafKey, RSAChain string
}

var (
	pkiOnce sync.Once
	pkiVal  *pkiFiles
)

func testPKI(tb testing.TB) *pkiFiles {
	tb.Helper()
	pkiOnce.Do(func() {
		h := testpki.NewHierarchy(testpki.Options{})
		dir := filepath.Join(cacheDir, "pki")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			panic(err)
		}
		p := &pkiFiles{H: h}
		p.Root, _ = h.Root.WriteFiles(tb, dir, "root")
		p.Leaf, p.LeafKey = h.Leaf.WriteFiles(tb, dir, "leaf")
		p.Chain = testpki.WritePEMs(tb, dir, "chain.pem", h.Leaf, h.Intermediate)
		// sbsign wants a traditional RSA key file; openssl converts it.
		p.RSALeafKey = filepath.Join(dir, "leaf-rsa.key")
		testcmd.Run(tb, "openssl", "rsa", "-in", p.LeafKey, "-out", p.RSALeafKey, "-traditional")
		pkiVal = p
	})
	if pkiVal == nil {
		tb.Fatal("test PKI setup failed earlier")
	}
	return pkiVal
}

// osslSign signs in with osslsigncode and returns the output path, cached per
// (input, options). Extra args go before -in.
func osslSign(tb testing.TB, in string, args ...string) string {
	tb.Helper()
	p := testPKI(tb)
	key := "ossl:" + in + ":" + strings.Join(args, " ")
	return cached(tb, key, func() string {
		out := filepath.Join(cacheDir, fmt.Sprintf("signed-%08x.exe", hashString(key)))
		return testpe.OsslSign(tb, in, out, append([]string{"-certs", p.Chain, "-key", p.LeafKey}, args...)...)
	})
}

func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// osslVerify runs osslsigncode verify and returns its output and whether it
// succeeded; it never fails the test by itself.
func osslVerify(tb testing.TB, path string, args ...string) (string, bool) {
	tb.Helper()
	full := append([]string{"verify"}, args...)
	full = append(full, "-in", path)
	out, err := testcmd.Output("osslsigncode", full...)
	return out, err == nil
}

var (
	reCurrent    = regexp.MustCompile(`Current message digest\s*:\s*([0-9A-Fa-f]+)`)
	reCalculated = regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-Fa-f]+)`)
	rePECsum     = regexp.MustCompile(`(?m)^PE checksum\s*:\s*([0-9A-Fa-f]{8})`)
	reCalcCsum   = regexp.MustCompile(`(?m)^Calculated PE checksum\s*:\s*([0-9A-Fa-f]{8})`)
	reCurCsum    = regexp.MustCompile(`(?m)^Current PE checksum\s*:\s*([0-9A-Fa-f]{8})`)
)

// osslDigests returns osslsigncode's current (embedded) and calculated
// digests of the primary signature.
func osslDigests(tb testing.TB, out string) (current, calculated []byte) {
	tb.Helper()
	m1, m2 := reCurrent.FindStringSubmatch(out), reCalculated.FindStringSubmatch(out)
	if m1 == nil || m2 == nil {
		tb.Fatalf("no digest lines in osslsigncode output:\n%s", out)
	}
	a, _ := hex.DecodeString(m1[1])
	b, _ := hex.DecodeString(m2[1])
	return a, b
}

// osslChecksums returns the stored and calculated PE checksum osslsigncode
// reports (one "PE checksum" line when they agree).
func osslChecksums(tb testing.TB, out string) (current, calculated uint32) {
	tb.Helper()
	parse := func(s string) uint32 {
		var v uint32
		fmt.Sscanf(s, "%x", &v)
		return v
	}
	if m := rePECsum.FindStringSubmatch(out); m != nil {
		return parse(m[1]), parse(m[1])
	}
	m1, m2 := reCurCsum.FindStringSubmatch(out), reCalcCsum.FindStringSubmatch(out)
	if m1 == nil || m2 == nil {
		tb.Fatalf("no checksum lines in osslsigncode output:\n%s", out)
	}
	return parse(m1[1]), parse(m2[1])
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func parseBytes(tb testing.TB, b []byte) *File {
	tb.Helper()
	f, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return f
}

func parsePath(tb testing.TB, path string) *File {
	tb.Helper()
	fh, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	f, err := Parse(fh, st.Size())
	if err != nil {
		tb.Fatalf("Parse(%s): %v", path, err)
	}
	return f
}

func imageHash(tb testing.TB, f *File, h crypto.Hash) []byte {
	tb.Helper()
	m, err := f.ImageHash(h)
	if err != nil {
		tb.Fatalf("ImageHash(%v): %v", h, err)
	}
	return m[h]
}

func wantCode(tb testing.TB, err error, code reason.Code) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("want a %s error, got nil", code)
	}
	if got := reason.Of(err, ""); got != code {
		tb.Fatalf("want reason %q, got %q (%v)", code, got, err)
	}
}

// --- a minimal PKCS#7 reader, for tests only (package cms is the real one) ---

type p7ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type p7Encap struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type p7SignedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	Encap            p7Encap
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      asn1.RawValue
}

type p7SignerInfo struct {
	Version         int
	SID             asn1.RawValue
	DigestAlgorithm asn1.RawValue
	AuthAttrs       asn1.RawValue `asn1:"optional,tag:0"`
	SigAlg          asn1.RawValue
	Signature       []byte
	UnauthAttrs     asn1.RawValue `asn1:"optional,tag:1"`
}

type p7Attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue
}

// p7 is what the tests need from a SignedData.
type p7 struct {
	Content     []byte // DER of the encapsulated content (SpcIndirectDataContent)
	ContentType asn1.ObjectIdentifier
	AuthAttrs   []p7Attribute
	UnauthAttrs []p7Attribute
}

func parseP7(tb testing.TB, der []byte) *p7 {
	tb.Helper()
	var ci p7ContentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) != 0 {
		tb.Fatalf("ContentInfo: %v (rest %d)", err, len(rest))
	}
	var sd p7SignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		tb.Fatalf("SignedData: %v", err)
	}
	out := &p7{Content: sd.Encap.Content.Bytes, ContentType: sd.Encap.ContentType}
	var si p7SignerInfo
	if _, err := asn1.Unmarshal(sd.SignerInfos.Bytes, &si); err != nil {
		tb.Fatalf("SignerInfo: %v", err)
	}
	out.AuthAttrs = parseAttrs(tb, si.AuthAttrs.Bytes)
	out.UnauthAttrs = parseAttrs(tb, si.UnauthAttrs.Bytes)
	return out
}

func parseAttrs(tb testing.TB, b []byte) []p7Attribute {
	tb.Helper()
	var out []p7Attribute
	for len(b) > 0 {
		var a p7Attribute
		rest, err := asn1.Unmarshal(b, &a)
		if err != nil {
			tb.Fatalf("attribute: %v", err)
		}
		out = append(out, a)
		b = rest
	}
	return out
}

// attrValue returns the single value DER of attribute oid.
func attrValue(tb testing.TB, attrs []p7Attribute, oid asn1.ObjectIdentifier) []byte {
	tb.Helper()
	for _, a := range attrs {
		if a.Type.Equal(oid) {
			var v asn1.RawValue
			if _, err := asn1.Unmarshal(a.Values.Bytes, &v); err != nil {
				tb.Fatal(err)
			}
			return v.FullBytes
		}
	}
	tb.Fatalf("attribute %v not found", oid)
	return nil
}

// signatures returns the parsed PKCS#7 of every certificate table entry.
func signatures(tb testing.TB, f *File) []*p7 {
	tb.Helper()
	certs, err := f.Certificates()
	if err != nil {
		tb.Fatalf("Certificates: %v", err)
	}
	var out []*p7
	for _, c := range certs {
		if c.Type != WinCertTypePKCSSigned || c.Revision != WinCertRevision2 {
			tb.Fatalf("entry at 0x%x: revision 0x%x type 0x%x", c.Offset, c.Revision, c.Type)
		}
		out = append(out, parseP7(tb, c.Data))
	}
	return out
}

// --- a synthetic PE builder, for precise malformations ---

type synthOpts struct {
	pe32     bool
	nrva     uint32 // NumberOfRvaAndSizes (default 16)
	gap      int    // bytes of gap between the two sections
	trailer  int    // bytes after the last section
	certSize int    // when >0, append a certificate table with one entry of this data size
	textSize int    // size of the first section (default 0x1200)
}

// synthPE builds a small, valid PE image with two sections.
func synthPE(o synthOpts) []byte {
	if o.nrva == 0 {
		o.nrva = 16
	}
	const lfanew = 0x80
	dirStart := 112
	magic := uint16(MagicPE32Plus)
	if o.pe32 {
		dirStart, magic = 96, MagicPE32
	}
	optSize := dirStart + 8*int(min(o.nrva, 16))
	secTab := lfanew + 24 + optSize
	soh := 0x400
	rng := rand.New(rand.NewPCG(1, 2))
	s1off, s1len := soh, 0x1200
	if o.textSize > 0 {
		s1len = o.textSize
	}
	s2off, s2len := s1off+s1len+o.gap, 0x200
	end := s2off + s2len + o.trailer
	b := make([]byte, end)
	for i := soh; i+8 <= end; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], lfanew)
	copy(b[lfanew:], "PE\x00\x00")
	coff := b[lfanew+4:]
	binary.LittleEndian.PutUint16(coff[0:], 0x8664)
	binary.LittleEndian.PutUint16(coff[2:], 2)
	binary.LittleEndian.PutUint16(coff[16:], uint16(optSize))
	opt := b[lfanew+24:]
	binary.LittleEndian.PutUint16(opt, magic)
	binary.LittleEndian.PutUint32(opt[32:], 0x1000) // SectionAlignment
	binary.LittleEndian.PutUint32(opt[36:], 0x200)  // FileAlignment
	binary.LittleEndian.PutUint32(opt[60:], uint32(soh))
	binary.LittleEndian.PutUint32(opt[64:], 0x12345678) // CheckSum, excluded from the hash
	binary.LittleEndian.PutUint32(opt[dirStart-4:], o.nrva)
	for i, s := range []struct {
		name     string
		off, len int
	}{{".text", s1off, s1len}, {".data", s2off, s2len}} {
		h := b[secTab+40*i:]
		copy(h, s.name)
		binary.LittleEndian.PutUint32(h[8:], uint32(s.len))
		binary.LittleEndian.PutUint32(h[12:], uint32(0x1000*(i+1)))
		binary.LittleEndian.PutUint32(h[16:], uint32(s.len))
		binary.LittleEndian.PutUint32(h[20:], uint32(s.off))
	}
	if o.certSize > 0 {
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		off := len(b)
		l := (8 + o.certSize + 7) &^ 7
		ent := make([]byte, l)
		binary.LittleEndian.PutUint32(ent, uint32(l))
		binary.LittleEndian.PutUint16(ent[4:], WinCertRevision2)
		binary.LittleEndian.PutUint16(ent[6:], WinCertTypePKCSSigned)
		// A DER SEQUENCE of the requested size (content of zeros).
		der := derSeq(make([]byte, o.certSize-derHdrLen(o.certSize)))
		copy(ent[8:], der)
		b = append(b, ent...)
		dir := b[lfanew+24+dirStart+32:]
		binary.LittleEndian.PutUint32(dir, uint32(off))
		binary.LittleEndian.PutUint32(dir[4:], uint32(l))
	}
	return b
}

// derHdrLen returns the header length of a DER element of total size n.
func derHdrLen(n int) int {
	switch {
	case n-2 < 0x80:
		return 2
	case n-3 < 0x100:
		return 3
	default:
		return 4
	}
}

func derSeq(content []byte) []byte {
	b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: content})
	if err != nil {
		panic(err)
	}
	return b
}

// refImageHash is an independent, deliberately naive implementation of the
// image hash for contiguous images: hash the whole file linearly except the
// checksum, the security directory entry and the certificate table, then pad
// an unsigned file to 8 bytes (osslsigncode's algorithm).
func refImageHash(b []byte, h crypto.Hash, checksumOff, certDirOff int, certOff, certLen int) []byte {
	w := h.New()
	skip := func(i int) bool {
		return (i >= checksumOff && i < checksumOff+4) ||
			(certDirOff > 0 && i >= certDirOff && i < certDirOff+8) ||
			(certLen > 0 && i >= certOff && i < certOff+certLen)
	}
	for i := range b {
		if !skip(i) {
			w.Write(b[i : i+1])
		}
	}
	if certLen == 0 {
		w.Write(make([]byte, (8-len(b)%8)%8))
	}
	return w.Sum(nil)
}
