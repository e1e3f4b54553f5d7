package hostfs

import (
	"errors"
	"os"
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
