package ima_test

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// TestSharedLists checks the real Keylime lists: every template hash the
// package computes equals the one the list prints, the kernel's text
// prints back identically, the binary form parses back to the same
// entries, and the PCR 10 replay equals one done with openssl over
// template data built by hand.
func TestSharedLists(t *testing.T) {
	for _, l := range sharedLists(t) {
		t.Run(l.name, func(t *testing.T) {
			recs := parseASCII(t, l.text)
			lines := strings.Split(strings.TrimRight(string(l.text), "\n"), "\n")
			if len(recs) != len(lines) || len(recs) == 0 {
				t.Fatalf("%d records from %d lines", len(recs), len(lines))
			}
			pcr1, pcr256 := make([]byte, sha1.Size), make([]byte, sha256.Size)
			violations, checked := 0, 0
			for i, r := range recs {
				if got := r.String(); got != lines[i] {
					t.Errorf("entry %d prints as\n%s\nnot\n%s", i, got, lines[i])
				}
				data := handNG(r.DigestAlgo, r.Digest, r.Name)
				if lib, err := r.HashedData(); err != nil || !bytes.Equal(lib, data) {
					t.Fatalf("entry %d: template data %x, %v; by hand %x", i, lib, err, data)
				}
				d1, d256 := r.TemplateHash[:], opensslDigest(t, "sha256", data)
				if r.TemplateHash == [20]byte{} {
					violations++
					d1, d256 = bytes.Repeat([]byte{0xff}, 20), bytes.Repeat([]byte{0xff}, 32)
				} else {
					c := r
					if err := c.SetTemplateHash(); err != nil {
						t.Fatal(err)
					}
					if c.TemplateHash != r.TemplateHash {
						t.Errorf("entry %d (%s): computed template hash %x, list prints %x", i, r.Name, c.TemplateHash, r.TemplateHash)
					}
					if o := opensslDigest(t, "sha1", data); !bytes.Equal(o, r.TemplateHash[:]) {
						t.Errorf("entry %d: openssl sha1 %x, list prints %x", i, o, r.TemplateHash)
					}
					checked++
				}
				pcr1 = opensslDigest(t, "sha1", append(pcr1, d1...))
				pcr256 = opensslDigest(t, "sha256", append(pcr256, d256...))
			}
			if checked == 0 {
				t.Fatal("no template hash was checked")
			}
			list := encode(t, recs)
			st := parse(t, list)
			if st.Entries != len(recs) || st.Violations != violations || st.Mismatches != 0 || st.Offset != int64(len(list)) {
				t.Fatalf("replay: %d entries, %d violations, %d mismatches, offset %d of %d", st.Entries, st.Violations, st.Mismatches, st.Offset, len(list))
			}
			if !bytes.Equal(st.PCR(crypto.SHA1, 10), pcr1) || !bytes.Equal(st.PCR(crypto.SHA256, 10), pcr256) {
				t.Fatalf("PCR 10 sha1 %x sha256 %x; openssl replay %x %x", st.PCR(crypto.SHA1, 10), st.PCR(crypto.SHA256, 10), pcr1, pcr256)
			}
			if st.PCRs != 1<<10 {
				t.Errorf("PCR mask %#x", st.PCRs)
			}
			if want := recs[0].DigestAlgo + ":" + hex.EncodeToString(recs[0].Digest); st.BootAggregate != want {
				t.Errorf("boot aggregate %q, want %q", st.BootAggregate, want)
			}
			if again := parse(t, list); !reflect.DeepEqual(again, st) {
				t.Fatal("replay is not deterministic")
			}
			p := ima.NewParser(bytes.NewReader(list), ima.Options{})
			for i := 0; ; i++ {
				e, err := p.Next()
				if err == io.EOF {
					if i != len(recs) {
						t.Fatalf("parsed %d entries back, want %d", i, len(recs))
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := e.Record(); !reflect.DeepEqual(got, recs[i]) || !e.Known {
					t.Fatalf("entry %d parses back as %+v, want %+v", i, got, recs[i])
				}
			}
		})
	}
}

// TestTemplates encodes, parses and hashes each template form.
func TestTemplates(t *testing.T) {
	sha := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	legacyDigest := sha1.Sum([]byte("/usr/bin/ls"))
	tests := []struct {
		name  string
		rec   ima.Record
		known bool
		ascii bool
	}{
		{"ima-ng", ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "sha256", Digest: sha("a"), Name: "/usr/bin/a"}, true, true},
		{"ima-ng md5", ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "md5", Digest: make([]byte, 16), Name: "/old"}, true, true},
		{"ima-ng sm3", ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "sm3", Digest: sha("sm3"), Name: "/sm3"}, true, true},
		{"ima-ng unknown algo", ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "blake9", Digest: sha("x")[:24], Name: "/b"}, true, true},
		{"ima-ng empty name", ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "sha1", Digest: legacyDigest[:]}, true, true},
		{"ima-ng pcr 11", ima.Record{PCR: 11, Template: "ima-ng", DigestAlgo: "sha256", Digest: sha("b"), Name: "/b"}, true, true},
		{"ima-ng pcr 5", ima.Record{PCR: 5, Template: "ima-ng", DigestAlgo: "sha256", Digest: sha("c"), Name: "/c"}, true, true},
		{"ima-sig", ima.Record{PCR: 10, Template: "ima-sig", DigestAlgo: "sha256", Digest: sha("s"), Name: "/usr/bin/s", Sig: []byte{3, 2, 4, 1, 2, 3, 4, 0, 2, 0xaa, 0xbb}}, true, true},
		{"ima-sig unsigned", ima.Record{PCR: 10, Template: "ima-sig", DigestAlgo: "sha256", Digest: sha("u"), Name: "/u"}, true, true},
		{"ima-sigv2", ima.Record{PCR: 10, Template: "ima-sigv2", DigestType: "verity", DigestAlgo: "sha256", Digest: sha("v"), Name: "/v", Sig: []byte{1}}, true, true},
		{"ima-ngv2", ima.Record{PCR: 10, Template: "ima-ngv2", DigestType: "ima", DigestAlgo: "sha512", Digest: append(sha("1"), sha("2")...), Name: "/n"}, true, true},
		{"ima-buf", ima.Record{PCR: 10, Template: "ima-buf", DigestAlgo: "sha256", Digest: sha("cmd"), Name: "kexec-cmdline", Buf: []byte("root=/dev/sda1 ro")}, true, true},
		{"legacy ima", ima.Record{PCR: 10, Template: "ima", DigestAlgo: "sha1", Digest: legacyDigest[:], Name: "/usr/bin/ls"}, true, true},
		{"legacy ima 255", ima.Record{PCR: 10, Template: "ima", DigestAlgo: "sha1", Digest: legacyDigest[:], Name: "/" + strings.Repeat("x", 254)}, true, true},
		{"custom format", ima.Record{PCR: 10, Template: "d-ng|n-ng", Data: handNG("sha256", sha("f"), "/f"), DigestAlgo: "sha256", Digest: sha("f"), Name: "/f"}, true, false},
		{"unknown template", ima.Record{PCR: 10, Template: "vendor-x", Data: []byte("opaque bytes")}, false, false},
		{"unknown template empty", ima.Record{PCR: 10, Template: "vendor-y", Data: []byte{}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rec
			if err := r.SetTemplateHash(); err != nil {
				t.Fatal(err)
			}
			list := encode(t, []ima.Record{r})
			p := ima.NewParser(bytes.NewReader(list), ima.Options{})
			e, err := p.Next()
			if err != nil {
				t.Fatal(err)
			}
			if e.Known != tt.known || e.Size != len(list) {
				t.Fatalf("known %v size %d, want %v %d", e.Known, e.Size, tt.known, len(list))
			}
			if got := e.Record(); !reflect.DeepEqual(got, r) {
				t.Fatalf("parsed back as %+v\nwant %+v", got, r)
			}
			if _, err := p.Next(); err != io.EOF {
				t.Fatalf("after the entry: %v", err)
			}
			st := parse(t, list)
			if st.Mismatches != 0 || st.Violations != 0 || st.PCRs != 1<<r.PCR {
				t.Fatalf("replay: %d mismatches, %d violations, mask %#x", st.Mismatches, st.Violations, st.PCRs)
			}
			if tt.ascii {
				back, err := ima.ParseASCIILine(r.String())
				if err != nil {
					t.Fatalf("%s: %v", r.String(), err)
				}
				if !reflect.DeepEqual(back, r) {
					t.Fatalf("ASCII %q reads back as %+v", r.String(), back)
				}
			}
		})
	}
}

// TestLegacyTemplate checks the "ima" template against the kernel's rules,
// built by hand: binary digest | u32 len | name without NUL, template hash
// over the digest and the name padded to 256 bytes.
func TestLegacyTemplate(t *testing.T) {
	digest := sha1.Sum([]byte("content"))
	name := "/usr/sbin/init"
	padded := append(append(digest[:], name...), make([]byte, 256-len(name))...)
	th := sha1.Sum(padded)
	if o := opensslDigest(t, "sha1", padded); !bytes.Equal(o, th[:]) {
		t.Fatal("openssl disagrees with crypto/sha1")
	}
	var want []byte
	want = binary.LittleEndian.AppendUint32(want, 10)
	want = append(want, th[:]...)
	want = binary.LittleEndian.AppendUint32(want, 3)
	want = append(want, "ima"...)
	want = append(want, digest[:]...)
	want = binary.LittleEndian.AppendUint32(want, uint32(len(name)))
	want = append(want, name...)

	line := fmt.Sprintf("10 %x ima %x %s", th, digest, name)
	r, err := ima.ParseASCIILine(line)
	if err != nil {
		t.Fatal(err)
	}
	if got := encode(t, []ima.Record{r}); !bytes.Equal(got, want) {
		t.Fatalf("binary\n%x\nwant\n%x", got, want)
	}
	st := parse(t, want)
	if st.Mismatches != 0 {
		t.Fatal("legacy template hash mismatch")
	}
	h := sha256.Sum256(padded)
	pcr := sha256.Sum256(append(make([]byte, 32), h[:]...))
	if !bytes.Equal(st.PCR(crypto.SHA256, 10), pcr[:]) {
		t.Fatal("legacy sha256 bank is not over the padded data")
	}
	if _, err := ima.ParseASCIILine(fmt.Sprintf("10 %x ima %x /%s", th, digest, strings.Repeat("x", 255))); err == nil {
		t.Fatal("a legacy name of 256 bytes was accepted")
	}
}

// TestViolationAndPCRs checks the kernel's violation rule and that entries
// for another PCR leave PCR 10 alone.
func TestViolationAndPCRs(t *testing.T) {
	good := imatest.Record(3)
	viol := ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "sha256", Digest: make([]byte, 20), Name: "/var/log/x"}
	other := imatest.Record(4)
	other.PCR = 11
	if err := other.SetTemplateHash(); err != nil {
		t.Fatal(err)
	}
	st := parse(t, encode(t, []ima.Record{good, viol, other}))
	data, _ := good.HashedData()
	d256 := sha256.Sum256(data)
	p1 := sha1.Sum(append(make([]byte, 20), good.TemplateHash[:]...))
	p1 = sha1.Sum(append(p1[:], bytes.Repeat([]byte{0xff}, 20)...))
	p256 := sha256.Sum256(append(make([]byte, 32), d256[:]...))
	p256 = sha256.Sum256(append(p256[:], bytes.Repeat([]byte{0xff}, 32)...))
	if !bytes.Equal(st.PCR(crypto.SHA1, 10), p1[:]) || !bytes.Equal(st.PCR(crypto.SHA256, 10), p256[:]) {
		t.Fatal("violation not extended as all ones")
	}
	if st.Violations != 1 || st.Mismatches != 0 || st.PCRs != 1<<10|1<<11 || st.Entries != 3 {
		t.Fatalf("%+v", st)
	}
	o := sha1.Sum(append(make([]byte, 20), other.TemplateHash[:]...))
	if !bytes.Equal(st.PCR(crypto.SHA1, 11), o[:]) {
		t.Fatal("PCR 11")
	}
	if st.PCR(crypto.SHA384, 10) != nil || st.PCR(crypto.SHA1, 64) != nil {
		t.Fatal("PCR of an unknown bank or index")
	}
}

// TestTamper flips the listed digest, then the data: each is a counted
// mismatch at its index, and changes the bank that hashes what changed.
func TestTamper(t *testing.T) {
	list := imatest.List(40)
	sp := spans(t, list)
	clean := parse(t, list)
	for _, k := range []int{0, 1, 17, 39} {
		for _, where := range []string{"digest", "data"} {
			b := bytes.Clone(list)
			off := sp[k].off + 4 // first byte of the template digest
			if where == "data" {
				off = sp[k].off + sp[k].size - 3 // inside the name
			}
			b[off] ^= 0x40
			st := parse(t, b)
			if st.Mismatches != 1 || !reflect.DeepEqual(st.MismatchIndices, []int{k}) {
				t.Fatalf("%s of entry %d: %d mismatches at %v", where, k, st.Mismatches, st.MismatchIndices)
			}
			same1 := bytes.Equal(st.PCR(crypto.SHA1, 10), clean.PCR(crypto.SHA1, 10))
			same256 := bytes.Equal(st.PCR(crypto.SHA256, 10), clean.PCR(crypto.SHA256, 10))
			if where == "digest" && (same1 || !same256) || where == "data" && (!same1 || same256) {
				t.Fatalf("%s of entry %d: sha1 bank unchanged %v, sha256 unchanged %v", where, k, same1, same256)
			}
		}
	}
	// More mismatches than the State remembers.
	b := bytes.Clone(list)
	for k := 1; k < 20; k++ {
		b[sp[k].off+4] ^= 1
	}
	if st := parse(t, b); st.Mismatches != 19 || len(st.MismatchIndices) != ima.MaxMismatchIndices || st.MismatchIndices[0] != 1 {
		t.Fatalf("%d mismatches, indices %v", st.Mismatches, st.MismatchIndices)
	}
}

// TestTruncation cuts the list at every byte: a cut between entries is a
// shorter valid list, any other is ErrTruncated naming the cut entry.
func TestTruncation(t *testing.T) {
	recs := imatest.Records(12)
	recs = append(recs, ima.Record{PCR: 10, Template: "ima", DigestAlgo: "sha1", Digest: make([]byte, 20), Name: "/legacy"})
	recs = append(recs, ima.Record{PCR: 10, Template: "other", Data: []byte("abc")})
	list := encode(t, recs)
	sp := spans(t, list)
	k := 0
	for cut := 0; cut <= len(list); cut++ {
		for k < len(sp) && sp[k].off+sp[k].size <= cut {
			k++
		}
		st, err := ima.Parse(bytes.NewReader(list[:cut]), ima.Options{})
		boundary := cut == len(list) || cut == sp[k].off
		if boundary {
			if err != nil || st.Entries != k || st.Offset != int64(cut) {
				t.Fatalf("cut %d (after entry %d): %v, %d entries", cut, k, err, st.Entries)
			}
			continue
		}
		pe := parseErr(t, err)
		if !errors.Is(err, ima.ErrTruncated) || pe.Index != k || pe.Offset != int64(sp[k].off) || st.Entries != k || st.Offset != int64(sp[k].off) {
			t.Fatalf("cut %d inside entry %d at %d: %v; state %d entries at %d", cut, k, sp[k].off, err, st.Entries, st.Offset)
		}
	}
}

// TestBadEntries is the table of entries the kernel cannot write.
func TestBadEntries(t *testing.T) {
	base := imatest.List(3)
	sp := spans(t, base)
	e1 := sp[1].off // entry 1: an ima-ng entry
	nameLen := 6
	dlen := e1 + 4 + 20 + 4 + nameLen // its template data length
	data := dlen + 4                  // its template data: d-ng length, "sha256:\0", digest, n-ng length, name
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   error
		index  int
	}{
		{"PCR 64", func(b []byte) []byte { le32(b, e1, 64); return b }, ima.ErrMalformed, 1},
		{"empty template name", func(b []byte) []byte { le32(b, e1+24, 0); return b }, ima.ErrMalformed, 1},
		{"template name too long", func(b []byte) []byte { le32(b, e1+24, 256); return b }, ima.ErrTooLarge, 1},
		{"template name huge", func(b []byte) []byte { le32(b, e1+24, 0xffffffff); return b }, ima.ErrTooLarge, 1},
		{"template name one short", func(b []byte) []byte { le32(b, e1+24, uint32(nameLen-1)); return b }, nil, 1},
		{"template name one long", func(b []byte) []byte { le32(b, e1+24, uint32(nameLen+1)); return b }, nil, 1},
		{"template name with a space", func(b []byte) []byte { b[e1+28+3] = ' '; return b }, ima.ErrMalformed, 1},
		{"template data huge", func(b []byte) []byte { le32(b, dlen, 0xfffffff0); return b }, ima.ErrTooLarge, 1},
		{"template data one long", func(b []byte) []byte { le32(b, dlen, binary.LittleEndian.Uint32(b[dlen:])+1); return b }, ima.ErrMalformed, 1},
		{"template data one short", func(b []byte) []byte { le32(b, dlen, binary.LittleEndian.Uint32(b[dlen:])-1); return b }, ima.ErrMalformed, 1},
		{"d-ng length huge", func(b []byte) []byte { le32(b, data, 0xffffffff); return b }, ima.ErrMalformed, 1},
		{"d-ng without NUL", func(b []byte) []byte { b[data+4+7] = 'x'; return b }, ima.ErrMalformed, 1},
		{"d-ng algorithm with capitals", func(b []byte) []byte { b[data+4] = 'S'; return b }, ima.ErrMalformed, 1},
		{"sha256 digest one short", func(b []byte) []byte {
			return mutateRecord(t, b, sp[1], func(r *ima.Record) { r.Data = handNG("sha256", r.Digest[:31], r.Name) })
		}, ima.ErrMalformed, 1},
		{"n-ng not NUL-terminated", func(b []byte) []byte { b[sp[1].off+sp[1].size-1] = 'x'; return b }, ima.ErrMalformed, 1},
		{"n-ng with a NUL inside", func(b []byte) []byte { b[sp[1].off+sp[1].size-3] = 0; return b }, ima.ErrMalformed, 1},
		{"n-ng too long", func(b []byte) []byte {
			return mutateRecord(t, b, sp[1], func(r *ima.Record) { r.Data = handNG("sha256", r.Digest, strings.Repeat("a", 4096)) })
		}, ima.ErrTooLarge, 1},
		{"legacy name of 256", func(b []byte) []byte {
			var e []byte
			e = binary.LittleEndian.AppendUint32(e, 10)
			e = append(e, make([]byte, 20)...)
			e = binary.LittleEndian.AppendUint32(e, 3)
			e = append(e, "ima"...)
			e = append(e, make([]byte, 20)...)
			e = binary.LittleEndian.AppendUint32(e, 256)
			e = append(e, strings.Repeat("a", 256)...)
			return append(b, e...)
		}, ima.ErrMalformed, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(bytes.Clone(base))
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			st, err := ima.Parse(bytes.NewReader(b), ima.Options{})
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("accepted")
			}
			pe := parseErr(t, err)
			wantOff := int64(len(base))
			if tt.index < len(sp) {
				wantOff = int64(sp[tt.index].off)
			}
			if tt.want != nil && !errors.Is(err, tt.want) || pe.Index != tt.index || pe.Offset != wantOff {
				t.Fatalf("got %v, want %v at entry %d", err, tt.want, tt.index)
			}
			if st.Entries != tt.index {
				t.Fatalf("state covers %d entries, want %d", st.Entries, tt.index)
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 1<<20 {
				t.Fatalf("allocated %d bytes", a)
			}
			t.Log(err)
		})
	}
}

// mutateRecord replaces the entry at s with r changed by f (as an opaque
// "ima-ng" entry whose data is r.Data).
func mutateRecord(t *testing.T, list []byte, s span, f func(r *ima.Record)) []byte {
	t.Helper()
	p := ima.NewParser(bytes.NewReader(list[s.off:s.off+s.size]), ima.Options{})
	e, err := p.Next()
	if err != nil {
		t.Fatal(err)
	}
	r := e.Record()
	f(&r)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, r.PCR)
	b = append(b, r.TemplateHash[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Template)))
	b = append(b, r.Template...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Data)))
	b = append(b, r.Data...)
	return append(append(append([]byte(nil), list[:s.off]...), b...), list[s.off+s.size:]...)
}

// TestLimits checks the count bounds.
func TestLimits(t *testing.T) {
	list := imatest.List(5)
	_, err := ima.Parse(bytes.NewReader(list), ima.Options{MaxEntries: 4})
	if pe := parseErr(t, err); !errors.Is(err, ima.ErrTooLarge) || pe.Index != 4 {
		t.Fatalf("MaxEntries: %v", err)
	}
	if _, err := ima.Parse(bytes.NewReader(list), ima.Options{MaxEntries: 5}); err != nil {
		t.Fatalf("exactly MaxEntries: %v", err)
	}
	_, err = ima.Parse(bytes.NewReader(list), ima.Options{MaxTemplateData: 50})
	if !errors.Is(err, ima.ErrTooLarge) {
		t.Fatalf("MaxTemplateData: %v", err)
	}
	var recs []ima.Record
	for i := 0; i <= ima.MaxTemplates; i++ {
		recs = append(recs, ima.Record{PCR: 10, Template: fmt.Sprintf("t%d", i), Data: []byte{byte(i)}})
	}
	_, err = ima.Parse(bytes.NewReader(encode(t, recs)), ima.Options{})
	if pe := parseErr(t, err); !errors.Is(err, ima.ErrTooLarge) || pe.Index != ima.MaxTemplates {
		t.Fatalf("MaxTemplates: %v", err)
	}
}

// TestEncodeRejects checks that the encoder refuses what would not parse.
func TestEncodeRejects(t *testing.T) {
	ok := imatest.Record(1)
	tests := []struct {
		name string
		f    func(r *ima.Record)
	}{
		{"PCR 64", func(r *ima.Record) { r.PCR = 64 }},
		{"empty template", func(r *ima.Record) { r.Template = "" }},
		{"template with space", func(r *ima.Record) { r.Template = "ima ng" }},
		{"no algorithm", func(r *ima.Record) { r.DigestAlgo = "" }},
		{"short digest", func(r *ima.Record) { r.Digest = r.Digest[:10] }},
		{"NUL in name", func(r *ima.Record) { r.Name = "a\x00b" }},
		{"unknown template without data", func(r *ima.Record) { r.Template = "foo" }},
		{"v2 without type", func(r *ima.Record) { r.Template = "ima-ngv2" }},
		{"legacy sha256", func(r *ima.Record) { r.Template = "ima" }},
		{"custom format with bad data", func(r *ima.Record) { r.Template, r.Data = "d-ng|n-ng", []byte{1, 2} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.f(&r)
			if b, err := ima.AppendBinary([]byte("x"), &r); err == nil || string(b) != "x" {
				t.Fatalf("encoded: %v %q", err, b)
			}
		})
	}
}

// TestParseASCIIErrors checks the ASCII reader's errors and bounds.
func TestParseASCIIErrors(t *testing.T) {
	good := imatest.Record(1)
	line := good.String()
	tests := []struct {
		name, text string
		want       error
		index      int
	}{
		{"three fields", "10 " + strings.Repeat("0", 40) + " ima-ng\n", ima.ErrMalformed, 0},
		{"PCR", "x" + line[2:] + "\n", ima.ErrMalformed, 0},
		{"PCR 64", "64" + line[2:] + "\n", ima.ErrMalformed, 0},
		{"hash length", line[:10] + line[11:] + "\n", ima.ErrMalformed, 0},
		{"hash hex", line[:3] + "z" + line[4:] + "\n", ima.ErrMalformed, 0},
		{"unknown template", strings.Replace(line, "ima-ng", "ima-zz", 1) + "\n", ima.ErrMalformed, 0},
		{"no algorithm", strings.Replace(line, "sha256:", "sha256", 1) + "\n", ima.ErrMalformed, 0},
		{"second line", line + "\n\n" + strings.Replace(line, "sha256:", "sha256:zz", 1) + "\n", ima.ErrMalformed, 1},
		{"digest size", strings.Replace(line, "sha256:", "sha256:00", 1), ima.ErrMalformed, 0},
		{"sig hex", strings.Replace(imatest.Record(97).String(), " 0302", " 0x02", 1), ima.ErrMalformed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ima.ParseASCII(strings.NewReader(tt.text), ima.Options{})
			pe := parseErr(t, err)
			if !errors.Is(err, tt.want) || pe.Index != tt.index {
				t.Fatalf("got %v, want %v at %d", err, tt.want, tt.index)
			}
		})
	}
	long := imatest.Record(499)
	long.Buf = bytes.Repeat([]byte{'a'}, 10000)
	_ = long.SetTemplateHash()
	if _, err := ima.ParseASCII(strings.NewReader(long.String()), ima.Options{MaxTemplateData: 100}); !errors.Is(err, ima.ErrTooLarge) {
		t.Fatalf("long line: %v", err)
	}
	if _, err := ima.ParseASCII(strings.NewReader(line+"\n"+line+"\n"), ima.Options{MaxEntries: 1}); !errors.Is(err, ima.ErrTooLarge) {
		t.Fatalf("MaxEntries: %v", err)
	}
	// The kernel pads a one-digit PCR, and CRLF files exist.
	r, err := ima.ParseASCIILine(" 9" + line[2:] + "\r\n")
	if err != nil || r.PCR != 9 {
		t.Fatalf("padded PCR: %v %d", err, r.PCR)
	}
}

// TestReaderErrors checks that a failing reader is reported as itself,
// not as a truncated list, and that a reader making no progress ends.
func TestReaderErrors(t *testing.T) {
	list := imatest.List(30)
	boom := errors.New("disk on fire")
	_, err := ima.Parse(io.MultiReader(bytes.NewReader(list[:1000]), &errReader{boom}), ima.Options{})
	if !errors.Is(err, boom) || errors.Is(err, ima.ErrTruncated) {
		t.Fatalf("got %v", err)
	}
	parseErr(t, err)
	_, err = ima.Parse(io.MultiReader(bytes.NewReader(list[:1000]), zeroReader{}), ima.Options{})
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("got %v", err)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// TestNoAllocations checks that parsing allocates only its buffer and that
// replay allocates nothing per entry.
func TestNoAllocations(t *testing.T) {
	list := imatest.List(2000)
	r := bytes.NewReader(list)
	allocs := testing.AllocsPerRun(10, func() {
		r.Reset(list)
		p := ima.NewParser(r, ima.Options{})
		for {
			if _, err := p.Next(); err != nil {
				break
			}
		}
	})
	if allocs > 8 { // the Parser and its buffer as it grows to 64 KiB
		t.Errorf("parsing 2000 entries allocated %v times", allocs)
	}
	allocs = testing.AllocsPerRun(10, func() {
		r.Reset(list)
		if _, err := ima.Parse(r, ima.Options{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 20 {
		t.Errorf("replaying 2000 entries allocated %v times", allocs)
	}
}
