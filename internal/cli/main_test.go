package cli_test

import (
	"testing"

	"github.com/vigil-attest/vigil/internal/testpe"
)

// TestMain removes the PE images testpe built for this package's tests.
func TestMain(m *testing.M) { testpe.Main(m) }
