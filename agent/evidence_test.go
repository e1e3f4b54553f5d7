package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/vigil-attest/vigil/agent"
	"github.com/vigil-attest/vigil/enclave/soft"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
)

// TestBuildEvidenceLogs: the event log travels unless the verifier holds
// the same one; the IMA list travels from the verifier's offset; absent
// logs are left out, and NoLogs leaves both out.
func TestBuildEvidenceLogs(t *testing.T) {
	host := testhost.Base()
	host.EventLog = []byte("a firmware event log stand-in")
	list := imatest.List(20)
	host.Files[testhost.IMAListPath] = list
	src := hostfs.New(host.WriteDir(t))
	bare := hostfs.New(testhost.Base().WriteDir(t))
	e, err := soft.New()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(host.EventLog)
	known := hex.EncodeToString(sum[:])
	nonce := []byte("0123456789abcdef")
	cases := []struct {
		name         string
		src          hostfs.Source
		o            agent.EvidenceOptions
		wantEventLog []byte
		wantIMA      []byte
	}{
		{"first round", src, agent.EvidenceOptions{}, host.EventLog, list},
		{"verifier holds the log", src, agent.EvidenceOptions{KnownEventLogSHA256: known, IMAOffset: 100}, nil, list[100:]},
		{"verifier holds another log", src, agent.EvidenceOptions{KnownEventLogSHA256: known[:63] + "0"}, host.EventLog, list},
		{"nothing new", src, agent.EvidenceOptions{IMAOffset: int64(len(list))}, host.EventLog, []byte{}},
		{"no logs", src, agent.EvidenceOptions{NoLogs: true}, nil, nil},
		{"host without logs", bare, agent.EvidenceOptions{}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Nonce, o.Report = nonce, []byte(`{}`)
			ev, err := agent.BuildEvidence(context.Background(), e, tc.src, o)
			if err != nil {
				t.Fatal(err)
			}
			if (ev.EventLog == nil) != (tc.wantEventLog == nil) || ev.EventLog != nil && !bytes.Equal(ev.EventLog.Data, tc.wantEventLog) {
				t.Errorf("event log %+v, want %d bytes", ev.EventLog, len(tc.wantEventLog))
			}
			if (ev.IMALog == nil) != (tc.wantIMA == nil) {
				t.Fatalf("IMA log %v, want present=%t", ev.IMALog, tc.wantIMA != nil)
			}
			if ev.IMALog != nil && (!bytes.Equal(ev.IMALog.Data, tc.wantIMA) || ev.IMALog.Offset != o.IMAOffset) {
				t.Errorf("IMA log offset %d, %d bytes; want %d, %d", ev.IMALog.Offset, len(ev.IMALog.Data), o.IMAOffset, len(tc.wantIMA))
			}
			// The signature holds whatever was left out ("{}" is no
			// runtime report: that is the only complaint).
			res := evidence.Verify(context.Background(), ev, evidence.Options{Nonce: nonce})
			if len(res.Reasons) != 1 || res.Reasons[0] != evidence.ReportMalformed {
				t.Errorf("reasons %v", res.Reasons)
			}
		})
	}
	if _, err := agent.BuildEvidence(context.Background(), e, src, agent.EvidenceOptions{Nonce: nonce, IMAOffset: -1}); err == nil {
		t.Error("negative IMA offset accepted")
	}
	if _, err := agent.BuildEvidence(context.Background(), e, src, agent.EvidenceOptions{Nonce: nonce[:4]}); !errors.Is(err, evidence.ErrNonce) {
		t.Errorf("short nonce: %v", err)
	}
}
