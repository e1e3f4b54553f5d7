package kernelkeys

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// KeyctlReadKeyring reads a keyring's member serials with
// keyctl(KEYCTL_READ) (security/keys/keyring.c keyring_read: an array of
// key_serial_t). It needs read permission on the keyring: the trusted
// keyrings and .blacklist grant it to uid 0.
func KeyctlReadKeyring(serial int32) ([]int32, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, int(serial), buf, 0)
		if err != nil {
			return nil, fmt.Errorf("kernelkeys: keyctl read %08x: %w", serial, err)
		}
		if n <= len(buf) {
			out := make([]int32, 0, n/4)
			for i := 0; i+4 <= n; i += 4 {
				out = append(out, int32(binary.NativeEndian.Uint32(buf[i:])))
			}
			return out, nil
		}
		if n > 1<<22 {
			return nil, fmt.Errorf("kernelkeys: keyring %08x: %d bytes of members", serial, n)
		}
		buf = make([]byte, n)
	}
}
