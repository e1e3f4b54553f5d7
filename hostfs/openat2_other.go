//go:build !linux

package hostfs

import "os"

type rootFD struct{}

const (
	flagRead = os.O_RDONLY
	flagPath = os.O_RDONLY
	flagDir  = os.O_RDONLY
)

// openInRoot is Linux's openat2; elsewhere links are resolved by hand.
func (d *Dir) openInRoot(string, int) (*os.File, bool, error) { return nil, false, nil }

// Exists reports whether dir/name exists, without following a final link.
func (d *Dir) Exists(dir, name string) bool {
	_, err := d.Lstat(dir + "/" + name)
	return err == nil
}
