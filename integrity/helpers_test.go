package integrity_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// env is a test world: a code-signing hierarchy and a TSA hierarchy written
// to PEM files, and helpers to make policies over them.
type env struct {
	dir                  string
	h                    *testpki.Hierarchy
	rootPEM, chainPEM    string // root; leaf+intermediate (for osslsigncode -certs)
	leafPEM, leafKey     string
	interPEM             string
	tsaRoot, tsa         *testpki.Cert
	tsaRootPEM, tsaChain string
	tsaKey               string
}

func newEnv(t *testing.T, leaf testpki.Options) *env {
	t.Helper()
	old := time.Now().AddDate(-5, 0, 0)
	root := testpki.NewRoot(testpki.Options{NotBefore: old})
	inter := root.NewIntermediate(testpki.Options{NotBefore: old})
	e := &env{dir: t.TempDir(), h: &testpki.Hierarchy{Root: root, Intermediate: inter, Leaf: inter.NewLeaf(leaf)}}
	e.rootPEM = testpki.WritePEMs(t, e.dir, "root.pem", e.h.Root)
	e.interPEM = testpki.WritePEMs(t, e.dir, "inter.pem", e.h.Intermediate)
	e.chainPEM = testpki.WritePEMs(t, e.dir, "chain.pem", e.h.Leaf, e.h.Intermediate)
	e.leafPEM, e.leafKey = e.h.Leaf.WriteFiles(t, e.dir, "leaf")
	now := time.Now()
	e.tsaRoot = testpki.NewRoot(testpki.Options{CommonName: "Vigil Test TSA Root", NotBefore: now.AddDate(-5, 0, 0)})
	e.tsa = e.tsaRoot.NewLeaf(testpki.Options{CommonName: "Vigil Test TSA", NotBefore: now.AddDate(-5, 0, 0),
		EKU: tsEKU, CriticalEKU: true})
	e.tsaRootPEM = testpki.WritePEMs(t, e.dir, "tsaroot.pem", e.tsaRoot)
	e.tsaChain = testpki.WritePEMs(t, e.dir, "tsachain.pem", e.tsa, e.tsaRoot)
	_, e.tsaKey = e.tsa.WriteFiles(t, e.dir, "tsa")
	return e
}

// policy parses a policy whose trust list is the code-signing root and the
// TSA root, plus extra YAML.
func (e *env) policy(t *testing.T, extra string) *codepolicy.Policy {
	t.Helper()
	y := "trust: [root.pem, tsaroot.pem]\n" + extra
	p, err := codepolicy.Parse([]byte(y), e.dir)
	if err != nil {
		t.Fatalf("policy:\n%s\n%v", y, err)
	}
	return p
}

func verify(t *testing.T, p *codepolicy.Policy, path string) *integrity.Verdict {
	t.Helper()
	eng := integrity.New(integrity.Options{Policy: p})
	v, err := eng.VerifyFile(context.Background(), path)
	if err != nil {
		t.Fatalf("verify %s: %v", path, err)
	}
	return v
}

// want asserts the verdict's allowed flag and exact reason set.
func want(t *testing.T, v *integrity.Verdict, allowed bool, reasons ...reason.Code) {
	t.Helper()
	got := slices.Clone(v.Reasons)
	slices.Sort(got)
	slices.Sort(reasons)
	if reasons == nil {
		reasons = []reason.Code{}
	}
	if v.Allowed != allowed || !slices.Equal(got, reasons) {
		t.Fatalf("%s: allowed=%v reasons=%v, want allowed=%v reasons=%v\n%s", filepath.Base(v.Path), v.Allowed, v.Reasons, allowed, reasons, describe(v))
	}
}

func describe(v *integrity.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  format=%s error=%q\n", v.Format, v.Error)
	for _, s := range v.Signatures {
		fmt.Fprintf(&b, "  sig %d nested=%v valid=%v reasons=%v\n", s.Index, s.Nested, s.Valid, s.Reasons)
		for _, m := range s.Messages {
			fmt.Fprintf(&b, "    %s\n", m)
		}
	}
	return b.String()
}

func fileSHA256(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tbsSHA256(c *testpki.Cert) string {
	s := sha256.Sum256(c.Cert.RawTBSCertificate)
	return hex.EncodeToString(s[:])
}

func parsePolicy(dir, y string) (*codepolicy.Policy, error) { return codepolicy.Parse([]byte(y), dir) }

func spkiSHA256(c *testpki.Cert) string {
	s := sha256.Sum256(c.Cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// peSignature returns the first Authenticode signature of a PE file.
func peSignature(t *testing.T, path string) *cms.SignedData {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := authenticode.Parse(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pf.Certificates()
	if err != nil || len(certs) == 0 {
		t.Fatalf("certificates: %v", err)
	}
	sd, err := cms.Parse(certs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// indexUnique finds b in raw and fails unless it occurs exactly once.
func indexUnique(t *testing.T, raw, b []byte) int {
	t.Helper()
	i := bytes.Index(raw, b)
	if i < 0 || bytes.Contains(raw[i+1:], b) {
		t.Fatal("bytes not found exactly once")
	}
	return i
}
