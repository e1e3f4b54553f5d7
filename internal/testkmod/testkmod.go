// Package testkmod crafts signed Linux kernel modules for tests, as an
// attacker holding a key would: content | PKCS#7 | the module signature
// trailer, with the PKCS#7 made by openssl cms under any options
// (signers, signed attributes or not, certificates or not, digests) and
// any bytes after it. The code-integrity tests judge these files; the
// real-host tests (internal/testvm) hand the same files to a real kernel.
package testkmod

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-attest/vigil/internal/testcmd"
	"github.com/vigil-attest/vigil/kmodsig"
)

// OpensslSigned signs content with `openssl cms -sign -binary -outform DER
// -md sha256` plus args (signers and keys, -noattr, -nocerts, another
// -md…), and writes content | PKCS#7 (plus pad zero bytes) | trailer to
// dir/name.
func OpensslSigned(tb testing.TB, dir, name string, content []byte, pad int, args ...string) string {
	tb.Helper()
	in := filepath.Join(dir, name+".content")
	if err := os.WriteFile(in, content, 0o644); err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, name+".p7")
	testcmd.Run(tb, "openssl", append([]string{"cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256", "-in", in, "-out", out}, args...)...)
	p7, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return Write(tb, dir, name, content, append(p7, make([]byte, pad)...))
}

// Write writes content | p7 | the signature trailer to dir/name.
func Write(tb testing.TB, dir, name string, content, p7 []byte) string {
	tb.Helper()
	var b bytes.Buffer
	if err := kmodsig.Append(&b, bytes.NewReader(content), p7); err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return out
}

// SignedContent returns the module's signed content and PKCS#7 (the file
// without its signature), for re-signing or corrupting.
func SignedContent(tb testing.TB, path string) (content, p7 []byte) {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := kmodsig.Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		tb.Fatal(err)
	}
	return raw[:m.ContentLength], bytes.Clone(m.PKCS7)
}
