package ima_test

import (
	"bytes"
	"crypto"
	"errors"
	"testing"

	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// TestSHA256Only: the SHA-256 bank alone gives the same PCR values as a
// full replay, and a state cannot be resumed in the other mode.
func TestSHA256Only(t *testing.T) {
	list := imatest.List(300)
	full, err := ima.Parse(bytes.NewReader(list), ima.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := ima.Parse(bytes.NewReader(list), ima.Options{SHA256Only: true})
	if err != nil {
		t.Fatal(err)
	}
	if fast.SHA256 != full.SHA256 || fast.Entries != full.Entries || fast.Offset != full.Offset || !fast.SHA256Only {
		t.Fatalf("SHA256Only replay differs from the full one")
	}
	if fast.PCR(crypto.SHA1, ima.MeasurementPCR) != nil {
		t.Error("a SHA-256-only state reports a SHA-1 PCR")
	}
	if _, err := ima.ReplayUntil(bytes.NewReader(list), &ima.State{}, crypto.SHA1, ima.MeasurementPCR, full.PCR(crypto.SHA1, ima.MeasurementPCR), ima.Options{SHA256Only: true}); err == nil {
		t.Error("ReplayUntil on the SHA-1 bank in SHA256Only mode")
	}
	half := fast.Clone()
	if err := ima.Replay(bytes.NewReader(nil), &half, ima.Options{}); !errors.Is(err, ima.ErrStateMismatch) {
		t.Errorf("resuming a SHA-256-only state in full mode: %v", err)
	}
}
