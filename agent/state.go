package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the state directory's file.
const stateFile = "state.json"

// maxState bounds the state file read.
const maxState = 64 << 10

// state is what the agent keeps across restarts.
type state struct {
	AgentID string `json:"agent_id"`
	// Server is the service URL the status was given by.
	Server string `json:"server"`
	Status string `json:"status"`
	// ServiceCA is the service CA (PEM) fetched at the first enrollment
	// with Server and pinned: session reports must chain to it.
	ServiceCA string `json:"service_ca,omitempty"`
	// BootID is the host's boot (/proc/sys/kernel/random/boot_id) at the
	// last attested round: after a reboot the service's IMA offset is the
	// old boot's, so the next round sends the list from its start.
	BootID string `json:"boot_id,omitempty"`
}

// loadState reads the saved state; none (no directory, no file) is the
// zero state. A file that does not parse is an error: the operator
// decides, the agent does not silently take another identity.
func loadState(dir string) (state, error) {
	var st state
	if dir == "" {
		return st, nil
	}
	p := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("agent state: %w", err)
	}
	if len(b) > maxState {
		return st, fmt.Errorf("agent state %s: larger than %d bytes", p, maxState)
	}
	if err := decodeStrict(b, &st); err != nil {
		return st, fmt.Errorf("agent state %s: %w", p, err)
	}
	if st.AgentID != "" {
		if err := ValidateID(st.AgentID); err != nil {
			return st, fmt.Errorf("agent state %s: %w", p, err)
		}
	}
	return st, nil
}

// saveState writes the state atomically (temporary file, rename), 0600,
// creating the directory 0700.
func saveState(dir string, st state) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("agent state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("agent state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	return nil
}
