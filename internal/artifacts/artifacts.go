// Package artifacts locates the real signed files from Debian packages that
// scripts/fetch-artifacts.sh downloads for tests and benchmarks.
package artifacts

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// Dir returns the artifacts directory. When it is absent the test fails
// (it does not skip): `make test` fetches the artifacts first, and a test
// that silently skips would hide a broken check.
func Dir(tb testing.TB) string {
	tb.Helper()
	d := os.Getenv("VIGIL_ARTIFACTS")
	if d == "" {
		_, file, _, _ := runtime.Caller(0)
		d = filepath.Join(filepath.Dir(file), "..", "..", ".cache", "artifacts")
	}
	if _, err := os.Stat(filepath.Join(d, "STAMP")); err != nil {
		tb.Fatalf("artifacts missing in %s: run scripts/fetch-artifacts.sh (make test does)", d)
	}
	return d
}

// EFI returns the path of a signed EFI binary by base name, such as
// "shimx64.efi.signed".
func EFI(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(Dir(tb), "efi", name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("artifact %s: %v", name, err)
	}
	return p
}

// Vmlinuz returns the path of the signed Debian kernel image.
func Vmlinuz(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(Dir(tb), "kernel", "vmlinuz")
}

// ModulesDir returns /lib/modules/<release> of the Debian kernel package.
func ModulesDir(tb testing.TB) string {
	tb.Helper()
	p, err := filepath.EvalSymlinks(filepath.Join(Dir(tb), "kernel", "modules"))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Modules returns the paths of all .ko files of the Debian kernel, sorted.
func Modules(tb testing.TB) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(ModulesDir(tb), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Ext(p) == ".ko" {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// SharedData returns the path of a file under the workplace's shared/data
// directory (real event logs, IMA logs, the LOLDrivers block list), which
// lives beside the repository. $VIGIL_SHARED_DATA overrides the location.
func SharedData(tb testing.TB, rel string) string {
	tb.Helper()
	var dirs []string
	if d := os.Getenv("VIGIL_SHARED_DATA"); d != "" {
		dirs = append(dirs, d)
	}
	_, file, _, _ := runtime.Caller(0)
	for d := filepath.Dir(file); d != filepath.Dir(d); d = filepath.Dir(d) {
		dirs = append(dirs, filepath.Join(d, "shared", "data"))
	}
	dirs = append(dirs, "/work/shared/data")
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	tb.Fatalf("shared data %s not found (set VIGIL_SHARED_DATA)", rel)
	return ""
}
