package testvm

import (
	"os"
	"testing"
)

// TestMain removes what the run's tests shared (the enrolled MOK's
// variables) after they ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if mokDir != "" {
		os.RemoveAll(mokDir)
	}
	os.Exit(code)
}
