package measure

import (
	"context"

	"github.com/vigil-attest/vigil/hostfs"
)

// IMA holds the claims read from the IMA runtime measurement list.
type IMA struct {
	Section
}

// imaCollector keeps the list's replay state between measurements.
type imaCollector struct{}

func (c *imaCollector) collect(ctx context.Context, src hostfs.Source) IMA {
	return IMA{Section: Section{Status: StatusUnavailable, Error: "not implemented"}}
}
