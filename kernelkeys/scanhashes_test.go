package kernelkeys

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestScanHashesAtWindows: the windowed hash scan that Read uses on a
// spooled payload finds what scanHashes finds on the same bytes held in
// memory, in the same order, whatever the window: strings across window
// edges, at the very end, truncated, too long, repeated, and in random
// payloads salted with them.
func TestScanHashesAtWindows(t *testing.T) {
	long := "tbs:" + strings.Repeat("ab", 64)
	tooLong := "bin:" + strings.Repeat("cd", 65)
	inputs := map[string][]byte{
		"empty":     nil,
		"one":       []byte("\x00tbs:00\x00"),
		"at end":    []byte("xx\x00bin:0102"),
		"no nul":    []byte("\x00tbs:0011"),
		"both":      []byte("\x00bin:aa\x00\x00tbs:bb\x00\x00bin:aa\x00\x00tbs:cc\x00"),
		"longest":   []byte("\x00" + long + "\x00\x00" + tooLong + "\x00"),
		"bad":       []byte("\x00tbs:0\x00\x00bin:XY\x00\x00tbs:\x00\x00foo:00\x00"),
		"adjacent":  []byte("\x00tbs:01\x00tbs:02\x00bin:03\x00"),
		"prefix nn": []byte("\x00\x00\x00tbs:\x00tbs:0a\x00"),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"\x00", "tbs:", "bin:", "0a", "ff", "zz", long, tooLong, "\x00tbs:1234\x00", "\x00bin:abcd\x00"}
	for n := 0; n < 40; n++ {
		var b []byte
		for len(b) < 2000 {
			if rng.IntN(3) == 0 {
				b = append(b, parts[rng.IntN(len(parts))]...)
			} else {
				b = append(b, byte(rng.IntN(256)))
			}
		}
		inputs["random "+string(rune('a'+n%26))+string(rune('0'+n/26))] = b
	}
	for name, in := range inputs {
		want := scanHashes(in)
		for _, w := range []int{1, 2, 3, 5, 7, 8, 64, 137, 138, 139, 1000, scanWindow} {
			got, err := scanHashesAt(bytes.NewReader(in), int64(len(in)), w)
			if err != nil {
				t.Fatalf("%s, window %d: %v", name, w, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s, window %d:\n got %v\nwant %v", name, w, got, want)
			}
		}
	}
	if got := scanHashes(inputs["both"]); len(got) != 3 || got[0].String() != "tbs:bb" || got[1].String() != "tbs:cc" || got[2].String() != "bin:aa" {
		t.Fatalf("reference scan: %v", got)
	}
}
