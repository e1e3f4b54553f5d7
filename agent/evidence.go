package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/measure"
)

// Where the kernel exposes the logs the evidence carries.
const (
	// EventLogPath is the firmware (TCG) event log.
	EventLogPath = measure.EventLogPath
	// IMAListPath is IMA's binary measurement list.
	IMAListPath = "/sys/kernel/security/ima/binary_runtime_measurements"
)

// EvidenceOptions say what BuildEvidence puts into evidence besides the
// report.
type EvidenceOptions struct {
	// Nonce is the verifier's challenge; Report the canonical runtime
	// report.
	Nonce  []byte
	Report []byte
	// PCRs is the quote's selection; nil means evidence.DefaultPCRs.
	PCRs map[string][]int
	// WithEK adds the EK and its certificate.
	WithEK bool
	// NoLogs leaves the event log and the IMA list out.
	NoLogs bool
	// IMAOffset is where the IMA list starts (the verifier's replay
	// state, api.Challenge.IMAOffset).
	IMAOffset int64
	// KnownEventLogSHA256 is the SHA-256 (hex) of the event log the
	// verifier already holds (api.Challenge.EventLogSHA256): a log with
	// this digest is left out. Empty: the log is sent.
	KnownEventLogSHA256 string
}

// BuildEvidence is the one way the agent makes evidence, for `vigil agent
// evidence` and for each attestation round: it reads the event log through
// src, and the IMA list from IMAOffset after the quote (see
// evidence.BuildOptions.ReadIMALog), then calls evidence.Build. Logs the
// host does not expose are left out.
func BuildEvidence(ctx context.Context, e enclave.Enclave, src hostfs.Source, o EvidenceOptions) (*evidence.Evidence, error) {
	if o.IMAOffset < 0 {
		return nil, fmt.Errorf("IMA offset %d is negative", o.IMAOffset)
	}
	bo := evidence.BuildOptions{Nonce: o.Nonce, Report: o.Report, PCRs: o.PCRs, WithEK: o.WithEK, IMAOffset: o.IMAOffset}
	if !o.NoLogs {
		log, err := ReadLog(src, EventLogPath, 0)
		if err != nil {
			return nil, err
		}
		if log != nil && o.KnownEventLogSHA256 != "" {
			if sum := sha256.Sum256(log); hex.EncodeToString(sum[:]) == o.KnownEventLogSHA256 {
				log = nil
			}
		}
		bo.EventLog = log
		bo.ReadIMALog = func() ([]byte, error) { return ReadLog(src, IMAListPath, o.IMAOffset) }
	}
	return evidence.Build(ctx, e, bo)
}

// ReadLog reads a log through src from offset, at most hostfs.MaxFile
// bytes; a log the host does not have gives nil and no error.
func ReadLog(src hostfs.Source, name string, offset int64) ([]byte, error) {
	f, err := src.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%s: seek to %d: %w", name, offset, err)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, hostfs.MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > hostfs.MaxFile {
		return nil, fmt.Errorf("%s: %w", name, hostfs.ErrTooLarge)
	}
	return b, nil
}
