package seal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxKeyFile bounds what LoadKeyFile reads: a key is 64 hex digits and
// a newline; anything much longer is not a key file.
const maxKeyFile = 4096

// LoadKeyFile reads a key file: 64 hex digits (white space around them
// ignored). The file must not be open to group or others (mode 0600 or
// 0400, as ssh asks of private keys); errors carry BadKey.
func LoadKeyFile(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Errorf(BadKey, "key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, Errorf(BadKey, "key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, Errorf(BadKey, "key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, Errorf(BadKey, "key file %s has mode %04o: it must not be open to group or others (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, Errorf(BadKey, "key file %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, Errorf(BadKey, "key file %s is longer than %d bytes", path, maxKeyFile)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// EnsureKeyFile loads the key file at path, or, when there is none,
// creates it (mode 0600) with a new random key; created reports which.
// Two processes creating it at once get the same key: the file appears
// whole (written aside, then linked into place) or not at all.
func EnsureKeyFile(path string) (k *Key, created bool, err error) {
	k, err = LoadKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, false, err
	}
	k, text, err := Generate()
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets-key-*")
	if err != nil {
		return nil, false, Errorf(BadKey, "creating key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600.
	_, err = tmp.WriteString(text + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, Errorf(BadKey, "writing key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another process made it first: use its key.
			k, err := LoadKeyFile(path)
			return k, false, err
		}
		return nil, false, Errorf(BadKey, "creating key file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return k, true, nil
}
