package enclave_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/soft"
)

func TestSignMessage(t *testing.T) {
	e, err := soft.New()
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	pop := enc([]byte(`{"alg":"ES256","typ":"vigil-pop+jwt","jwk":{}}`)) + "." + enc([]byte(`{"aud":"x"}`))
	for _, tc := range []struct {
		name string
		msg  string
		ok   bool
	}{
		{"evidence binding", enclave.LabelEvidence + "\x00\x00\x00\x08noncenon" + strings.Repeat("r", 32), true},
		{"key proof", enclave.LabelKeyProof + "\x00\x00\x00\x01p", true},
		{"proof signing input", pop, true},
		{"a session report's signing input (typ JWT)", enc([]byte(`{"alg":"ES256","typ":"JWT"}`)) + "." + enc([]byte(`{"vigil.level":4}`)), false},
		{"a JWS without typ", enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(`{}`)), false},
		{"typ in another case", enc([]byte(`{"alg":"ES256","typ":"VIGIL-POP+JWT"}`)) + "." + enc([]byte(`{}`)), false},
		{"a whole proof (three segments)", pop + ".c2ln", false},
		{"an unregistered label", "vigil.other.v1\x00data", false},
		{"a label's prefix without its NUL", strings.TrimSuffix(enclave.LabelEvidence, "\x00"), false},
		{"free text", "transfer 1000 EUR", false},
		{"a bare digest", string(make([]byte, 32)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := enclave.SignMessage(context.Background(), e, []byte(tc.msg))
			if !tc.ok {
				if !errors.Is(err, enclave.ErrNotSignable) || sig != nil {
					t.Fatalf("SignMessage: %v, want ErrNotSignable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := sha256.Sum256([]byte(tc.msg))
			if !ecdsa.VerifyASN1(e.ReportPublic().(*ecdsa.PublicKey), d[:], sig) {
				t.Fatal("the signature is not over SHA-256(message)")
			}
		})
	}
}

// TestOnlySignMessageSigns holds the device side of the rule: outside
// tests, nothing but SignMessage calls an enclave's SignReport, so every
// signature of the report key passed its check.
func TestOnlySignMessageSigns(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root: %v", err)
	}
	fset := token.NewFileSet()
	calls := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		ast.Inspect(f, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "SignReport" {
				calls++
				if rel != filepath.Join("enclave", "sign.go") {
					t.Errorf("%s: calls SignReport directly; sign through enclave.SignMessage", fset.Position(c.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Fatal("no call of SignReport found: the scan is wrong")
	}
}
