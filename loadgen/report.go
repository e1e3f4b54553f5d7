package loadgen

import (
	"context"
	"fmt"
	"os"

	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/measure"
)

// DefaultReport is the canonical runtime report of the fixture host
// testhost.Base() (a hardened, healthy host with no modules or
// processes), measured once into a temporary directory by the agent's
// own collectors. Give Options.Report a captured host's report
// (`vigil agent measure --output json`, canonicalized) for a larger one.
func DefaultReport(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "vigil-loadgen-host-")
	if err != nil {
		return nil, fmt.Errorf("fixture host: %w", err)
	}
	defer os.RemoveAll(dir)
	h := testhost.Base()
	if err := h.Write(dir); err != nil {
		return nil, fmt.Errorf("fixture host: %w", err)
	}
	r, err := measure.New(measure.Options{}).Measure(ctx, h.Source(dir))
	if err != nil {
		return nil, fmt.Errorf("measure the fixture host: %w", err)
	}
	b, err := r.Canonical()
	if err != nil {
		return nil, fmt.Errorf("measure the fixture host: %w", err)
	}
	return b, nil
}
