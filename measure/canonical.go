package measure

import (
	"encoding/json"
	"fmt"

	"github.com/gowebpki/jcs"
)

// Canonical returns the report in its canonical form: the JSON
// Canonicalization Scheme (RFC 8785) — members sorted by name, no
// insignificant white space, fixed string and number forms. The same
// inputs give byte-identical output, so the form can be signed and
// compared, and a verifier in any language can reproduce it.
func (r *Report) Canonical() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	c, err := jcs.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("canonicalise report: %w", err)
	}
	return c, nil
}

// Canonicalize returns the canonical form of any JSON document (a report
// received from elsewhere), or an error if it is not JSON.
func Canonicalize(doc []byte) ([]byte, error) {
	return jcs.Transform(doc)
}
