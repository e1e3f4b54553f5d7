package testcmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Unavailable skips a test whose peer tool cannot be had, or fails it
// under CI=true, where every peer must run.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + " (CI=true: peers must run)")
	}
	tb.Skip(msg)
}

// JoseScript writes script (an ES module importing 'jose') beside an npm
// jose@5 installed under node_modules in the user cache (installed once;
// later runs are offline), so that `import 'jose'` resolves, and returns
// its path for `node PATH ...`. A missing node or npm, or an unreachable
// registry, is Unavailable.
func JoseScript(tb testing.TB, script []byte) string {
	tb.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		Unavailable(tb, "node is not installed")
	}
	cache, err := os.UserCacheDir() // $XDG_CACHE_HOME or ~/.cache
	if err != nil {
		Unavailable(tb, "no user cache directory: %v", err)
	}
	dir := filepath.Join(cache, "vigil-node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jose", "package.json")); errors.Is(err, os.ErrNotExist) {
		if _, err := exec.LookPath("npm"); err != nil {
			Unavailable(tb, "npm is not installed")
		}
		// Install beside, then rename into place: concurrent runs never
		// see a half-installed jose.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		tmp, err := os.MkdirTemp(dir, "install-")
		if err != nil {
			tb.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		if out, err := Output("npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save", "--loglevel=error",
			"--fetch-retries=1", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=5000", "jose@5"); err != nil {
			Unavailable(tb, "npm install jose@5 (is the npm registry reachable?): %v\n%s", err, out)
		}
		if err := os.Rename(filepath.Join(tmp, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
			if _, serr := os.Stat(filepath.Join(dir, "node_modules", "jose", "package.json")); serr != nil {
				tb.Fatal(err)
			}
		}
	} else if err != nil {
		tb.Fatal(err)
	}
	// A fresh copy per run (the script may change; runs may be parallel).
	f, err := os.CreateTemp(dir, "script-*.mjs")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.Remove(f.Name()) })
	if _, err := f.Write(script); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return f.Name()
}
