// Command vigil is code integrity and runtime attestation for Linux fleets.
// It only wires the library packages to the command line; see internal/cli.
package main

import (
	"os"

	"github.com/vigil-attest/vigil/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
