// Package trust builds certificate chains from a code signer (or a
// timestamping authority) to a configured trust anchor, and checks validity
// periods, extended key usages and algorithm strength on the way, reporting
// a stable reason code for each failure.
//
// It differs from crypto/x509.Verify on purpose: an intermediate may be an
// anchor (as sbverify --cert allows), SHA-1 chains are checked and then
// judged by policy rather than refused outright, validity is checked at a
// chosen time (a trusted timestamp) or not at all (UEFI style), and EKUs are
// named by OID, including Microsoft's kernel-mode ones.
package trust

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/reason"
)

// Well-known extended key usages.
var (
	EKUAny          = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
	EKUCodeSigning  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	EKUTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
)

// Options controls Build.
type Options struct {
	// Anchors are trusted certificates. A chain ends at the first anchor it
	// meets, whether it is a root or an intermediate.
	Anchors []*x509.Certificate
	// Intermediates are untrusted certificates that may complete a path
	// (usually those carried by the signature).
	Intermediates []*x509.Certificate
	// At is the time at which every certificate below the anchor must be
	// valid. Zero means now.
	At time.Time
	// IgnoreExpiry skips validity periods (UEFI semantics).
	IgnoreExpiry bool
	// RequireEKU lists EKUs the leaf must carry. A certificate without an
	// EKU extension is valid for any purpose (RFC 5280 4.2.1.12). An
	// intermediate with an EKU extension constrains its subtree: it must
	// carry them too (or anyExtendedKeyUsage).
	RequireEKU []asn1.ObjectIdentifier
	// MinHash is the weakest hash accepted in certificate signatures below
	// the anchor (zero: any).
	MinHash crypto.Hash
	// MaxDepth bounds path length (default 8).
	MaxDepth int
}

// Chain is a path from a leaf (index 0) to an anchor (last).
type Chain []*x509.Certificate

// Anchor returns the trust anchor that ends the chain.
func (c Chain) Anchor() *x509.Certificate { return c[len(c)-1] }

// Build finds a valid path from leaf to an anchor. When every path fails, the
// error carries the reason of the path that got furthest: a path that
// reaches an anchor but fails a check gives that check's code (expired,
// not-yet-valid, wrong-eku, weak-algorithm, bad-signature, issuer-not-ca,
// issuer-no-keycertsign, path-length-exceeded, unknown-critical-extension);
// no path at all gives untrusted-chain.
func Build(leaf *x509.Certificate, o Options) (Chain, error) {
	if o.MaxDepth == 0 {
		o.MaxDepth = 8
	}
	if o.At.IsZero() {
		o.At = time.Now()
	}
	b := &builder{o: o}
	chain := b.walk(leaf, Chain{leaf}, 0)
	if chain != nil {
		return chain, nil
	}
	if b.best != nil {
		return nil, b.best
	}
	return nil, reason.New(reason.UntrustedChain, "no path from %q (issuer %q) to a trust anchor", leaf.Subject.String(), leaf.Issuer.String())
}

type builder struct {
	o     Options
	best  error
	steps int
}

func isAnchor(c *x509.Certificate, anchors []*x509.Certificate) bool {
	for _, a := range anchors {
		if bytes.Equal(a.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// walk extends path (ending in cur) towards an anchor, depth first.
func (b *builder) walk(cur *x509.Certificate, path Chain, depth int) Chain {
	b.steps++
	if b.steps > 256 { // bound the search on hostile certificate sets
		return nil
	}
	if isAnchor(cur, b.o.Anchors) {
		if err := b.check(path); err != nil {
			b.best = err
			return nil
		}
		return path
	}
	if depth >= b.o.MaxDepth {
		return nil
	}
	for _, set := range [][]*x509.Certificate{b.o.Anchors, b.o.Intermediates} {
		for _, p := range set {
			if !bytes.Equal(p.RawSubject, cur.RawIssuer) {
				continue
			}
			if len(cur.AuthorityKeyId) > 0 && len(p.SubjectKeyId) > 0 && !bytes.Equal(cur.AuthorityKeyId, p.SubjectKeyId) {
				continue
			}
			if inPath(p, path) {
				continue
			}
			if _, err := cms.CheckCertificateSignature(cur, p); err != nil {
				if reason.Of(err, "") == reason.BadSignature && b.best == nil {
					b.best = err
				}
				continue
			}
			if c := b.walk(p, append(path[:len(path):len(path)], p), depth+1); c != nil {
				return c
			}
		}
	}
	return nil
}

func inPath(c *x509.Certificate, path Chain) bool {
	for _, x := range path {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// check applies time, signature, algorithm, RFC 5280 issuer (checkPath) and
// EKU checks to a complete path.
func (b *builder) check(path Chain) error {
	o := b.o
	for i, c := range path {
		last := i == len(path)-1
		if last {
			break // the anchor is trusted configuration, not checked
		}
		if !o.IgnoreExpiry {
			if o.At.Before(c.NotBefore) {
				return reason.New(reason.NotYetValid, "certificate %q is valid from %s, checked at %s", c.Subject.String(), c.NotBefore.Format(time.RFC3339), o.At.Format(time.RFC3339))
			}
			if o.At.After(c.NotAfter) {
				return reason.New(reason.Expired, "certificate %q expired %s, checked at %s", c.Subject.String(), c.NotAfter.Format(time.RFC3339), o.At.Format(time.RFC3339))
			}
		}
		h, err := cms.CheckCertificateSignature(c, path[i+1])
		if err != nil {
			return err
		}
		if o.MinHash != 0 && cms.Strength(h) < cms.Strength(o.MinHash) {
			return reason.New(reason.WeakAlgorithm, "certificate %q is signed with %s, below the minimum %s", c.Subject.String(), cms.HashName(h), cms.HashName(o.MinHash))
		}
	}
	if err := checkPath(path); err != nil {
		return err
	}
	for i, c := range path {
		if i == len(path)-1 && i > 0 {
			break
		}
		if err := checkEKU(c, o.RequireEKU, i == 0); err != nil {
			return err
		}
	}
	return nil
}

// HasEKU reports whether c permits usage: it lists it, lists
// anyExtendedKeyUsage, or has no EKU extension.
func HasEKU(c *x509.Certificate, usage asn1.ObjectIdentifier) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageAny {
			return true
		}
		if oid, ok := ekuOID(u); ok && oid.Equal(usage) {
			return true
		}
	}
	for _, u := range c.UnknownExtKeyUsage {
		if u.Equal(usage) || u.Equal(EKUAny) {
			return true
		}
	}
	return false
}

func checkEKU(c *x509.Certificate, required []asn1.ObjectIdentifier, leaf bool) error {
	for _, r := range required {
		if !HasEKU(c, r) {
			what := "signer"
			if !leaf {
				what = "issuing CA"
			}
			return reason.New(reason.WrongEKU, "%s certificate %q lacks extended key usage %v", what, c.Subject.String(), r)
		}
	}
	return nil
}

var ekuOIDs = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageServerAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:     EKUCodeSigning,
	x509.ExtKeyUsageEmailProtection: {1, 3, 6, 1, 5, 5, 7, 3, 4},
	x509.ExtKeyUsageTimeStamping:    EKUTimeStamping,
	x509.ExtKeyUsageOCSPSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 9},
	x509.ExtKeyUsageIPSECEndSystem:  {1, 3, 6, 1, 5, 5, 7, 3, 5},
	x509.ExtKeyUsageIPSECTunnel:     {1, 3, 6, 1, 5, 5, 7, 3, 6},
	x509.ExtKeyUsageIPSECUser:       {1, 3, 6, 1, 5, 5, 7, 3, 7},

	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     {1, 3, 6, 1, 4, 1, 311, 10, 3, 3},
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      {2, 16, 840, 1, 113730, 4, 1},
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: {1, 3, 6, 1, 4, 1, 311, 2, 1, 22},
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     {1, 3, 6, 1, 4, 1, 311, 61, 1, 1},
}

func ekuOID(u x509.ExtKeyUsage) (asn1.ObjectIdentifier, bool) {
	oid, ok := ekuOIDs[u]
	return oid, ok
}

// String prints a chain as subject names, leaf first.
func (c Chain) String() string {
	s := ""
	for i, x := range c {
		if i > 0 {
			s += " <- "
		}
		s += fmt.Sprintf("%q", x.Subject.CommonName)
	}
	return s
}
