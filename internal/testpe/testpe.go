// Package testpe builds real PE images for tests with the Go toolchain
// (GOOS=windows), so that no binary is committed, and signs them with
// osslsigncode.
package testpe

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
)

var (
	mu    sync.Mutex
	cache = map[Options]string{}
	dir   string
)

const program = `package main

import "fmt"

func main() { fmt.Println("hello from a vigil test image") }
`

// Options choose the image Build returns.
type Options struct {
	// GOARCH is "amd64" (PE32+) or "386" (PE32).
	GOARCH string
	// Debug keeps the DWARF sections and the COFF symbol table (no
	// -ldflags="-s -w"): twice the sections, most of them named through
	// the string table ("/4", "/19", ...).
	Debug bool
	// Unaligned appends three bytes to the image, so that its size is not
	// a multiple of 8.
	Unaligned bool
	// Resources is a resource script (.rc) compiled with binutils'
	// windres into the image's .rsrc section (VersionRC writes one);
	// amd64 only.
	Resources string
}

// VersionRC is a resource script with one VS_VERSIONINFO resource: the
// fixed file version, and OriginalFilename and FileVersion strings in a
// US English table (an empty name leaves OriginalFilename out).
func VersionRC(originalFilename string, v [4]uint16) string {
	name := ""
	if originalFilename != "" {
		name = fmt.Sprintf("      VALUE \"OriginalFilename\", \"%s\\0\"\n", originalFilename)
	}
	return fmt.Sprintf(`1 VERSIONINFO
FILEVERSION %[1]d,%[2]d,%[3]d,%[4]d
PRODUCTVERSION %[1]d,%[2]d,%[3]d,%[4]d
BEGIN
  BLOCK "StringFileInfo"
  BEGIN
    BLOCK "040904b0"
    BEGIN
      VALUE "CompanyName", "Vigil Test\0"
%[5]s      VALUE "FileVersion", "%[1]d.%[2]d.%[3]d.%[4]d\0"
    END
  END
  BLOCK "VarFileInfo"
  BEGIN
    VALUE "Translation", 0x409, 1200
  END
END
`, v[0], v[1], v[2], v[3], name)
}

// Build returns the path of a stripped Windows PE built for goarch
// ("amd64" gives PE32+, "386" gives PE32), built once per test process.
// Callers must not modify the file; copy it first.
func Build(tb testing.TB, goarch string) string {
	tb.Helper()
	return BuildWith(tb, Options{GOARCH: goarch})
}

// BuildWith is Build with more choices; each image is built once per test
// process. Callers must not modify the file; copy it first.
func BuildWith(tb testing.TB, o Options) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	return build(tb, o)
}

// build does BuildWith's work with mu held.
func build(tb testing.TB, o Options) string {
	tb.Helper()
	if p, ok := cache[o]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-testpe-")
		if err != nil {
			tb.Fatal(err)
		}
		dir = d
	}
	name := "hello-" + o.GOARCH
	if o.Debug {
		name += "-debug"
	}
	if o.Resources != "" {
		name += fmt.Sprintf("-rsrc%d", len(cache))
	}
	var out string
	if o.Unaligned {
		base := o
		base.Unaligned = false
		b, err := os.ReadFile(build(tb, base))
		if err != nil {
			tb.Fatal(err)
		}
		b = append(b, 0xde, 0xad, 0xbe)
		if len(b)%8 == 0 {
			tb.Fatalf("unaligned test PE is %d bytes, a multiple of 8", len(b))
		}
		out = filepath.Join(dir, name+"-odd.exe")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			tb.Fatal(err)
		}
	} else {
		src := filepath.Join(dir, "src-"+name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			tb.Fatal(err)
		}
		if o.Resources != "" {
			if o.GOARCH != "amd64" {
				tb.Fatalf("testpe: resources are built for amd64 only")
			}
			rc := filepath.Join(src, "res.rc")
			if err := os.WriteFile(rc, []byte(o.Resources), 0o644); err != nil {
				tb.Fatal(err)
			}
			// No C preprocessor is needed (the script includes nothing),
			// so none is required.
			testcmd.Run(tb, "x86_64-w64-mingw32-windres", "--preprocessor=cat", "-O", "coff", "-o", filepath.Join(src, "rsrc_windows_amd64.syso"), rc)
		}
		for f, content := range map[string]string{"go.mod": "module hello\n\ngo 1.21\n", "main.go": program} {
			if err := os.WriteFile(filepath.Join(src, f), []byte(content), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
		out = filepath.Join(dir, name+".exe")
		args := []string{"build", "-trimpath", "-o", out, "."}
		if !o.Debug {
			args = []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out, "."}
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH="+o.GOARCH, "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("building test PE: %v\n%s", err, b)
		}
	}
	cache[o] = out
	return out
}

// Cleanup removes every image built so far. A package whose TestMain calls
// it after m.Run leaves nothing behind; later Builds build again.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	dir, cache = "", map[Options]string{}
}

// Copy copies src into dir under name and returns the new path.
func Copy(tb testing.TB, src, dir, name string) string {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// OsslSign runs osslsigncode sign with args on in, writes out and returns
// out.
func OsslSign(tb testing.TB, in, out string, args ...string) string {
	tb.Helper()
	full := append([]string{"sign"}, args...)
	full = append(full, "-in", in, "-out", out)
	testcmd.Run(tb, "osslsigncode", full...)
	return out
}

// FlipByte xors one byte of the file at off.
func FlipByte(tb testing.TB, path string, off int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		tb.Fatal(fmt.Errorf("flip at %d: %w", off, err))
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		tb.Fatal(err)
	}
}

// Main runs a package's tests and then removes the images Build made; call
// it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
