// Package testcmd runs peer tools such as osslsigncode, sbverify, modinfo
// and openssl for tests: the independent implementations vigil's results
// are checked against. A tool that fails fails the test, with the command
// line and the tool's own words in the message.
package testcmd

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Run runs name with args and returns its standard output and standard
// error together. It fails the test when the command fails.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := Output(name, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Output runs name with args and returns its standard output and standard
// error together. It never fails the test: the error, when the command
// fails, carries the command line and the output.
func Output(name string, args ...string) (string, error) {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

// RunStdin runs name with args and stdin as its standard input (none when
// stdin is nil) and returns its standard output alone. It fails the test
// when the command fails, quoting the standard error.
func RunStdin(tb testing.TB, stdin []byte, name string, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// Modinfo returns the field of the kernel module at path as `modinfo -F`
// prints it, without surrounding white space.
func Modinfo(tb testing.TB, field, path string) string {
	tb.Helper()
	return strings.TrimSpace(string(RunStdin(tb, nil, "modinfo", "-F", field, path)))
}

// ColonHex formats b as modinfo prints sig_key: upper-case hex bytes
// separated by colons.
func ColonHex(b []byte) string {
	s := strings.ToUpper(hex.EncodeToString(b))
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}

// OpensslCMSVerify checks the detached PKCS#7 signature p7 over content
// with `openssl cms -verify` and the signer certificate in the PEM file
// certPEM, without chain building (-noverify): the signature check alone.
// The two inputs are written to files in dir. It returns an error with
// openssl's output when openssl rejects the signature, and fails the test
// only when the files cannot be written.
func OpensslCMSVerify(tb testing.TB, dir string, content, p7 []byte, certPEM string) error {
	tb.Helper()
	c, s := filepath.Join(dir, "cms-verify-content"), filepath.Join(dir, "cms-verify-sig.der")
	if err := os.WriteFile(c, content, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(s, p7, 0o644); err != nil {
		tb.Fatal(err)
	}
	_, err := Output("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", s, "-content", c,
		"-certfile", certPEM, "-nointern", "-noverify", "-purpose", "any", "-out", os.DevNull)
	return err
}
