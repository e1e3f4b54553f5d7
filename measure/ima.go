package measure

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/ima"
)

// The IMA runtime measurement list, and the boot's identity: the list is
// append-only for the life of a boot, so a new boot ID means a new list.
const (
	imaListPath = "/sys/kernel/security/ima/binary_runtime_measurements"
	bootIDPath  = "/proc/sys/kernel/random/boot_id"
)

// imaCollector keeps the list's replay state between measurements, so
// that a warm measurement reads only the entries appended since: it checks
// that the boot is the same and that the first entry and the last one it
// replayed are unchanged, and replays from there. The SHA-256 of the list is carried
// along the same way.
type imaCollector struct {
	valid  bool
	st     ima.State
	sum    []byte // marshalled SHA-256 state over the list's first st.Offset bytes
	bootID []byte
	opts   ima.Options
}

func (c *imaCollector) collect(ctx context.Context, src hostfs.Source) IMA {
	out := IMA{Templates: map[string]int{}}
	f, err := src.Open(imaListPath)
	if err != nil {
		c.valid = false
		out.Section = statusOf(err)
		return out
	}
	defer f.Close()
	bootID, _ := src.ReadFile(bootIDPath) // absent in most captured trees
	st, h, err := c.resume(f, bootID)
	if err == nil {
		err = ima.Replay(imaCtxReader{ctx, io.TeeReader(f, h)}, &st, c.opts)
	}
	if err != nil {
		c.valid = false
		out.Section = Section{Status: StatusError, Error: fmt.Sprintf("%s: %v", imaListPath, err)}
		return out
	}
	src.Record(imaListPath, hex.EncodeToString(h.Sum(nil)))
	if sum, err := h.(encoding.BinaryMarshaler).MarshalBinary(); err == nil {
		c.valid, c.st, c.sum, c.bootID = true, st.Clone(), sum, bytes.Clone(bootID)
	} else {
		c.valid = false
	}

	out.Section = Section{Status: StatusOK}
	out.Entries = st.Entries
	out.Violations = st.Violations
	out.PCR10 = IMAPCR{
		SHA1:   hex.EncodeToString(st.SHA1[ima.MeasurementPCR][:]),
		SHA256: hex.EncodeToString(st.SHA256[ima.MeasurementPCR][:]),
	}
	out.TemplateHashMismatches = st.Mismatches
	out.Templates = st.TemplateCounts()
	out.Offset = st.Offset
	out.BootAggregate = st.BootAggregate
	return out
}

// resume returns the state and running SHA-256 to replay f from, with f
// positioned where the replay goes on: the saved state when the list
// still holds its prefix, else the start of the list.
func (c *imaCollector) resume(f hostfs.File, bootID []byte) (ima.State, hash.Hash, error) {
	if c.valid && bytes.Equal(bootID, c.bootID) && c.st.Check(f) == nil {
		if _, err := f.Seek(c.st.Offset, io.SeekStart); err == nil {
			h := sha256.New()
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.sum); err == nil {
				return c.st.Clone(), h, nil
			}
		}
	}
	c.valid = false
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ima.State{}, nil, fmt.Errorf("rewind: %w", err)
	}
	return ima.State{}, sha256.New(), nil
}

// imaCtxReader stops a long read when the measurement is cancelled.
type imaCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r imaCtxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
