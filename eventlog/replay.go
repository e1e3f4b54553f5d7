package eventlog

import (
	"encoding/hex"
	"hash"
	"sort"
	"strconv"
)

// PCRs holds replayed PCR values: bank → PCR index → value. Only banks
// that could be replayed and PCRs that at least one event extends are
// present.
type PCRs map[Alg]map[uint32][]byte

// Replay extends, bank by bank, every event's digest into its PCR, as
// the TPM did while the platform booted. EV_NO_ACTION events are not
// extended. PCRs start at zero, except PCR 0 after a StartupLocality
// event, which starts at the locality in its last byte (0x…03 when
// TPM2_Startup came from locality 3, 0x…04 for an H-CRTM). Banks of
// algorithms this package cannot hash are left out; compare with Banks.
func (l *Log) Replay() PCRs {
	out := PCRs{}
	var locality byte
	type bank struct {
		alg  Alg
		size int
		h    hash.Hash
		pcrs map[uint32][]byte
	}
	var banks []bank
	for _, a := range l.Banks() {
		if h := a.New(); h != nil {
			banks = append(banks, bank{alg: a, size: a.Size(), h: h, pcrs: map[uint32][]byte{}})
		}
	}
	start := 0
	if l.SpecID != nil {
		start = 1 // the Spec ID event
	}
	for i := start; i < len(l.Events); i++ {
		e := &l.Events[i]
		if e.Type == EvNoAction {
			if e.PCR == 0 && isStartupLocality(e) {
				locality = e.Data[len(e.Data)-1]
			}
			continue
		}
		for bi := range banks {
			b := &banks[bi]
			d := e.Digest(b.alg)
			if d == nil {
				// Parse makes every crypto-agile event carry every
				// bank, and a TPM 1.2 event its SHA-1.
				continue
			}
			v, ok := b.pcrs[e.PCR]
			if !ok {
				v = make([]byte, b.size, 64)
				if e.PCR == 0 {
					v[b.size-1] = locality
				}
			}
			b.h.Reset()
			b.h.Write(v)
			b.h.Write(d)
			b.pcrs[e.PCR] = b.h.Sum(v[:0])
		}
	}
	for _, b := range banks {
		if len(b.pcrs) > 0 {
			out[b.alg] = b.pcrs
		}
	}
	return out
}

// Hex returns the values as bank name → decimal PCR index → lowercase
// hex, the form of the runtime report's claims.
func (p PCRs) Hex() map[string]map[string]string {
	out := make(map[string]map[string]string, len(p))
	for alg, pcrs := range p {
		m := make(map[string]string, len(pcrs))
		for i, v := range pcrs {
			m[strconv.FormatUint(uint64(i), 10)] = hex.EncodeToString(v)
		}
		out[alg.String()] = m
	}
	return out
}

// Indexes returns the PCR indexes of a bank, ascending.
func (p PCRs) Indexes(alg Alg) []uint32 {
	out := make([]uint32, 0, len(p[alg]))
	for i := range p[alg] {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}
