package ima_test

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// fuzzOptions keeps the fuzzers' allocations small.
var fuzzOptions = ima.Options{MaxTemplateData: 1 << 16, MaxEntries: 1 << 12}

// seedRecords has one record of each template form.
func seedRecords(tb testing.TB) []ima.Record {
	recs := imatest.Records(3)
	recs = append(recs, imatest.Record(97), imatest.Record(499), imatest.Record(1009))
	more := []ima.Record{
		{PCR: 10, Template: "ima", DigestAlgo: "sha1", Digest: make([]byte, 20), Name: "/sbin/init"},
		{PCR: 10, Template: "ima-ngv2", DigestType: "ima", DigestAlgo: "sha256", Digest: make([]byte, 32), Name: "/v2"},
		{PCR: 11, Template: "ima-sigv2", DigestType: "verity", DigestAlgo: "sha256", Digest: make([]byte, 32), Name: "/v", Sig: []byte{3, 2}},
		{PCR: 10, Template: "d-ng|n-ng|sig", Data: append(handNG("sha1", make([]byte, 20), "/x"), 0, 0, 0, 0)},
		{PCR: 10, Template: "vendor", Data: []byte("opaque")},
	}
	for i := range more {
		if err := more[i].SetTemplateHash(); err != nil {
			tb.Fatal(err)
		}
	}
	return append(recs, more...)
}

// FuzzParse feeds arbitrary bytes to the binary parser. Whatever it
// accepts re-encodes to the same bytes; whatever it rejects is a
// *ParseError naming the entry where the accepted prefix ends; and a
// replay gives the same State in one go, resumed at an entry boundary, one
// byte at a time and stopped at its own final PCR value.
func FuzzParse(f *testing.F) {
	for _, l := range sharedLists(f) {
		f.Add(encode(f, parseASCII(f, l.text)))
	}
	seeds := seedRecords(f)
	f.Add(encode(f, seeds))
	for _, r := range seeds {
		f.Add(encode(f, []ima.Record{r}))
	}
	f.Add(imatest.List(5)[:300])
	f.Fuzz(func(t *testing.T, data []byte) {
		p := ima.NewParser(bytes.NewReader(data), fuzzOptions)
		var ends []int
		var err error
		for {
			var e *ima.Entry
			if e, err = p.Next(); err != nil {
				break
			}
			end := int(e.Offset) + e.Size
			if e.Index != len(ends) || end > len(data) || !bytes.Equal(e.Raw, data[e.Offset:end]) || e.Size != len(e.Raw) {
				t.Fatalf("entry %d: offset %d size %d does not tile the input", e.Index, e.Offset, e.Size)
			}
			r := e.Record()
			b, encErr := ima.AppendBinary(nil, &r)
			if encErr != nil || !bytes.Equal(b, e.Raw) {
				t.Fatalf("entry %d re-encodes as %x (%v), was %x", e.Index, b, encErr, e.Raw)
			}
			ends = append(ends, end)
		}
		prefix := 0
		if len(ends) > 0 {
			prefix = ends[len(ends)-1]
		}
		if err != io.EOF {
			pe := parseErr(t, err)
			if !errors.Is(err, ima.ErrTruncated) && !errors.Is(err, ima.ErrMalformed) && !errors.Is(err, ima.ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			if pe.Index != len(ends) || pe.Offset != int64(prefix) {
				t.Fatalf("error at entry %d offset %d, accepted %d entries to %d", pe.Index, pe.Offset, len(ends), prefix)
			}
		} else if prefix != len(data) {
			t.Fatalf("EOF after %d of %d bytes", prefix, len(data))
		}

		good := data[:prefix]
		full, err := ima.Parse(bytes.NewReader(good), fuzzOptions)
		if err != nil {
			if !errors.Is(err, ima.ErrTooLarge) { // more template names than a State counts
				t.Fatalf("replay of the accepted prefix: %v", err)
			}
			return
		}
		if full.Entries != len(ends) || full.Offset != int64(prefix) {
			t.Fatalf("replay: %d entries to %d", full.Entries, full.Offset)
		}
		o256 := fuzzOptions
		o256.SHA256Only = true
		if fast, err := ima.Parse(bytes.NewReader(good), o256); err != nil || fast.SHA256 != full.SHA256 || fast.Entries != full.Entries {
			t.Fatalf("SHA256Only replay differs from the full one (%v)", err)
		}
		whole, errWhole := ima.Parse(bytes.NewReader(data), fuzzOptions)
		one, err := ima.Parse(iotest.OneByteReader(bytes.NewReader(data)), fuzzOptions)
		if !reflect.DeepEqual(one, whole) || !reflect.DeepEqual(whole, full) || (err == nil) != (prefix == len(data)) || fmt.Sprint(err) != fmt.Sprint(errWhole) {
			t.Fatalf("one byte at a time: %d entries, %v; at once: %d entries, %v", one.Entries, err, whole.Entries, errWhole)
		}
		if len(ends) > 0 {
			mid := ends[len(ends)/2]
			st, err := ima.Parse(bytes.NewReader(good[:mid]), fuzzOptions)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Check(bytes.NewReader(good)); err != nil {
				t.Fatal(err)
			}
			if err := ima.Replay(bytes.NewReader(good[mid:]), st, fuzzOptions); err != nil || !reflect.DeepEqual(st, full) {
				t.Fatalf("resumed at %d: %v", mid, err)
			}
		}
		for _, bank := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			target := full.PCR(bank, ima.MeasurementPCR)
			st := &ima.State{}
			ok, err := ima.ReplayUntil(bytes.NewReader(good), st, bank, ima.MeasurementPCR, target, fuzzOptions)
			if err != nil || !ok || st.Entries > full.Entries || !bytes.Equal(st.PCR(bank, ima.MeasurementPCR), target) {
				t.Fatalf("%v: replay until its own PCR: %v %v after %d entries", bank, ok, err, st.Entries)
			}
		}
	})
}

// FuzzParseASCII feeds arbitrary text to the ASCII parser. Whatever it
// accepts encodes to a binary list that parses back to the same records,
// and prints back to a line that reads as the same record.
func FuzzParseASCII(f *testing.F) {
	for _, l := range sharedLists(f) {
		f.Add(l.text)
	}
	var b bytes.Buffer
	for _, r := range seedRecords(f) {
		if r.Data == nil {
			b.WriteString(r.String() + "\n")
			f.Add([]byte(r.String()))
		}
	}
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, text []byte) {
		recs, err := ima.ParseASCII(bytes.NewReader(text), fuzzOptions)
		if err != nil {
			parseErr(t, err)
			if !errors.Is(err, ima.ErrMalformed) && !errors.Is(err, ima.ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		var bin bytes.Buffer
		if err := ima.EncodeBinary(&bin, recs); err != nil {
			t.Fatalf("accepted records do not encode: %v", err)
		}
		p := ima.NewParser(bytes.NewReader(bin.Bytes()), ima.Options{})
		for i, r := range recs {
			e, err := p.Next()
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if got := e.Record(); !reflect.DeepEqual(got, r) {
				t.Fatalf("entry %d parses back as %+v, want %+v", i, got, r)
			}
			back, err := ima.ParseASCIILine(r.String())
			if err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("entry %d prints as %q, which reads back as %+v (%v)", i, r.String(), back, err)
			}
		}
		if _, err := p.Next(); err != io.EOF {
			t.Fatalf("after the records: %v", err)
		}
	})
}
