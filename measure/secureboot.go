package measure

import (
	"context"

	"github.com/vigil-attest/vigil/hostfs"
)

// SecureBoot holds the claims read from efivars and the boot files.
type SecureBoot struct {
	Section
}

func (m *Measurer) collectSecureBoot(ctx context.Context, src hostfs.Source) SecureBoot {
	return SecureBoot{Section: Section{Status: StatusUnavailable, Error: "not implemented"}}
}
