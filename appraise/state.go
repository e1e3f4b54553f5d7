package appraise

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/vigil-attest/vigil/ima"
)

// stateVersion is the replay state's format version. Version 2 keeps the
// derived boot facts and the quote's clock; a version 1 state is
// dropped (the agent then sends both logs whole once).
const stateVersion = 2

// replayState is an agent's replay state (Outcome.State, stored by the
// service and given back in Request.State): where the agent's IMA list
// replay stands, and the boot event log last verified.
type replayState struct {
	V    int        `json:"v"`
	IMA  *imaState  `json:"ima,omitempty"`
	Boot *bootState `json:"boot,omitempty"`
	// Clock is the last valid quote's reset and restart counts: a change
	// is a new boot (or a resume), whose IMA list starts again.
	Clock *clockState `json:"clock,omitempty"`
}

// clockState is the TPM's reset and restart counts (as the quote gives
// them: the TPM obfuscates them per key, consistently).
type clockState struct {
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`
}

// bootState is the firmware event log last verified: its SHA-256 and the
// quoted SHA-256 PCRs 0–9 it replayed to. While the quoted PCRs stay the
// same the host has not rebooted into another boot chain, so the log need
// not be sent again.
type bootState struct {
	LogSHA256 string `json:"log_sha256"`
	// PCRs are the quoted SHA-256 PCRs 0–9: index → lowercase hex.
	PCRs map[string]string `json:"pcrs"`
	// Facts are the boot facts derived from that log (once per boot), as
	// evidence.BootFacts encodes them. They stay encoded, after the
	// state's JSON (see encodeState): a round that reuses them finds
	// their decoded form and policy value in the Appraiser's boot cache,
	// by their digest, and nothing parses them.
	Facts json.RawMessage `json:"-"`
}

// imaState is ima.State in JSON: the PCR arrays hold only the non-zero
// values, by index.
type imaState struct {
	Offset          int64               `json:"offset"`
	Entries         int                 `json:"entries"`
	Violations      int                 `json:"violations"`
	Mismatches      int                 `json:"mismatches"`
	MismatchIndices []int               `json:"mismatch_indices,omitempty"`
	Templates       []ima.TemplateCount `json:"templates,omitempty"`
	BootAggregate   string              `json:"boot_aggregate,omitempty"`
	PCRMask         uint64              `json:"pcr_mask"`
	SHA1            map[string]string   `json:"sha1,omitempty"`
	SHA256          map[string]string   `json:"sha256,omitempty"`
	FirstEnd        int64               `json:"first_end"`
	FirstSum        string              `json:"first_sum"`
	LastOffset      int64               `json:"last_offset"`
	LastSum         string              `json:"last_sum"`
	SHA256Only      bool                `json:"sha256_only"`
	// Modules and Firmware are the IMA facts of every round of this boot
	// (evidence.IMAFacts), accumulated.
	Modules  []string `json:"modules,omitempty"`
	Firmware []string `json:"firmware,omitempty"`
}

func fromIMA(s *ima.State) *imaState {
	o := &imaState{
		Offset: s.Offset, Entries: s.Entries, Violations: s.Violations, Mismatches: s.Mismatches,
		MismatchIndices: s.MismatchIndices, Templates: s.Templates, BootAggregate: s.BootAggregate,
		PCRMask: s.PCRs, FirstEnd: s.FirstEnd, FirstSum: hex.EncodeToString(s.FirstSum[:]),
		LastOffset: s.LastOffset, LastSum: hex.EncodeToString(s.LastSum[:]), SHA256Only: s.SHA256Only,
	}
	nonzero := func(b []byte) bool {
		for _, c := range b {
			if c != 0 {
				return true
			}
		}
		return false
	}
	for i := range ima.MaxPCR {
		if nonzero(s.SHA1[i][:]) {
			if o.SHA1 == nil {
				o.SHA1 = map[string]string{}
			}
			o.SHA1[strconv.Itoa(i)] = hex.EncodeToString(s.SHA1[i][:])
		}
		if nonzero(s.SHA256[i][:]) {
			if o.SHA256 == nil {
				o.SHA256 = map[string]string{}
			}
			o.SHA256[strconv.Itoa(i)] = hex.EncodeToString(s.SHA256[i][:])
		}
	}
	return o
}

func (o *imaState) toIMA() (*ima.State, error) {
	s := &ima.State{
		Offset: o.Offset, Entries: o.Entries, Violations: o.Violations, Mismatches: o.Mismatches,
		MismatchIndices: o.MismatchIndices, Templates: o.Templates, BootAggregate: o.BootAggregate,
		PCRs: o.PCRMask, FirstEnd: o.FirstEnd, LastOffset: o.LastOffset, SHA256Only: o.SHA256Only,
	}
	if err := decodeFixed(s.FirstSum[:], o.FirstSum); err != nil {
		return nil, fmt.Errorf("first_sum: %w", err)
	}
	if err := decodeFixed(s.LastSum[:], o.LastSum); err != nil {
		return nil, fmt.Errorf("last_sum: %w", err)
	}
	for k, v := range o.SHA1 {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= ima.MaxPCR {
			return nil, fmt.Errorf("sha1 PCR %q", k)
		}
		if err := decodeFixed(s.SHA1[i][:], v); err != nil {
			return nil, fmt.Errorf("sha1 PCR %d: %w", i, err)
		}
	}
	for k, v := range o.SHA256 {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= ima.MaxPCR {
			return nil, fmt.Errorf("sha256 PCR %q", k)
		}
		if err := decodeFixed(s.SHA256[i][:], v); err != nil {
			return nil, fmt.Errorf("sha256 PCR %d: %w", i, err)
		}
	}
	return s, nil
}

func decodeFixed(dst []byte, s string) error {
	b, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%d bytes, want %d", len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

// encodeState encodes a replay state: its JSON, then, when it keeps boot
// facts, a newline and their JSON (json.Marshal never writes a raw
// newline, so the first one ends the state).
func encodeState(st *replayState) ([]byte, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if st.Boot != nil && len(st.Boot.Facts) > 0 {
		b = append(append(b, '\n'), st.Boot.Facts...)
	}
	return b, nil
}

// decodeState reads a saved replay state (encodeState's form). Nil or
// empty is no state. Boot facts are kept as they are; they are checked
// when first decoded (bootCache.fromState).
func decodeState(b []byte) (*replayState, *ima.State, error) {
	st := &replayState{V: stateVersion}
	if len(b) == 0 {
		return st, nil, nil
	}
	head, facts, _ := bytes.Cut(b, []byte{'\n'})
	if err := json.Unmarshal(head, st); err != nil {
		return nil, nil, err
	}
	if st.V != stateVersion {
		return nil, nil, fmt.Errorf("state version %d, want %d", st.V, stateVersion)
	}
	if len(facts) > 0 {
		if st.Boot == nil {
			return nil, nil, errors.New("boot facts without a boot")
		}
		st.Boot.Facts = facts
	}
	if st.IMA == nil {
		return st, nil, nil
	}
	is, err := st.IMA.toIMA()
	if err != nil {
		return nil, nil, fmt.Errorf("ima: %w", err)
	}
	return st, is, nil
}

// IMAOffset is where the agent's next IMA list should start, from a
// replay state (Outcome.State, or the stored one): 0 without a state.
func IMAOffset(state []byte) int64 {
	st, _, err := decodeState(state)
	if err != nil || st.IMA == nil {
		return 0
	}
	return st.IMA.Offset
}

// EventLogSHA256 is the SHA-256 (hex) of the boot event log verified for
// the agent, from a replay state: "" without one. An agent whose log has
// this digest may leave it out; the quoted boot PCRs must still equal the
// ones that log replayed to, or the log counts as unverified (a reboot).
func EventLogSHA256(state []byte) string {
	st, _, err := decodeState(state)
	if err != nil || st.Boot == nil || len(st.Boot.Facts) == 0 || string(st.Boot.Facts) == "null" {
		return ""
	}
	return st.Boot.LogSHA256
}
