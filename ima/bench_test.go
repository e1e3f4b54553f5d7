package ima_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// BenchmarkParse measures parsing alone (no hashing) of a 10,000-entry
// list, in MB/s.
func BenchmarkParse(b *testing.B) {
	list := imatest.List(10000)
	r := bytes.NewReader(list)
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(list)
		p := ima.NewParser(r, ima.Options{})
		n := 0
		for {
			_, err := p.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 10000 {
			b.Fatalf("%d entries", n)
		}
	}
}

// BenchmarkReplay10k measures a full replay (SHA-1 check, SHA-1 and
// SHA-256 banks) of a 10,000-entry list.
func BenchmarkReplay10k(b *testing.B) {
	list := imatest.List(10000)
	r := bytes.NewReader(list)
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(list)
		st, err := ima.Parse(r, ima.Options{})
		if err != nil || st.Entries != 10000 || st.Mismatches != 0 {
			b.Fatal(err)
		}
	}
}
