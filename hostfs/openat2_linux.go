package hostfs

import (
	"errors"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// rootFD is an O_PATH descriptor of the root for openat2. It is opened on
// first use and closed when the Dir is collected.
type rootFD struct {
	once sync.Once
	fd   int
	ok   bool
}

const (
	flagRead = unix.O_RDONLY
	flagPath = unix.O_PATH
	flagDir  = unix.O_RDONLY | unix.O_DIRECTORY
)

// openInRoot opens name with symbolic links resolved as if the root were
// "/", in one openat2(RESOLVE_IN_ROOT) call (Linux 5.6+). ok is false
// when the kernel cannot, and the caller falls back to resolving by hand.
func (d *Dir) openInRoot(name string, flags int) (f *os.File, ok bool, err error) {
	r := &d.rfd
	r.once.Do(func() {
		fd, err := unix.Open(d.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		r.fd, r.ok = fd, true
		runtime.AddCleanup(d, func(fd int) { unix.Close(fd) }, fd)
	})
	if !r.ok {
		return nil, false, nil
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	rel := strings.TrimPrefix(clean(name), "/")
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), d.join(name)), true, nil
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOSYS):
			// Before Linux 5.6, or filtered by seccomp.
			return nil, false, nil
		default:
			return nil, true, &os.PathError{Op: "open", Path: clean(name), Err: err}
		}
	}
}

// Exists reports whether dir/name exists, without following a final
// symbolic link: one fstatat on a cached descriptor of dir, for callers
// that probe thousands of names (the process cross-view). name must be a
// single path element.
func (d *Dir) Exists(dir, name string) bool {
	if name == "" || strings.ContainsRune(name, '/') || name == ".." {
		return false
	}
	var st unix.Stat_t
	if d.root == "/" {
		return unix.Fstatat(unix.AT_FDCWD, path.Join(clean(dir), name), &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	}
	fd, ok := d.dirFD(dir)
	if !ok {
		_, err := d.Lstat(path.Join(dir, name))
		return err == nil
	}
	return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// dirFD returns a cached O_PATH descriptor of a directory inside the root.
func (d *Dir) dirFD(dir string) (int, bool) {
	dir = clean(dir)
	d.mu.Lock()
	fd, ok := d.dirFDs[dir]
	d.mu.Unlock()
	if ok {
		return fd, true
	}
	f, ok, err := d.openInRoot(dir, unix.O_PATH|unix.O_DIRECTORY)
	if !ok || err != nil {
		return 0, false
	}
	nfd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.dirFDs[dir]; ok {
		unix.Close(nfd)
		return old, true
	}
	if len(d.dirFDs) >= 16 {
		unix.Close(nfd)
		return 0, false
	}
	d.dirFDs[dir] = nfd
	runtime.AddCleanup(d, func(fd int) { unix.Close(fd) }, nfd)
	return nfd, true
}
