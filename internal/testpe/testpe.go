// Package testpe builds real PE images for tests with the Go toolchain
// (GOOS=windows), so that no binary is committed, and signs them with
// osslsigncode.
package testpe

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	cache = map[string]string{}
	dir   string
)

const program = `package main

import "fmt"

func main() { fmt.Println("hello from a vigil test image") }
`

// Build returns the path of a Windows PE built for goarch ("amd64" gives
// PE32+, "386" gives PE32), built once per test process. Callers must not
// modify the file; copy it first.
func Build(tb testing.TB, goarch string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := cache[goarch]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-testpe-")
		if err != nil {
			tb.Fatal(err)
		}
		dir = d
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(program), 0o644)
	out := filepath.Join(dir, "hello-"+goarch+".exe")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building test PE: %v\n%s", err, b)
	}
	cache[goarch] = out
	return out
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

// OsslSign runs osslsigncode sign with args on in and returns the output
// path (in + suffix).
func OsslSign(tb testing.TB, in, out string, args ...string) string {
	tb.Helper()
	full := append([]string{"sign"}, args...)
	full = append(full, "-in", in, "-out", out)
	if b, err := exec.Command("osslsigncode", full...).CombinedOutput(); err != nil {
		tb.Fatalf("osslsigncode %s: %v\n%s", strings.Join(full, " "), err, b)
	}
	return out
}

// Run runs a command and fails the test when it fails.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
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
