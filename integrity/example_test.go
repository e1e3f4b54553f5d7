package integrity_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/internal/testpki"
)

// Judge a file under a signing policy: signed by a publisher the policy
// trusts, it is allowed; changed after signing, it is denied with the
// reason. The engine is built once and is safe for concurrent use.
func ExampleEngine_VerifyFile() {
	dir, err := os.MkdirTemp("", "vigil-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A publisher's CA and code-signing certificate, and a policy that
	// trusts the CA.
	root := testpki.NewRoot(testpki.Options{CommonName: "Example Publisher CA"})
	leaf := root.NewLeaf(testpki.Options{CommonName: "Example Publisher"})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), root.CertPEM(), 0o644); err != nil {
		log.Fatal(err)
	}
	policy, err := codepolicy.Parse([]byte("trust: [ca.pem]\n"), dir)
	if err != nil {
		log.Fatal(err)
	}

	// firmware.bin with a detached CMS signature beside it (firmware.bin.p7s).
	file := filepath.Join(dir, "firmware.bin")
	if err := os.WriteFile(file, bytes.Repeat([]byte("vigil"), 1000), 0o644); err != nil {
		log.Fatal(err)
	}
	s := &codesign.Signer{Key: leaf.Key, Cert: leaf.Cert}
	if err := codesign.SignFile(s, codesign.Detached, file, file+".p7s"); err != nil {
		log.Fatal(err)
	}

	e := integrity.New(integrity.Options{Policy: policy})
	v, err := e.VerifyFile(context.Background(), file)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Format, "allowed:", v.Allowed, "signer:", v.Signatures[0].Signer.Subject)

	// The content changed after signing.
	if err := os.WriteFile(file, bytes.Repeat([]byte("vigiL"), 1000), 0o644); err != nil {
		log.Fatal(err)
	}
	v, err = e.VerifyFile(context.Background(), file)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Format, "allowed:", v.Allowed, "reasons:", v.Reasons)
	// Output:
	// cms allowed: true signer: CN=Example Publisher,O=Vigil Test
	// cms allowed: false reasons: [digest-mismatch]
}
