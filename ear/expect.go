package ear

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
)

// Expected is what the party that asked for a session report knows the
// report must say: the agent it attested, the nonce that agent answered and
// the report key the agent holds. The agent checks its own reports with
// it before it trusts, prints or serves them.
type Expected struct {
	// AgentID is the report's "sub".
	AgentID string
	// Nonce is the challenge the evidence answered ("eat_nonce").
	Nonce []byte
	// ReportKey is the enclave's report key ("cnf").
	ReportKey crypto.PublicKey
}

// Expect checks a verified report against what the caller expected: sub
// is AgentID [WrongSubject], eat_nonce is Nonce [WrongNonce] and cnf is
// ReportKey [WrongKey]. Each is required: a report lacking the claim fails
// with its reason, and an Expected with an empty field is the caller's
// error (without a Reason), never a pass.
func (v *Verified) Expect(e Expected) error {
	if v == nil || e.AgentID == "" || len(e.Nonce) == 0 || e.ReportKey == nil {
		return errors.New("ear: Expect needs a verified report, an agent ID, a nonce and a report key")
	}
	c := &v.Claims
	if c.AgentID != e.AgentID {
		return fail(WrongSubject, "the report is for agent %.130q, not %q", c.AgentID, e.AgentID)
	}
	if len(c.Nonce) == 0 {
		return fail(WrongNonce, "the report has no eat_nonce")
	}
	if !bytes.Equal(c.Nonce, e.Nonce) {
		return fail(WrongNonce, "the report answers another challenge (eat_nonce)")
	}
	if c.ReportKey == nil {
		// The service binds no key when the evidence did not verify:
		// say what it found.
		reasons := make([]string, 0, 3)
		for _, f := range c.Failures[:min(3, len(c.Failures))] {
			reasons = append(reasons, f.Reason)
		}
		return fail(WrongKey, "the report binds no key (no cnf): level %d, failures %.200q", c.Level, strings.Join(reasons, ", "))
	}
	k, ok := e.ReportKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return errors.New("ear: Expect: the expected report key cannot be compared")
	}
	if !k.Equal(c.ReportKey) {
		return fail(WrongKey, "the report binds another key (cnf) than the agent's report key")
	}
	return nil
}
