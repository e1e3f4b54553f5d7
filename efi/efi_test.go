package efi_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/internal/testpki"
)

func TestGUID(t *testing.T) {
	for _, tc := range []struct {
		text string
		wire string // hex of the 16 wire bytes
	}{
		// Bytes as efitools' cert-to-efi-sig-list writes the type.
		{"a5c059a1-94e4-4aa7-87b5-ab155c2bf072", "a159c0a5e494a74a87b5ab155c2bf072"},
		{"c1c41626-504c-4092-aca9-41f936934328", "2616c4c14c509240aca941f936934328"},
		{"605dab50-e046-4300-abb6-3dd810dd8b23", "50ab5d6046e00043abb63dd810dd8b23"},
		{"00000000-0000-0000-0000-000000000000", "00000000000000000000000000000000"},
	} {
		g, err := efi.ParseGUID(tc.text)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(g[:]) != tc.wire || g.String() != tc.text {
			t.Fatalf("%s: wire %x text %s", tc.text, g[:], g)
		}
		if u, err := efi.ParseGUID(strings.ToUpper(tc.text)); err != nil || u != g {
			t.Fatalf("upper case %s: %v", tc.text, err)
		}
		j, _ := json.Marshal(g)
		var back efi.GUID
		if err := json.Unmarshal(j, &back); err != nil || back != g || string(j) != `"`+tc.text+`"` {
			t.Fatalf("JSON %s: %s %v", tc.text, j, err)
		}
	}
	for _, bad := range []string{"", "a5c059a1-94e4-4aa7-87b5-ab155c2bf07", "a5c059a1-94e4-4aa7-87b5-ab155c2bf0722",
		"a5c059a1094e4-4aa7-87b5-ab155c2bf072", "a5c059a1-94e4-4aa7-87b5-ab155c2bf0zz", "{a5c059a1-94e4-4aa7-87b5-ab155c2bf07}"} {
		if _, err := efi.ParseGUID(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
	if efi.TypeName(efi.CertX509) != "x509" || efi.TypeName(efi.CertX509SHA384) != "x509_sha384" ||
		efi.TypeName(efi.ShimLock) != "605dab50-e046-4300-abb6-3dd810dd8b23" {
		t.Fatal("TypeName")
	}
	if n, ok := efi.DataSize(efi.CertSHA256); !ok || n != 32 {
		t.Fatal("DataSize sha256")
	}
	if _, ok := efi.DataSize(efi.CertX509); ok {
		t.Fatal("DataSize x509")
	}
}

func TestVariable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		attrs efi.Attributes
		str   string
		data  []byte
		err   error
	}{
		{"SecureBoot on", []byte{6, 0, 0, 0, 1}, efi.BootServiceAccess | efi.RuntimeAccess, "BS|RT", []byte{1}, nil},
		{"db", []byte{0x27, 0, 0, 0, 0xaa, 0xbb}, 0x27, "NV|BS|RT|AT", []byte{0xaa, 0xbb}, nil},
		{"unknown bits", []byte{0x07, 0x01, 0, 0x80}, 0x80000107, "NV|BS|RT|0x80000100", []byte{}, nil},
		{"no bits, no data", []byte{0, 0, 0, 0}, 0, "0", []byte{}, nil},
		{"empty", nil, 0, "", nil, efi.ErrTruncated},
		{"three bytes", []byte{7, 0, 0}, 0, "", nil, efi.ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := efi.ParseVariable(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				var pe *efi.ParseError
				if !errors.As(err, &pe) || pe.Offset != 0 {
					t.Fatalf("%v: no ParseError at 0", err)
				}
				return
			}
			if v.Attributes != tc.attrs || v.Attributes.String() != tc.str || !bytes.Equal(v.Data, tc.data) {
				t.Fatalf("got %v (%s) %x", uint32(v.Attributes), v.Attributes, v.Data)
			}
			if b, _ := v.MarshalBinary(); !bytes.Equal(b, tc.in) {
				t.Fatalf("MarshalBinary %x", b)
			}
		})
	}
}

func TestFileName(t *testing.T) {
	if p := efi.DBX.Path(); p != "/sys/firmware/efi/efivars/dbx-d719b2cb-3d3a-4596-a3bc-dad00e67656f" {
		t.Fatal(p)
	}
	for _, tc := range []struct {
		in  string
		id  efi.VarID
		bad bool
	}{
		{"SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c", efi.SecureBoot, false},
		{"MokListRT-605dab50-e046-4300-abb6-3dd810dd8b23", efi.MokListRT, false},
		{"Boot-0001-8be4df61-93ca-11d2-aa0d-00e098032b8c", efi.VarID{Name: "Boot-0001", GUID: efi.GlobalVariable}, false},
		{"-8be4df61-93ca-11d2-aa0d-00e098032b8c", efi.VarID{}, true},
		{"SecureBoot8be4df61-93ca-11d2-aa0d-00e098032b8c", efi.VarID{}, true},
		{"SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8x", efi.VarID{}, true},
		{"x", efi.VarID{}, true},
	} {
		id, err := efi.ParseFileName(tc.in)
		if (err != nil) != tc.bad || id != tc.id {
			t.Fatalf("%s: %+v %v", tc.in, id, err)
		}
		if !tc.bad && id.FileName() != tc.in {
			t.Fatalf("FileName %s", id.FileName())
		}
	}
}

// rawList builds an EFI_SIGNATURE_LIST header with arbitrary size fields
// followed by body.
func rawList(typ efi.GUID, listSize, hdrSize, sigSize uint32, body []byte) []byte {
	b := append([]byte(nil), typ[:]...)
	b = binary.LittleEndian.AppendUint32(b, listSize)
	b = binary.LittleEndian.AppendUint32(b, hdrSize)
	b = binary.LittleEndian.AppendUint32(b, sigSize)
	return append(b, body...)
}

func mustEncode(t testing.TB, lists ...efi.SignatureList) []byte {
	t.Helper()
	b, err := efi.AppendSignatureLists(nil, lists...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testOwner = efi.MustParseGUID("11111111-2222-3333-4444-555555555555")

// TestParseMalformed: every size rule, with its sentinel, its offset and
// the lists before the fault.
func TestParseMalformed(t *testing.T) {
	h1 := bytes.Repeat([]byte{0x11}, 32)
	good := mustEncode(t, efi.HashList(efi.CertSHA256, testOwner, h1)) // 76 bytes
	unknown := efi.MustParseGUID("01234567-89ab-cdef-0123-456789abcdef")
	for _, tc := range []struct {
		name   string
		in     []byte
		err    error
		offset int
		lists  int
		detail string
	}{
		{"short header", good[:27], efi.ErrTruncated, 0, 0, "needs 28 bytes, 27 left"},
		{"second header short", append(append([]byte(nil), good...), 1, 2, 3), efi.ErrTruncated, 76, 1, "3 left"},
		{"list size below header", rawList(unknown, 27, 0, 16, nil), efi.ErrMalformed, 0, 0, "smaller than the 28-byte"},
		{"list size zero", rawList(efi.CertSHA256, 0, 0, 48, make([]byte, 48)), efi.ErrMalformed, 0, 0, "SignatureListSize 0"},
		{"header larger than list", rawList(unknown, 44, 17, 16, make([]byte, 16)), efi.ErrMalformed, 0, 0, "SignatureHeaderSize 17"},
		{"header size overflow", rawList(unknown, 44, 0xffffffff, 16, make([]byte, 16)), efi.ErrMalformed, 0, 0, "SignatureHeaderSize 4294967295"},
		{"list runs past the end", good[:75], efi.ErrTruncated, 0, 0, "SignatureListSize 76 exceeds the 75"},
		{"huge list size", rawList(unknown, 0xffffffff, 0, 16, make([]byte, 16)), efi.ErrTruncated, 0, 0, "4294967295"},
		{"signature size zero", rawList(unknown, 28, 0, 0, nil), efi.ErrMalformed, 0, 0, "SignatureSize 0 is smaller"},
		{"signature size 15", rawList(unknown, 43, 0, 15, make([]byte, 15)), efi.ErrMalformed, 0, 0, "SignatureSize 15"},
		{"size does not divide", rawList(unknown, 28+40, 0, 16, make([]byte, 40)), efi.ErrMalformed, 0, 0, "does not divide the 40"},
		{"sha256 of 33 bytes", rawList(efi.CertSHA256, 28+49, 0, 49, make([]byte, 49)), efi.ErrMalformed, 0, 0, "type sha256, which needs 48"},
		{"x509_sha256 without time", rawList(efi.CertX509SHA256, 28+48, 0, 48, make([]byte, 48)), efi.ErrMalformed, 0, 0, "needs 64"},
		{"x509 with a header", rawList(efi.CertX509, 28+4+20, 4, 20, make([]byte, 24)), efi.ErrMalformed, 0, 0, "SignatureHeaderSize 4 for type x509"},
		{"fault in third list", append(append(append([]byte(nil), good...), good...), rawList(unknown, 28, 0, 8, nil)...), efi.ErrMalformed, 152, 2, "SignatureSize 8"},
		{"zero padding", make([]byte, 64), efi.ErrMalformed, 0, 0, "SignatureListSize 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lists, err := efi.ParseSignatureLists(tc.in)
			var pe *efi.ParseError
			if !errors.Is(err, tc.err) || !errors.As(err, &pe) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if pe.Offset != tc.offset || len(lists) != tc.lists || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("offset %d lists %d (%v), want offset %d lists %d %q", pe.Offset, len(lists), err, tc.offset, tc.lists, tc.detail)
			}
		})
	}
}

// TestParseTypes: every type the specification defines decodes, unknown
// types and headers are kept opaque, and the encoder writes back the same
// bytes.
func TestParseTypes(t *testing.T) {
	unknown := efi.MustParseGUID("01234567-89ab-cdef-0123-456789abcdef")
	rev := efi.Time{Year: 2023, Month: 5, Day: 9, Hour: 17, Minute: 30, TimeZone: 60}
	tbs := bytes.Repeat([]byte{0xcc}, 48)
	lists := []efi.SignatureList{
		efi.HashList(efi.CertSHA1, testOwner, make([]byte, 20)),
		efi.HashList(efi.CertSHA224, testOwner, make([]byte, 28)),
		efi.HashList(efi.CertSHA256, efi.ShimLock, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)),
		efi.HashList(efi.CertSHA384, testOwner, make([]byte, 48)),
		efi.HashList(efi.CertSHA512, testOwner, make([]byte, 64)),
		efi.HashList(efi.CertRSA2048, testOwner, make([]byte, 256)),
		efi.HashList(efi.CertX509SHA384, testOwner, efi.CertHashData(tbs, rev)),
		efi.HashList(efi.CertX509SHA256, testOwner, efi.CertHashData(tbs[:32], efi.Time{})),
		{Type: unknown, Header: []byte("hdr"), SignatureSize: 21, Signatures: []efi.SignatureData{{Owner: testOwner, Data: []byte("abcde")}}},
		{Type: unknown, SignatureSize: 16}, // no entries
		efi.X509List(testOwner, []byte("not a certificate")),
	}
	b := mustEncode(t, lists...)
	got, err := efi.ParseSignatureLists(b)
	if err != nil || len(got) != len(lists) {
		t.Fatalf("%d lists, %v", len(got), err)
	}
	if again := mustEncode(t, got...); !bytes.Equal(again, b) {
		t.Fatal("encode(parse(b)) != b")
	}
	es := efi.Entries(got)
	if len(es) != 11 {
		t.Fatalf("%d entries", len(es))
	}
	if es[2].Owner != efi.ShimLock || !bytes.Equal(es[3].Hash, bytes.Repeat([]byte{2}, 32)) || es[3].List != 2 || es[3].Index != 1 {
		t.Fatalf("sha256 entry %+v", es[3])
	}
	if es[6].Hash != nil || len(es[6].Data) != 256 {
		t.Fatal("rsa2048 entry decoded as a hash")
	}
	e := es[7]
	if !bytes.Equal(e.Hash, tbs) || e.Revocation == nil || *e.Revocation != rev {
		t.Fatalf("x509_sha384 %+v", e)
	}
	if tm, err := e.Revocation.Time(); err != nil || !tm.Equal(time.Date(2023, 5, 9, 16, 30, 0, 0, time.UTC)) {
		t.Fatalf("revocation time %v %v", tm, err)
	}
	if !es[8].Revocation.IsZero() {
		t.Fatal("zero revocation")
	}
	if string(got[8].Header) != "hdr" || string(es[9].Data) != "abcde" || es[9].Hash != nil {
		t.Fatal("unknown type not kept opaque")
	}
	last := es[10]
	if last.Certificate != nil || last.Err == nil || !strings.Contains(last.Err.Error(), "entry 0") {
		t.Fatalf("bad certificate: %+v", last)
	}
	if got[1].Offset != 64 || got[2].Signatures[1].Offset != 64+72+28+48 {
		t.Fatalf("offsets %d %d", got[1].Offset, got[2].Signatures[1].Offset)
	}
	// The encoder refuses what the parser would.
	for _, bad := range []efi.SignatureList{
		{Type: efi.CertSHA256, Signatures: []efi.SignatureData{{Data: make([]byte, 31)}}},
		{Type: unknown, Signatures: []efi.SignatureData{{Data: make([]byte, 3)}, {Data: make([]byte, 4)}}},
		{Type: unknown},
		{Type: unknown, SignatureSize: 8},
		{Type: efi.CertX509, Header: []byte{0}, Signatures: []efi.SignatureData{{Data: make([]byte, 3)}}},
	} {
		out, err := efi.AppendSignatureLists([]byte("keep"), lists[0], bad)
		if !errors.Is(err, efi.ErrMalformed) || string(out) != "keep" {
			t.Fatalf("%+v: %v %q", bad, err, out)
		}
	}
	if lists, err := efi.ParseSignatureLists(nil); err != nil || len(lists) != 0 {
		t.Fatal("empty database")
	}
}

func TestTime(t *testing.T) {
	for _, tc := range []struct {
		in   efi.Time
		want time.Time
		bad  bool
	}{
		{efi.Time{Year: 2010, Month: 3, Day: 31, Hour: 1, TimeZone: efi.UnspecifiedTimezone}, time.Date(2010, 3, 31, 1, 0, 0, 0, time.UTC), false},
		{efi.Time{Year: 2010, Month: 1, Day: 1, TimeZone: -120}, time.Date(2010, 1, 1, 2, 0, 0, 0, time.UTC), false},
		{efi.Time{Year: 2010, Month: 2, Day: 30}, time.Time{}, true},
		{efi.Time{Year: 2010, Month: 13, Day: 1}, time.Time{}, true},
		{efi.Time{Year: 2010, Month: 1, Day: 1, TimeZone: 1441}, time.Time{}, true},
		{efi.Time{}, time.Time{}, true},
	} {
		got, err := tc.in.Time()
		if (err != nil) != tc.bad || !got.Equal(tc.want) {
			t.Fatalf("%+v: %v %v", tc.in, got, err)
		}
		b, _ := tc.in.MarshalBinary()
		l := efi.HashList(efi.CertX509SHA256, testOwner, append(make([]byte, 32), b...))
		back, err := efi.ParseSignatureLists(mustEncode(t, l))
		if err != nil || *efi.Entries(back)[0].Revocation != tc.in {
			t.Fatalf("time round trip %+v: %v", tc.in, err)
		}
	}
}

// TestParseAuthenticatedEfitools: sign-efi-sig-list's output is split
// into its header, PKCS#7 and the exact list it was given.
func TestParseAuthenticatedEfitools(t *testing.T) {
	dir := t.TempDir()
	esl := mustEncode(t, efi.HashList(efi.CertSHA256, testOwner, bytes.Repeat([]byte{7}, 32)))
	in := filepath.Join(dir, "in.esl")
	out := filepath.Join(dir, "out.auth")
	os.WriteFile(in, esl, 0o644)
	kek := testpki.NewRoot(testpki.Options{CommonName: "KEK"})
	crt, key := kek.WriteFiles(t, dir, "kek")
	testcmd.Run(t, "sign-efi-sig-list", "-t", "2025-01-02 03:04:05", "-c", crt, "-k", key, "dbx", in, out)
	b, _ := os.ReadFile(out)
	a, err := efi.ParseAuthenticated(b)
	if err != nil || !bytes.Equal(a.Payload, esl) || len(a.PKCS7) == 0 || a.PKCS7[0] != 0x30 {
		t.Fatalf("%v payload %x", err, a.Payload)
	}
	if got := a.TimeStamp; got.Year != 2025 || got.Month != 1 || got.Day != 2 || got.Hour != 3 || got.Minute != 4 || got.Second != 5 {
		t.Fatalf("timestamp %+v", got)
	}
	lists, form, err := efi.ReadDatabase(b)
	if err != nil || form != efi.FormAuthenticated || len(lists) != 1 || lists[0].Offset != len(b)-len(esl) {
		t.Fatalf("ReadDatabase: %v %s %+v", err, form, lists)
	}
}
