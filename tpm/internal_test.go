package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/internal/testtpm"
)

// fakeTPM answers rcs in turn, then success.
type fakeTPM struct {
	rcs   []tpm2.TPMRC
	calls int
}

func (f *fakeTPM) Send([]byte) ([]byte, error) {
	rc := tpm2.TPMRCSuccess
	if f.calls < len(f.rcs) {
		rc = f.rcs[f.calls]
	}
	f.calls++
	rsp := make([]byte, 10)
	binary.BigEndian.PutUint16(rsp, uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(rsp[2:], 10)
	binary.BigEndian.PutUint32(rsp[6:], uint32(rc))
	return rsp, nil
}

func TestRetrying(t *testing.T) {
	f := &fakeTPM{rcs: []tpm2.TPMRC{tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting, tpm2.TPMRCRetry}}
	r := &retrying{next: f}
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(r); err != nil {
		t.Fatalf("after 4 busy answers: %v", err)
	}
	if f.calls != 5 {
		t.Fatalf("%d calls, want 5", f.calls)
	}
	// Other errors are not retried.
	f = &fakeTPM{rcs: []tpm2.TPMRC{tpm2.TPMRCObjectMemory}}
	r = &retrying{next: f}
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(r); !errors.Is(err, tpm2.TPMRCObjectMemory) || f.calls != 1 {
		t.Fatalf("object memory: %v after %d calls", err, f.calls)
	}

	// A TPM that stays busy: ErrTPMBusy after the budget.
	defer func(b time.Duration) { retryBudget = b }(retryBudget)
	retryBudget = 50 * time.Millisecond
	busy := make([]tpm2.TPMRC, 1000)
	for i := range busy {
		busy[i] = tpm2.TPMRCRetry
	}
	r = &retrying{next: &fakeTPM{rcs: busy}}
	start := time.Now()
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(r); !errors.Is(err, ErrTPMBusy) || !errors.Is(err, tpm2.TPMRCRetry) {
		t.Fatalf("always busy: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	// The context cuts the waiting short.
	retryBudget = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	r = &retrying{next: &fakeTPM{rcs: busy}, ctx: ctx}
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	// A response shorter than a header.
	r = &retrying{next: shortTPM{}}
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(r); err == nil {
		t.Fatal("short response accepted")
	}
}

type shortTPM struct{}

func (shortTPM) Send([]byte) ([]byte, error) { return []byte{0x80, 0x01}, nil }

// The EK templates regenerate the EKs swtpm_setup persisted, whose
// certificates are in NV: a TPM without persisted EKs gets the same keys.
func TestEKTemplatesReproducePersistedEKs(t *testing.T) {
	sw := testtpm.Start(t)
	e, err := Open(context.Background(), sw.URI, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, typ := range []EKType{EKRSA2048, EKECCP384} {
		spec := ekSpecs[typ]
		err := e.do(context.Background(), func() error {
			persisted, err := tpm2.ReadPublic{ObjectHandle: spec.persistent}.Execute(e.tpm)
			if err != nil {
				return err
			}
			created, err := e.createEK(spec.template)
			if err != nil {
				return err
			}
			e.flush(created.ObjectHandle)
			if !bytes.Equal(created.OutPublic.Bytes(), persisted.OutPublic.Bytes()) {
				t.Errorf("%s: the template's EK differs from swtpm's persisted EK", typ)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	// And no transient object is left behind by anything above.
	err = e.do(context.Background(), func() error {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: 0x80000000, PropertyCount: 64}.Execute(e.tpm)
		if err != nil {
			return err
		}
		h, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return err
		}
		if len(h.Handle) != 0 {
			t.Errorf("transient objects left: %v", h.Handle)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
