package kmodsig

import "io"

// HasMarker reports whether the (uncompressed) module ends with the
// signature magic, reading only those bytes. It says nothing about whether
// the signature is valid; Parse does that.
func HasMarker(r io.ReaderAt, size int64) bool {
	n := int64(len(Magic))
	if size < n {
		return false
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, size-n); err != nil {
		return false
	}
	return string(b) == Magic
}
