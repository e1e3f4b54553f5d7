package sbat_test

import (
	"debug/pe"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/sbat"
)

// section reads a real Debian EFI binary's .sbat section (its virtual
// size, as shim reads it).
func section(tb testing.TB, name string) []byte {
	tb.Helper()
	f, err := pe.Open(artifacts.EFI(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := f.Section(sbat.SectionName)
	if s == nil {
		tb.Fatalf("%s has no %s section", name, sbat.SectionName)
	}
	b, err := s.Data()
	if err != nil {
		tb.Fatal(err)
	}
	if int(s.VirtualSize) < len(b) {
		b = b[:s.VirtualSize]
	}
	return b
}

// debianLevel is shim 15.7's built-in SbatLevel (SBAT_VAR_LATEST).
const debianLevel = "sbat,1,2022052400\ngrub,2\n"

func TestDebianBinaries(t *testing.T) {
	level, err := sbat.ParseLevel([]byte(debianLevel))
	if err != nil {
		t.Fatal(err)
	}
	if level.Datestamp != "2022052400" || level.Minimum["grub"] != 2 || level.Minimum["sbat"] != 1 {
		t.Fatalf("level %+v", level)
	}
	for _, name := range []string{"shimx64.efi.signed", "grubx64.efi.signed", "mmx64.efi.signed", "fbx64.efi.signed"} {
		t.Run(name, func(t *testing.T) {
			entries, err := sbat.ParseSection(section(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) < 2 || entries[0].Component != "sbat" || entries[0].Generation != 1 {
				t.Fatalf("entries %+v", entries)
			}
			if r := level.Revoked(entries); len(r) != 0 {
				t.Fatalf("revoked under Debian's level: %+v", r)
			}
		})
	}
	// grub's own generation, and a level that revokes it.
	entries, _ := sbat.ParseSection(section(t, "grubx64.efi.signed"))
	var grub sbat.Entry
	for _, e := range entries {
		if e.Component == "grub" {
			grub = e
		}
	}
	if grub.Generation < 2 || !strings.Contains(grub.URL, "gnu.org") {
		t.Fatalf("grub entry %+v", grub)
	}
	stricter, err := sbat.ParseLevel([]byte(debianLevel + "grub," + itoa(int(grub.Generation)+1) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := stricter.Revoked(entries); len(r) != 1 || r[0].Component != "grub" {
		t.Fatalf("a level one above grub's generation revokes %+v", r)
	}
	var none *sbat.Level
	if none.Revoked(entries) != nil {
		t.Fatal("no level revokes")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestParseRules(t *testing.T) {
	const row = "grub,3,Free Software Foundation,grub,2.06,https://www.gnu.org/software/grub/"
	for _, c := range []struct {
		name string
		in   string
		n    int  // entries
		bad  bool // ErrMalformed
	}{
		{"one row", row, 1, false},
		{"CRLF, blank lines, BOM", "\xef\xbb\xbf" + row + "\r\n\r\n\n" + row + "\r\n", 2, false},
		{"stops at the first NUL", row + "\n\x00garbage,,", 1, false},
		{"a seventh column is not read", row + ",extra", 1, false},
		{"five columns", "grub,3,FSF,grub,2.06", 0, true},
		{"an empty column", "grub,,FSF,grub,2.06,url", 0, true},
		{"a generation shim reads as 3 (atoi)", "grub,3a,FSF,grub,2.06,url", 0, true},
		{"a generation shim reads as 0", "grub,x,FSF,grub,2.06,url", 0, true},
		{"a generation shim truncates to 1", "grub,65537,FSF,grub,2.06,url", 0, true},
		{"a signed generation", "grub,+3,FSF,grub,2.06,url", 0, true},
		{"empty", "", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			es, err := sbat.ParseSection([]byte(c.in))
			if c.bad != errors.Is(err, sbat.ErrMalformed) || (!c.bad && err != nil) {
				t.Fatalf("err %v, want malformed %v", err, c.bad)
			}
			if !c.bad && len(es) != c.n {
				t.Fatalf("%d entries, want %d: %+v", len(es), c.n, es)
			}
		})
	}
	// A level row needs two columns; a component listed twice takes the
	// higher generation.
	if _, err := sbat.ParseLevel([]byte("sbat,1\ngrub\n")); !errors.Is(err, sbat.ErrMalformed) {
		t.Fatalf("a one-column level row: %v", err)
	}
	l, err := sbat.ParseLevel([]byte("sbat,1,2023012900\ngrub,3\ngrub,2\nshim,2\n"))
	if err != nil || l.Minimum["grub"] != 3 || l.Minimum["shim"] != 2 || len(l.Components) != 3 {
		t.Fatalf("level %+v %v", l, err)
	}
	if _, err := sbat.ParseSection(make([]byte, sbat.MaxSize+1)); !errors.Is(err, sbat.ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

// FuzzParse: shim's reading never panics and holds together; seeded with
// the real Debian sections.
func FuzzParse(f *testing.F) {
	for _, n := range []string{"shimx64.efi.signed", "grubx64.efi.signed", "mmx64.efi.signed"} {
		f.Add(section(f, n))
	}
	f.Add([]byte(debianLevel))
	f.Fuzz(func(t *testing.T, b []byte) {
		if es, err := sbat.ParseSection(b); err == nil {
			for _, e := range es {
				if e.Component == "" || e.URL == "" || strings.ContainsAny(e.Component, ",\r\n\x00") {
					t.Fatalf("entry %+v", e)
				}
			}
		}
		if l, err := sbat.ParseLevel(b); err == nil {
			if len(l.Components) != len(l.Minimum) {
				t.Fatalf("level %+v", l)
			}
			l.Revoked([]sbat.Entry{{Component: "grub", Generation: 1}})
		}
	})
}
