// Package hostfs reads a host's files through a root path. The agent's
// collectors read /proc, /sys, /boot, /lib/modules and /etc only through a
// Source, so a tree captured from another host (or built as a test fixture)
// is measured exactly like the live system under "/".
//
// A Source records a SHA-256 digest of every file it reads; the runtime
// report carries those digests, and Capture copies the same files into a
// tree for support bundles.
package hostfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// MaxFile bounds ReadFile: no file a collector reads whole is larger on a
// real host (the largest, an IMA list or event log, stream through Open).
const MaxFile = 64 << 20

// ErrTooLarge is returned for a file larger than the read limit.
var ErrTooLarge = errors.New("file exceeds the read limit")

// Source is what collectors read through. Names are absolute, slash
// separated paths as on the measured host ("/proc/modules"). Errors for
// absent files satisfy errors.Is(err, fs.ErrNotExist).
//
// Tests wrap a Source to model a rootkit that hides entries from one view
// (a ReadDir that omits a PID, say) while another view still sees them.
type Source interface {
	// ReadFile returns the whole file, at most MaxFile bytes.
	ReadFile(name string) ([]byte, error)
	// ReadDir lists a directory, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	// Readlink returns a symbolic link's target, unresolved.
	Readlink(name string) (string, error)
	// Stat follows symbolic links (inside the root).
	Stat(name string) (fs.FileInfo, error)
	// Lstat does not follow a final symbolic link.
	Lstat(name string) (fs.FileInfo, error)
	// Open opens a file for streaming (event logs, IMA lists, binaries).
	Open(name string) (File, error)
	// HostPath is the path on this machine for a host path, for code that
	// needs an OS path (the code-integrity engine's cache keys).
	HostPath(name string) string
	// Record notes that a file's bytes were read elsewhere (streamed or
	// verified by the engine) with this SHA-256, so that the report's input
	// digests and a capture include it.
	Record(name string, sha256hex string)
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	Stat() (fs.FileInfo, error)
}

// Dir is a Source over a directory: "/" for the live host.
type Dir struct {
	root string

	mu     sync.Mutex
	inputs map[string]string        // host path → sha256 hex
	dirs   map[string][]fs.DirEntry // directories listed, as first listed (for Capture)
	links  map[string]string        // symbolic links read
	// parents caches resolved directories: a tree under a root other
	// than "/" is a capture or a mounted image, which does not change
	// while it is measured.
	parents map[string]string
	rfd     rootFD
	dirFDs  map[string]int // O_PATH descriptors of probed directories (Exists)
}

// Prober is an optional capability of a Source: whether dir/name exists,
// without following a final link, cheaper than Lstat when probing many
// names.
type Prober interface {
	Exists(dir, name string) bool
}

// New returns a Source rooted at root ("" means "/").
func New(root string) *Dir {
	if root == "" {
		root = "/"
	}
	return &Dir{root: filepath.Clean(root), inputs: map[string]string{}, dirs: map[string][]fs.DirEntry{}, links: map[string]string{}, parents: map[string]string{}, dirFDs: map[string]int{}}
}

// Root is the directory the source reads under.
func (d *Dir) Root() string { return d.root }

// clean makes name absolute and clean; ".." cannot climb above "/".
func clean(name string) string {
	return path.Clean("/" + name)
}

// HostPath maps a host path to this machine's path under the root, with
// symbolic links resolved inside the root, so that code given the path
// (the code-integrity engine) cannot be led out of a captured tree by an
// absolute link. A path that does not resolve maps as written.
func (d *Dir) HostPath(name string) string {
	if d.root == "/" {
		return d.join(name)
	}
	dir, base := path.Split(clean(name))
	p, err := d.resolveDir(dir)
	if err != nil {
		return d.join(name)
	}
	full := path.Join(p, base)
	if fi, err := os.Lstat(d.join(full)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if r, err := d.resolve(full); err == nil {
			full = r
		}
	}
	return d.join(full)
}

// join places a host path under the root as written.
func (d *Dir) join(name string) string {
	return filepath.Join(d.root, filepath.FromSlash(clean(name)))
}

// resolve follows symbolic links in name inside the root, as if the root
// were "/" (a captured tree's /proc/1/exe → /usr/sbin/init resolves to
// ROOT/usr/sbin/init, never to this machine's file). On the live host the
// result is the same path the kernel would use.
func (d *Dir) resolve(name string) (string, error) {
	name = clean(name)
	if d.root == "/" {
		return name, nil
	}
	parts := strings.Split(strings.TrimPrefix(name, "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		if p == "" || p == "." {
			continue
		}
		next := path.Join(cur, p)
		fi, err := os.Lstat(d.join(next))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		t, err := os.Readlink(d.join(next))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(t) {
			t = path.Join(cur, t)
		}
		rest := strings.Split(strings.TrimPrefix(clean(t), "/"), "/")
		parts = append(rest, parts...)
		cur = "/"
	}
	return cur, nil
}

// resolveDir is resolve for a parent directory, cached.
func (d *Dir) resolveDir(dir string) (string, error) {
	if d.root == "/" {
		return clean(dir), nil
	}
	d.mu.Lock()
	p, ok := d.parents[dir]
	d.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := d.resolve(dir)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.parents[dir] = p
	d.mu.Unlock()
	return p, nil
}

func (d *Dir) record(name string, b []byte) {
	sum := sha256.Sum256(b)
	d.Record(name, hex.EncodeToString(sum[:]))
}

// Record implements Source.
func (d *Dir) Record(name, sum string) {
	d.mu.Lock()
	d.inputs[clean(name)] = sum
	d.mu.Unlock()
}

// ReadFile implements Source.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", clean(name), err)
	}
	if len(b) > MaxFile {
		return nil, fmt.Errorf("read %s: %w (%d bytes)", clean(name), ErrTooLarge, MaxFile)
	}
	d.record(name, b)
	return b, nil
}

// ReadDir implements Source.
func (d *Dir) ReadDir(name string) ([]fs.DirEntry, error) {
	es, err := d.readDir(name)
	if err != nil {
		return nil, err
	}
	// The first listing is kept: a collector that lists a directory
	// again (the hidden-process check re-reads /proc) must not change
	// what the capture holds for the facts read from the first.
	d.mu.Lock()
	if _, ok := d.dirs[clean(name)]; !ok {
		d.dirs[clean(name)] = es
	}
	d.mu.Unlock()
	return es, nil
}

func (d *Dir) readDir(name string) ([]fs.DirEntry, error) {
	if d.root != "/" {
		if f, ok, err := d.openInRoot(name, flagDir); ok {
			if err != nil {
				return nil, err
			}
			defer f.Close()
			es, err := f.ReadDir(-1)
			sort.Slice(es, func(i, j int) bool { return es[i].Name() < es[j].Name() })
			return es, err
		}
	}
	p, err := d.resolve(name)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(d.join(p))
}

// Readlink implements Source.
func (d *Dir) Readlink(name string) (string, error) {
	dir, base := path.Split(clean(name))
	p, err := d.resolveDir(dir)
	if err != nil {
		return "", err
	}
	t, err := os.Readlink(d.join(path.Join(p, base)))
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.links[clean(name)] = t
	d.mu.Unlock()
	return t, nil
}

// Stat implements Source.
func (d *Dir) Stat(name string) (fs.FileInfo, error) {
	if d.root != "/" {
		if f, ok, err := d.openInRoot(name, flagPath); ok {
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return f.Stat()
		}
	}
	p, err := d.resolve(name)
	if err != nil {
		return nil, err
	}
	return os.Stat(d.join(p))
}

// Lstat implements Source.
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	dir, base := path.Split(clean(name))
	p, err := d.resolveDir(dir)
	if err != nil {
		return nil, err
	}
	return os.Lstat(d.join(path.Join(p, base)))
}

// Open implements Source. The caller should Record what it read if the
// bytes matter to the report.
func (d *Dir) Open(name string) (File, error) {
	if d.root != "/" {
		if f, ok, err := d.openInRoot(name, flagRead); ok {
			if err != nil {
				return nil, err
			}
			return f, nil
		}
	}
	p, err := d.resolve(name)
	if err != nil {
		return nil, err
	}
	return os.Open(d.join(p))
}

// Inputs returns the digests of every file read so far, by host path,
// except per-process files (/proc/PID/...): those describe processes that
// come and go, their facts are in the report's processes section, and
// listing them would make the report grow with the process count.
func (d *Dir) Inputs() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.inputs))
	for k, v := range d.inputs {
		if !IsProcessPath(k) {
			out[k] = v
		}
	}
	return out
}

// IsProcessPath reports whether name lies under /proc/PID/.
func IsProcessPath(name string) bool {
	rest, ok := strings.CutPrefix(clean(name), "/proc/")
	if !ok {
		return false
	}
	pid, _, _ := strings.Cut(rest, "/")
	if pid == "" {
		return false
	}
	for i := 0; i < len(pid); i++ {
		if pid[i] < '0' || pid[i] > '9' {
			return false
		}
	}
	return true
}

// Capture copies every file, directory listing and symbolic link this
// source has read into dst, laid out under dst as on the host, so that
// New(dst) measures the same. Files are re-read: a /proc file's content is
// what it is at capture time.
func (d *Dir) Capture(dst string) error {
	d.mu.Lock()
	files := keys(d.inputs)
	dirs := keys(d.dirs)
	listed := make(map[string][]fs.DirEntry, len(d.dirs))
	for k, v := range d.dirs {
		listed[k] = v
	}
	links := make(map[string]string, len(d.links))
	for k, v := range d.links {
		links[k] = v
	}
	d.mu.Unlock()
	var errs []error
	for _, dir := range dirs {
		if err := os.MkdirAll(filepath.Join(dst, filepath.FromSlash(dir)), 0o755); err != nil {
			errs = append(errs, err)
		}
		// Empty entries of a listed directory keep the listing the same:
		// a listed file that was not read becomes an empty file, a
		// subdirectory an empty directory. The listing is the one the
		// collectors read, not the directory now: /proc/PID entries that
		// appeared or went since then would change the process count.
		for _, e := range listed[dir] {
			target := filepath.Join(dst, filepath.FromSlash(dir), e.Name())
			if _, err := os.Lstat(target); err == nil {
				continue
			}
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				if t, err := os.Readlink(d.join(path.Join(dir, e.Name()))); err == nil {
					_ = os.Symlink(t, target)
				}
			case e.IsDir():
				_ = os.MkdirAll(target, 0o755)
			default:
				_ = os.WriteFile(target, nil, 0o644)
			}
		}
	}
	for _, l := range keys(links) {
		target := filepath.Join(dst, filepath.FromSlash(l))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		_ = os.Remove(target)
		if err := os.Symlink(links[l], target); err != nil {
			errs = append(errs, err)
		}
	}
	threads := map[string]bool{}
	for _, f := range files {
		if n := unlistedPID(f, listed["/proc"]); n != "" {
			if _, ok := threads[n]; !ok {
				threads[n] = d.isThread(n)
			}
			if threads[n] {
				continue
			}
		}
		if err := d.copyFile(dst, f); err != nil {
			errs = append(errs, fmt.Errorf("capture %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// unlistedPID returns N for a file /proc/N/… whose N the /proc listing
// lacks (a PID the hidden-process probe found: a thread ID, which /proc
// does not list, or a hidden process), else "".
func unlistedPID(name string, proc []fs.DirEntry) string {
	rest, ok := strings.CutPrefix(name, "/proc/")
	if !ok || proc == nil {
		return ""
	}
	n, _, _ := strings.Cut(rest, "/")
	if n == "" || strings.Trim(n, "0123456789") != "" {
		return ""
	}
	for _, e := range proc {
		if e.Name() == n {
			return ""
		}
	}
	return n
}

// isThread reports whether /proc/N is a thread of another process (its
// status's Tgid is not N). A capture leaves a thread's files out: written,
// they would make N a listed entry of the copy, one process more than the
// report counted. A hidden process's files are kept.
func (d *Dir) isThread(n string) bool {
	f, err := d.Open("/proc/" + n + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			v = strings.TrimSpace(v)
			return v != "" && v != n
		}
	}
	return false
}

func (d *Dir) copyFile(dst, name string) error {
	src, err := d.Open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	target := filepath.Join(dst, filepath.FromSlash(name))
	for hops := 0; hops < 8; hops++ {
		fi, err := os.Lstat(target)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			break
		}
		// A link captured above (/proc/PID/exe) names this file: keep the
		// link and write the bytes where it points inside the capture.
		t, err := os.Readlink(target)
		if err != nil {
			return err
		}
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(name), t)
		}
		name = clean(strings.TrimSuffix(t, " (deleted)"))
		target = filepath.Join(dst, filepath.FromSlash(name))
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
