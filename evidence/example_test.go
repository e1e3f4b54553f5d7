package evidence_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/report"
)

// Verify evidence offline, as the service does: the verifier picks a
// fresh nonce, the host answers with a runtime report signed by its
// enclave (here a software key; a TPM adds a quote and the report key's
// certification), and the verifier checks it with nothing but the nonce
// (and, for a TPM, the enrolled AK). Evidence replayed to another
// challenge is refused with the reason.
func ExampleVerify() {
	ctx := context.Background()
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		log.Fatal(err)
	}

	// On the host.
	key, err := soft.New()
	if err != nil {
		log.Fatal(err)
	}
	r := report.NewReport()
	r.Kernel.Status, r.Kernel.Release, r.Kernel.Hostname = report.StatusOK, "6.1.0-56-amd64", "web-01"
	r.Inputs["/proc/sys/kernel/osrelease"] = "00ff"
	body, err := r.Canonical()
	if err != nil {
		log.Fatal(err)
	}
	ev, err := evidence.Build(ctx, key, evidence.BuildOptions{Nonce: nonce, Report: body})
	if err != nil {
		log.Fatal(err)
	}

	// At the verifier.
	res := evidence.Verify(ctx, ev, evidence.Options{Nonce: nonce})
	fmt.Println("valid:", res.Valid, "enclave:", res.Enclave, "host:", res.Report.Kernel.Hostname)

	// The same evidence answering another challenge.
	other := make([]byte, 16)
	res = evidence.Verify(ctx, ev, evidence.Options{Nonce: other})
	fmt.Println("valid:", res.Valid, "reasons:", res.Reasons)
	// Output:
	// valid: true enclave: software host: web-01
	// valid: false reasons: [nonce-mismatch]
}
