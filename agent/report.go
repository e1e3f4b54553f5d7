package agent

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/trust"
)

// ErrReportRefused is a session report the agent will not trust, print or
// serve: it does not verify against the pinned service CA, or it is not
// the answer to this agent's evidence (sub, eat_nonce, cnf). The reason
// is ear.Of(err).
var ErrReportRefused = errors.New("the service's session report is refused")

// serviceCA is the CA the agent checks session reports against.
type serviceCA struct {
	roots *x509.CertPool
	// name says which CA it is, for logs and errors.
	name string
}

// newServiceCA pools the CA certificates.
func newServiceCA(certs []*x509.Certificate) (*serviceCA, error) {
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	ca := &serviceCA{roots: x509.NewCertPool()}
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("certificate %q is not a CA", c.Subject)
		}
		ca.roots.AddCert(c)
	}
	sum := sha256.Sum256(certs[0].Raw)
	ca.name = fmt.Sprintf("%q (SHA-256 %s)", certs[0].Subject.String(), hex.EncodeToString(sum[:]))
	return ca, nil
}

// parseServiceCA reads a pinned or fetched service CA (PEM).
func parseServiceCA(b []byte) (*serviceCA, error) {
	certs, err := trust.ParseCertificates(b)
	if err != nil {
		return nil, err
	}
	return newServiceCA(certs)
}

// pinServiceCA fetches the service CA (api.PathCA) when the agent has
// none yet: trust on first use, kept in the state directory from then on.
func (a *Agent) pinServiceCA(ctx context.Context) error {
	if a.ca != nil {
		return nil
	}
	b, err := a.o.Client.ServiceCA(ctx)
	if err != nil {
		return err
	}
	ca, err := parseServiceCA(b)
	if err != nil {
		return fmt.Errorf("service CA: %w: %v", ErrResponse, err)
	}
	a.ca, a.pin = ca, b
	a.log.Info("pinned the service CA for session reports", "ca", ca.name)
	return nil
}

// checkReport verifies the service's session report before the agent
// uses it: ear.Verify against the pinned CA (signature, chain, times,
// level 0–4), then Expect: it is this agent's (sub), it answers this
// round's challenge (eat_nonce), and it binds this enclave's report key
// (cnf); and its aud is exactly the audiences asked for (ReportAudience:
// the request's query is not signed, so a changed one shows here).
func (a *Agent) checkReport(tok string, nonce []byte, audiences []string, now time.Time) (*ear.Verified, error) {
	if a.ca == nil {
		return nil, fmt.Errorf("%w: no service CA pinned (enroll first, or give it)", ErrReportRefused)
	}
	v, err := ear.Verify(tok, a.ca.roots, now)
	if err == nil {
		err = v.Expect(ear.Expected{AgentID: a.id, Nonce: nonce, ReportKey: a.o.Enclave.ReportPublic()})
	}
	if err == nil && !sameSet(v.Claims.Audience, audiences) {
		err = &ear.Error{Code: ear.ReportAudience, Err: fmt.Errorf("the report is for %.200q, the agent asked for %.200q", v.Claims.Audience, audiences)}
	}
	if ear.Of(err) == ear.UntrustedChain {
		return nil, fmt.Errorf("%w: %w (the pinned service CA is %s)", ErrReportRefused, err, a.ca.name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReportRefused, err)
	}
	return v, nil
}

// sameSet reports whether a and b hold the same strings (b sorted and
// without repeats).
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	s := slices.Clone(a)
	slices.Sort(s)
	return slices.Equal(s, b)
}
