// Package cli builds vigil's cobra command tree. Each verb group lives in its
// own file with an options struct that adds its own flags; the library
// packages it calls know nothing of cobra.
package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, stable for scripts.
const (
	ExitOK     = 0 // every file allowed, host healthy
	ExitDenied = 1 // some file denied, host unhealthy
	ExitUsage  = 2 // usage or I/O error
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// NewRoot returns the root command.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Code integrity and runtime attestation for Linux fleets",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	return root
}

// Main runs vigil with args and returns the process exit code.
func Main(args []string) int {
	root := NewRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "vigil:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "vigil:", err)
	return ExitUsage
}
