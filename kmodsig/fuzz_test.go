package kmodsig_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/kmodsig"
	"github.com/vigil-attest/vigil/kmodsig/decompress"
	"github.com/vigil-attest/vigil/reason"
)

// realTails returns small valid modules made of a few content bytes and the
// real signature trailer of Debian modules spread over the set.
func realTails(f *testing.F, n int) [][]byte {
	var out [][]byte
	for _, p := range spread(f, n) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		sigLen := int(binary.BigEndian.Uint32(b[len(b)-kmodsig.TrailerSize+8:]))
		out = append(out, bytes.Clone(b[len(b)-kmodsig.TrailerSize-sigLen-16:]))
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, t := range realTails(f, 12) {
		f.Add(t)
	}
	f.Add([]byte(kmodsig.Magic))
	f.Add(append(make([]byte, 13), kmodsig.Magic...))
	f.Add(module([]byte{0}, []byte{0x30}, kmodsig.Info{IDType: 2, SigLen: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := kmodsig.Parse(bytes.NewReader(data), int64(len(data)))
		marked := len(data) > len(kmodsig.Magic) && bytes.HasSuffix(data, []byte(kmodsig.Magic))
		if err != nil {
			switch c := reason.Of(err, ""); c {
			case reason.Unsigned:
				if marked {
					t.Fatalf("marker present but unsigned: %v", err)
				}
			case reason.Malformed, reason.Unsupported:
				if !marked {
					t.Fatalf("no marker but %s: %v", c, err)
				}
			default:
				t.Fatalf("error without a verdict code: %v", err)
			}
			return
		}
		if !marked {
			t.Fatal("parsed without a marker")
		}
		if m.ContentLength < 1 || m.ContentLength+int64(len(m.PKCS7))+kmodsig.TrailerSize != int64(len(data)) || m.Size != int64(len(data)) {
			t.Fatalf("ranges do not tile the file: %d + %d + 40 vs %d", m.ContentLength, len(m.PKCS7), len(data))
		}
		if m.Info != (kmodsig.Info{IDType: 2, SigLen: uint32(len(m.PKCS7))}) || len(m.PKCS7) == 0 {
			t.Fatalf("accepted info %+v", m.Info)
		}
		// Append of what Parse found rebuilds the input exactly.
		var buf bytes.Buffer
		if err := kmodsig.Append(&buf, bytes.NewReader(data[:m.ContentLength]), m.PKCS7); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), data) {
			t.Fatal("Append(Parse(x)) != x")
		}
	})
}

// FuzzOpenDecompress feeds arbitrary bytes to the module opener, with small
// caps. Whenever a compressed input is accepted, the reference tool must
// decompress it to the same bytes.
func FuzzOpenDecompress(f *testing.F) {
	tails := realTails(f, 4)
	for i, t := range tails {
		f.Add(t)
		tools := [][]string{{"xz", "-c", "--check=crc32", "--lzma2=dict=1MiB"}, {"zstd", "-q", "-c"}, {"gzip", "-c", "-n"}, {"xz", "-c", "--x86", "--lzma2=preset=1", "--check=sha256"}}
		tool := tools[i%len(tools)]
		f.Add(testcmd.RunStdin(f, t, tool[0], tool[1:]...))
	}
	f.Add(testcmd.RunStdin(f, tails[0], "zstd", "-q", "-c", "--check", "-19"))
	f.Add(testcmd.RunStdin(f, tails[1], "xz", "-c", "--check=crc64", "-T2", "--block-size=300"))
	f.Add(testcmd.RunStdin(f, bytes.Repeat([]byte{0}, 1<<16), "xz", "-c"))
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := kmodsig.NewReader(bytes.NewReader(data), int64(len(data)), kmodsig.Options{MaxDecompressedSize: limit, MaxWindow: limit})
		if err != nil {
			if c := reason.Of(err, ""); c != reason.Malformed && c != reason.Unsupported {
				t.Fatalf("error without a verdict code: %v", err)
			}
			return
		}
		if r.Size() > limit && r.Format() != decompress.None {
			t.Fatalf("decompressed %d bytes past the %d cap", r.Size(), limit)
		}
		out := make([]byte, r.Size())
		if _, err := r.ReadAt(out, 0); err != nil && r.Size() > 0 {
			t.Fatal(err)
		}
		var tool []string
		switch r.Format() {
		case decompress.XZ:
			tool = []string{"xz", "-dc"}
		case decompress.Zstd:
			tool = []string{"zstd", "-dc", "-q"}
		case decompress.Gzip:
			tool = []string{"gzip", "-dc"}
		}
		if tool != nil {
			cmd := exec.Command(tool[0], tool[1:]...)
			cmd.Stdin = bytes.NewReader(data)
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("accepted %s input that %s rejects (%v)", r.Format(), tool[0], err)
			}
			if !bytes.Equal(want, out) {
				t.Fatalf("%s output differs from %s (%d vs %d bytes)", r.Format(), tool[0], len(out), len(want))
			}
		}
		if _, err := r.Parse(); err != nil {
			if c := reason.Of(err, ""); c != reason.Malformed && c != reason.Unsupported && c != reason.Unsigned {
				t.Fatalf("error without a verdict code: %v", err)
			}
		}
	})
}
