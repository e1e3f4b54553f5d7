package evidence_test

import (
	"context"
	"crypto"
	"testing"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
)

// orderAttester records the order of calls; it is not a TPM and its
// evidence does not verify: it only checks Build's sequence.
type orderAttester struct {
	*soft.Enclave
	calls *[]string
}

func (a orderAttester) Kind() enclave.Kind                   { return enclave.TPM }
func (a orderAttester) AKPublic() ([]byte, crypto.PublicKey) { return []byte{1}, a.ReportPublic() }
func (a orderAttester) ReportKeyPublic() []byte              { return []byte{2} }
func (a orderAttester) EK(context.Context) ([]byte, crypto.PublicKey, []byte, error) {
	return nil, a.ReportPublic(), nil, nil
}
func (a orderAttester) Certify(context.Context, []byte) (*enclave.Certification, error) {
	*a.calls = append(*a.calls, "certify")
	return &enclave.Certification{}, nil
}
func (a orderAttester) Quote(_ context.Context, banks map[string][]int, _ []byte) (*enclave.Quote, error) {
	*a.calls = append(*a.calls, "quote")
	q := &enclave.Quote{PCRs: map[string]map[int][]byte{}}
	for b, idx := range banks {
		q.PCRs[b] = map[int][]byte{}
		for _, i := range idx {
			q.PCRs[b][i] = make([]byte, 32)
		}
	}
	return q, nil
}

// TestBuildReadsIMAAfterQuote: the IMA list must be read after the quote,
// or files measured in between make the quoted PCR 10 run ahead of it.
func TestBuildReadsIMAAfterQuote(t *testing.T) {
	s, _ := soft.New()
	var calls []string
	a := orderAttester{Enclave: s, calls: &calls}
	ev, err := evidence.Build(context.Background(), a, evidence.BuildOptions{
		Nonce: []byte("0123456789abcdef"), Report: []byte("{}"), IMAOffset: 64,
		ReadIMALog: func() ([]byte, error) { calls = append(calls, "read-ima"); return []byte{9}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls[1] != "quote" || calls[2] != "read-ima" {
		t.Errorf("calls %v: the IMA list must be read after the quote", calls)
	}
	if ev.IMALog == nil || ev.IMALog.Offset != 64 || ev.IMALog.Data[0] != 9 {
		t.Errorf("ima_log %+v", ev.IMALog)
	}
	if _, err := evidence.Build(context.Background(), s, evidence.BuildOptions{Nonce: []byte("short")}); err != evidence.ErrNonce {
		t.Errorf("short nonce: %v", err)
	}
}
