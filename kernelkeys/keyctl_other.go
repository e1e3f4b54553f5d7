//go:build !linux

package kernelkeys

import "errors"

// KeyctlReadKeyring is Linux only.
func KeyctlReadKeyring(serial int32) ([]int32, error) {
	return nil, errors.New("kernelkeys: keyctl is Linux only")
}
