package versioninfo_test

import (
	"testing"

	"github.com/vigil-attest/vigil/reason"
	"github.com/vigil-attest/vigil/versioninfo"
)

// FuzzParse: any input gives a version info or a malformed error, never
// a panic; seeded with real resources.
func FuzzParse(f *testing.F) {
	f.Add(read(f, "distlib-t32-version.bin"))
	f.Add(read(f, "windres-version.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := versioninfo.Parse(b)
		if err != nil {
			if reason.Of(err, "") != reason.Malformed {
				t.Fatalf("error without the malformed code: %v", err)
			}
			return
		}
		for _, tb := range in.Tables {
			if len(tb.Key) != 8 {
				t.Fatalf("table key %q", tb.Key)
			}
		}
	})
}

// FuzzLocate: the resource directory walker, seeded with real sections.
func FuzzLocate(f *testing.F) {
	f.Add(read(f, "distlib-t32-rsrc.bin"))
	f.Add(read(f, "windres-rsrc.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := versioninfo.Locate(b)
		if err != nil {
			if reason.Of(err, "") != reason.Malformed {
				t.Fatalf("error without the malformed code: %v", err)
			}
			return
		}
		for _, r := range res {
			if r.Size > versioninfo.MaxSize {
				t.Fatalf("resource of %d bytes", r.Size)
			}
		}
	})
}
