package integrity_test

import (
	"testing"

	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/reason"
)

// TestDenyWithoutChain is the attack of issue 12: a publisher whose
// intermediate CA is denied ships a file whose only signature does not chain
// (an anchor the verifier lacks, or an issuer that may not issue). The deny
// rule on the intermediate the signature carries must still apply, with its
// own reason, not only untrusted-chain.
func TestDenyWithoutChain(t *testing.T) {
	e := newEnv(t, testpki.Options{})
	signed := e.osslSign(t, "denied-inter", "-h", "sha256")
	deny := "deny:\n  signer_tbs_sha256: [" + tbsSHA256(e.h.Intermediate) + "]\n"

	other := testpki.NewRoot(testpki.Options{CommonName: "Other Root"})
	testpki.WritePEMs(t, e.dir, "other.pem", other)
	untrusted, err := parsePolicy(e.dir, "trust: [other.pem]\n"+deny)
	if err != nil {
		t.Fatal(err)
	}
	want(t, verify(t, untrusted, signed), false, reason.UntrustedChain, reason.BlocklistedSigner)

	// The same policy without the deny rule: only the chain fails.
	plain, err := parsePolicy(e.dir, "trust: [other.pem]\n")
	if err != nil {
		t.Fatal(err)
	}
	want(t, verify(t, plain, signed), false, reason.UntrustedChain)

	// The chain builds: the deny rule applies as before.
	want(t, verify(t, e.policy(t, deny), signed), false, reason.BlocklistedSigner)
	want(t, verify(t, e.policy(t, ""), signed), true)
}
