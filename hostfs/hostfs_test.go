package hostfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tree builds a root with links that try to leave it.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p, s string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(p, target string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/sbin/sshd", "tree sshd")
	mk("etc/passwd", "tree passwd")
	ln("proc/812/exe", "/usr/sbin/sshd")
	ln("proc/self", "812")
	ln("escape/abs", "/etc/passwd")
	ln("escape/rel", "../../../../../../../../etc/passwd")
	ln("escape/dir", "/etc")
	ln("loop/a", "b")
	ln("loop/b", "a")
	return root
}

func TestLinksStayInRoot(t *testing.T) {
	root := tree(t)
	for _, name := range []string{"/escape/abs", "/escape/rel", "/escape/dir/passwd", "/../../etc/passwd", "/proc/self/../../etc/passwd"} {
		d := New(root)
		b, err := d.ReadFile(name)
		if err != nil || string(b) != "tree passwd" {
			t.Errorf("%s: %q %v, want the tree's file", name, b, err)
		}
		// The hand-written resolver agrees with openat2.
		p, err := d.resolve(name)
		if err != nil {
			t.Fatalf("resolve %s: %v", name, err)
		}
		if b, err := os.ReadFile(d.HostPath(p)); err != nil || string(b) != "tree passwd" {
			t.Errorf("resolve %s → %s: %q %v", name, p, b, err)
		}
	}
	d := New(root)
	for name, want := range map[string]string{"/escape/abs": "etc/passwd", "/escape/dir/passwd": "etc/passwd", "/proc/self/exe": "usr/sbin/sshd", "/nope/x": "nope/x"} {
		if got := d.HostPath(name); got != filepath.Join(root, want) {
			t.Errorf("HostPath(%s) = %s, want inside the root", name, got)
		}
	}
	if b, err := d.ReadFile("/proc/812/exe"); err != nil || string(b) != "tree sshd" {
		t.Errorf("exe: %q %v", b, err)
	}
	if t2, err := d.Readlink("/proc/self/exe"); err != nil || t2 != "/usr/sbin/sshd" {
		t.Errorf("readlink through a link: %q %v", t2, err)
	}
	if _, err := d.ReadFile("/loop/a"); err == nil {
		t.Error("a link loop was read")
	}
	if _, err := d.resolve("/loop/a"); err == nil {
		t.Error("resolve followed a loop forever")
	}
	if _, err := d.ReadFile("/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
	if _, err := d.Stat("/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent stat: %v", err)
	}
	if fi, err := d.Lstat("/proc/self"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat: %v %v", fi, err)
	}
	if fi, err := d.Stat("/proc/self"); err != nil || !fi.IsDir() {
		t.Errorf("stat: %v %v", fi, err)
	}
	es, err := d.ReadDir("/escape")
	if err != nil || len(es) != 3 || es[0].Name() != "abs" {
		t.Errorf("readdir: %v %v", es, err)
	}
}

func TestInputsAndLimits(t *testing.T) {
	root := tree(t)
	d := New(root)
	d.ReadFile("/etc/passwd")
	d.ReadFile("/proc/812/exe")
	sum := sha256.Sum256([]byte("tree passwd"))
	in := d.Inputs()
	if in["/etc/passwd"] != hex.EncodeToString(sum[:]) || len(in) != 1 {
		t.Errorf("inputs = %v (per-process files must not be listed)", in)
	}
	big := filepath.Join(root, "big")
	f, _ := os.Create(big)
	f.Truncate(MaxFile + 1)
	f.Close()
	if _, err := d.ReadFile("/big"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize read: %v", err)
	}
	for name, want := range map[string]bool{"/proc/1/status": true, "/proc/12/task/13/stat": true, "/proc/modules": false, "/proc/self/exe": false, "/proc/": false, "/sys/1/x": false} {
		if IsProcessPath(name) != want {
			t.Errorf("IsProcessPath(%s) != %t", name, want)
		}
	}
}

// TestCaptureListingAsRead: a captured directory has the entries the
// collectors first listed, not those present when the capture is written
// nor those of a later listing (a /proc/PID that appeared in between
// would add a process to the count measured from the capture).
func TestCaptureListingAsRead(t *testing.T) {
	root := tree(t)
	d := New(root)
	before, err := d.ReadDir("/usr/sbin")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr", "sbin", "later"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A second listing (as the hidden-process check re-reads /proc) does
	// not replace the first.
	if again, err := d.ReadDir("/usr/sbin"); err != nil || len(again) != len(before)+1 {
		t.Fatalf("second listing: %d entries, %v", len(again), err)
	}
	dst := t.TempDir()
	if err := d.Capture(dst); err != nil {
		t.Fatal(err)
	}
	after, err := New(dst).ReadDir("/usr/sbin")
	if err != nil {
		t.Fatal(err)
	}
	names := func(es []fs.DirEntry) (out []string) {
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	if got, want := names(after), names(before); !slices.Equal(got, want) || slices.Contains(got, "later") {
		t.Errorf("captured listing %v, want the listing as read %v", got, want)
	}
}

// TestCaptureProbedThreads: a /proc/N the listing lacks that was read for
// the hidden-process probe is left out of the capture when it is a thread
// (its Tgid is another PID: /proc never lists it, so the copy must not),
// and kept when it is a process (a hidden one: the copy shows it too).
func TestCaptureProbedThreads(t *testing.T) {
	root := tree(t)
	d := New(root)
	if _, err := d.ReadDir("/proc"); err != nil {
		t.Fatal(err)
	}
	for pid, tgid := range map[string]string{"900": "812", "901": "901"} {
		dir := filepath.Join(root, "proc", pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte("Name:\tx\nTgid:\t"+tgid+"\nPid:\t"+pid+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadFile("/proc/" + pid + "/status"); err != nil {
			t.Fatal(err)
		}
	}
	dst := t.TempDir()
	if err := d.Capture(dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "proc", "900")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the probed thread 900 is in the capture: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "proc", "901", "status")); err != nil {
		t.Errorf("the unlisted process 901 is not in the capture: %v", err)
	}
}

func TestCapture(t *testing.T) {
	root := tree(t)
	d := New(root)
	d.ReadFile("/proc/812/exe")
	d.Readlink("/proc/812/exe")
	d.ReadDir("/usr/sbin")
	d.ReadFile("/etc/passwd")
	dst := t.TempDir()
	if err := d.Capture(dst); err != nil {
		t.Fatal(err)
	}
	c := New(dst)
	if b, err := c.ReadFile("/proc/812/exe"); err != nil || string(b) != "tree sshd" {
		t.Errorf("captured exe: %q %v", b, err)
	}
	if l, err := c.Readlink("/proc/812/exe"); err != nil || l != "/usr/sbin/sshd" {
		t.Errorf("captured link: %q %v", l, err)
	}
	f, err := c.Open("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "tree passwd" {
		t.Errorf("captured passwd %q", b)
	}
}
