package integrity_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"sort"
	"testing"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// fuzzEngine trusts a test hierarchy whose leaf signs the seeds, so that
// mutations reach the deep checks, not only the parsers.
func fuzzEngine(f *testing.F) (*integrity.Engine, *testpki.Hierarchy) {
	h := testpki.NewHierarchy(testpki.Options{})
	p := codepolicy.Default()
	p.AddAnchors(h.Root.Cert)
	eng := integrity.New(integrity.Options{Policy: p, Keyring: []*x509.Certificate{h.Leaf.Cert, h.Intermediate.Cert}})
	return eng, h
}

// smallest returns the n smallest files among paths.
func smallest(f *testing.F, paths []string, n int) [][]byte {
	sort.Slice(paths, func(i, j int) bool { return size(paths[i]) < size(paths[j]) })
	var out [][]byte
	for _, p := range paths[:min(n, len(paths))] {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 1 << 62
	}
	return st.Size()
}

// checkVerdict holds for every input: no panic (the fuzzer catches those),
// a verdict, known reason codes only, and a reason for every denial.
func checkVerdict(t *testing.T, v *integrity.Verdict, err error) {
	if err != nil {
		t.Fatalf("in-memory verification returned an error: %v", err)
	}
	known := map[reason.Code]bool{}
	for _, c := range reason.All() {
		known[c] = true
	}
	if !v.Allowed && len(v.Reasons) == 0 {
		t.Fatal("denied without a reason")
	}
	for _, c := range v.Reasons {
		if !known[c] {
			t.Fatalf("unknown reason %q", c)
		}
	}
	for _, s := range v.Signatures {
		if s.Valid != (len(s.Reasons) == 0) {
			t.Fatalf("signature valid=%v with reasons %v", s.Valid, s.Reasons)
		}
	}
}

func FuzzVerifyPE(f *testing.F) {
	eng, h := fuzzEngine(f)
	for _, name := range []string{"fwupdx64.efi.signed", "fbx64.efi.signed"} {
		b, err := os.ReadFile(artifacts.EFI(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// A small PE signed by the trusted leaf.
	b, _ := os.ReadFile(artifacts.EFI(f, "fwupdx64.efi.signed"))
	var out bytes.Buffer
	if err := codesign.SignPE(&codesign.Signer{Key: h.Leaf.Key, Cert: h.Leaf.Cert, Chain: []*x509.Certificate{h.Intermediate.Cert}}, bytes.NewReader(b), int64(len(b)), &out); err != nil {
		f.Fatal(err)
	}
	f.Add(out.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := eng.VerifyReader(context.Background(), "fuzz.efi", bytes.NewReader(b), int64(len(b)), nil)
		checkVerdict(t, v, err)
	})
}

func FuzzVerifyModule(f *testing.F) {
	eng, h := fuzzEngine(f)
	mods := smallest(f, artifacts.Modules(f), 3)
	for _, m := range mods {
		f.Add(m)
	}
	var out bytes.Buffer
	content := bytes.Repeat([]byte("\x7fELF module body "), 64)
	if err := codesign.SignModule(&codesign.Signer{Key: h.Leaf.Key, Cert: h.Leaf.Cert}, bytes.NewReader(content), int64(len(content)), &out); err != nil {
		f.Fatal(err)
	}
	f.Add(out.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := eng.VerifyReader(context.Background(), "fuzz.ko", bytes.NewReader(b), int64(len(b)), nil)
		checkVerdict(t, v, err)
	})
}

func FuzzVerifyDetached(f *testing.F) {
	eng, h := fuzzEngine(f)
	content := []byte("firmware image contents")
	var sig bytes.Buffer
	if err := codesign.SignDetached(&codesign.Signer{Key: h.Leaf.Key, Cert: h.Leaf.Cert, Chain: []*x509.Certificate{h.Intermediate.Cert}}, bytes.NewReader(content), &sig); err != nil {
		f.Fatal(err)
	}
	f.Add(content, sig.Bytes())
	f.Fuzz(func(t *testing.T, content, sig []byte) {
		if sig == nil {
			sig = []byte{}
		}
		v, err := eng.VerifyReader(context.Background(), "fuzz.bin", bytes.NewReader(content), int64(len(content)), sig)
		checkVerdict(t, v, err)
	})
}
