package testvm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// ModuleTools are the host parts an out-of-tree module is built and
// signed with: Debian's linux-headers-<release> for the booted kernel
// (kbuild, the kernel's Makefiles and config) and linux-kbuild's
// sign-file, installed by `make deps`.
type ModuleTools struct {
	Headers  string // /usr/src/linux-headers-<release>
	SignFile string // /usr/lib/linux-kbuild-<major.minor>/scripts/sign-file
}

// RequireModuleTools returns the module build tools for p's kernel, or
// skips the test (fails under CI=true) naming what is missing.
func RequireModuleTools(tb testing.TB, p Parts) ModuleTools {
	tb.Helper()
	t := ModuleTools{Headers: filepath.Join("/usr/src", "linux-headers-"+p.Release)}
	var missing []string
	if _, err := os.Stat(filepath.Join(t.Headers, "Makefile")); err != nil {
		missing = append(missing, "linux-headers-"+p.Release)
	}
	// The headers' scripts link to linux-kbuild-<major.minor>.
	if kb, err := filepath.EvalSymlinks(filepath.Join(t.Headers, "scripts")); err == nil {
		t.SignFile = filepath.Join(kb, "sign-file")
	}
	if _, err := os.Stat(t.SignFile); t.SignFile == "" || err != nil {
		missing = append(missing, "sign-file (linux-kbuild for "+p.Release+")")
	}
	for _, c := range []string{"make", "gcc"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		msg := "testvm: missing " + strings.Join(missing, ", ") + " (run `make deps`)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return t
}

// BuildModules builds out-of-tree modules with kbuild against the
// headers: sources maps file names (NAME.c, headers) to their text, and
// each NAME.c becomes NAME.ko. It returns the .ko paths by module name,
// unsigned.
func (t ModuleTools) BuildModules(ctx context.Context, dir string, sources map[string][]byte) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var objs []string
	for name, b := range sources {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
		if n, ok := strings.CutSuffix(name, ".c"); ok {
			objs = append(objs, n)
		}
	}
	sort.Strings(objs)
	var kbuild strings.Builder
	for _, o := range objs {
		kbuild.WriteString("obj-m += " + o + ".o\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "Kbuild"), []byte(kbuild.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "make", "-C", t.Headers, "M="+dir, "modules")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testvm: build modules: %v: %s", err, lastLines(string(b), 20))
	}
	out := map[string]string{}
	for _, o := range objs {
		p := filepath.Join(dir, o+".ko")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("testvm: build modules: %w", err)
		}
		out[o] = p
	}
	return out, nil
}

// Sign appends a module signature to the module at in, written to out,
// with the kernel's own sign-file: hash (sha256, sha1…), the PEM key and
// the certificate (PEM or DER).
func (t ModuleTools) Sign(ctx context.Context, hash, key, cert, in, out string) error {
	args := []string{hash, key, cert, in}
	if out != in {
		args = append(args, out)
	}
	cmd := exec.CommandContext(ctx, t.SignFile, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testvm: sign-file %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(b))
	}
	return nil
}

// AtsivSources are the two hiding modules of testdata/atsiv
// (atsiv_list: list_del; atsiv_kobj: list_del and kobject_del).
func AtsivSources(tb testing.TB) map[string][]byte {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "testdata", "atsiv")
	out := map[string][]byte{}
	for _, n := range []string{"atsiv.h", "atsiv_list.c", "atsiv_kobj.c"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			tb.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// BuildFinit builds testdata/finit (a static finit_module(2) caller that
// prints the kernel's errno) for the guest, and returns its bytes.
func BuildFinit(ctx context.Context, tb testing.TB) []byte {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "testdata", "finit", "finit.c")
	out := filepath.Join(tb.TempDir(), "finit")
	if b, err := exec.CommandContext(ctx, "gcc", "-static", "-Os", "-o", out, src).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("testvm: gcc -static finit.c: %v: %s (libc6-dev: run `make deps`)", err, b)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
