package decompress

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
)

// TestKernelModelHugeDictionary: an xz stream whose LZMA2 filter declares
// a 4 GiB dictionary is skipped by the kernel model instead of making the
// Go xz package allocate the whole dictionary (what stalled
// FuzzKernelAgreement's workers), and Vigil's decoder reads it within its
// window bound.
func TestKernelModelHugeDictionary(t *testing.T) {
	in := testcmd.RunStdin(t, []byte("a module, small"), "xz", "-c", "--check=crc32", "--lzma2=dict=1MiB")
	i := bytes.Index(in[12:], []byte{0x21, 0x01})
	if i < 0 {
		t.Fatal("no LZMA2 filter flags")
	}
	in[12+i+2] = 40
	hs := (int(in[12]) + 1) * 4
	binary.LittleEndian.PutUint32(in[12+hs-4:], crc32.ChecksumIEEE(in[12:12+hs-4]))
	if _, _, skip := kernelModelSkip(XZ, in); !skip {
		t.Fatal("the model judged a 4 GiB dictionary")
	}
	if got, err := ReadAll(bytes.NewReader(in), XZ, Options{MaxOutput: 1 << 20, MaxWindow: 1 << 20}); err != nil || string(got) != "a module, small" {
		t.Fatalf("%q %v", got, err)
	}
}
