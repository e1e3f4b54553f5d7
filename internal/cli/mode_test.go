package cli_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestVerifyMode: each verdict names its mode, picked from the file's kind
// (windows for a Windows PE, kernel for a module, cms for a detached
// signature); --mode forces one, a file it does not fit is denied
// unsupported under that mode, and an unknown mode is a usage error.
func TestVerifyMode(t *testing.T) {
	f := newFixture(t)
	inter := filepath.Join(f.dir, "inter.pem")
	modes := func(args ...string) (int, []string, []string) {
		t.Helper()
		code, out, errs := vigil(t, append([]string{"verify", "--trust", f.root, "--keyring", f.leaf, "--keyring", inter, "--output", "json"}, args...)...)
		var ms, rs []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var v struct {
				Mode    string   `json:"mode"`
				Reasons []string `json:"reasons"`
			}
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("%v: %v\n%s\n%s", args, err, out, errs)
			}
			ms = append(ms, v.Mode)
			rs = append(rs, strings.Join(v.Reasons, ","))
		}
		return code, ms, rs
	}
	code, ms, rs := modes(f.pe, f.ko, f.blob)
	if code != 0 || !slices.Equal(ms, []string{"windows", "kernel", "cms"}) {
		t.Fatalf("auto: exit %d modes %v reasons %v", code, ms, rs)
	}
	code, ms, rs = modes("--mode", "kernel", f.pe, f.ko, f.blob)
	if code != 1 || !slices.Equal(ms, []string{"kernel", "kernel", "kernel"}) || !slices.Equal(rs, []string{"unsupported", "", "unsupported"}) {
		t.Fatalf("--mode kernel: exit %d modes %v reasons %v", code, ms, rs)
	}
	// A Windows PE is not a boot image.
	code, ms, rs = modes("--mode", "uefi", f.pe)
	if code != 1 || ms[0] != "uefi" || rs[0] != "unsupported" {
		t.Fatalf("--mode uefi: exit %d modes %v reasons %v", code, ms, rs)
	}
	if code, _, _ := vigil(t, "verify", "--mode", "linux", f.pe); code != 2 {
		t.Fatalf("--mode linux: exit %d, want 2", code)
	}
	// Text output names the mode next to the format; scan takes --mode.
	_, out, _ := vigil(t, "verify", "--trust", f.root, f.pe)
	if !strings.Contains(out, "[pe windows]") {
		t.Fatalf("text: %s", out)
	}
	code, out, _ = vigil(t, "scan", "--trust", f.root, "--mode", "windows", "--output", "json", f.dir)
	if code != 1 || !strings.Contains(out, `"mode":"windows"`) || strings.Contains(out, `"mode":"cms"`) {
		t.Fatalf("scan --mode windows: exit %d\n%s", code, out)
	}
}
