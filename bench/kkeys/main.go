// Command kkeys writes the certificates built into a kernel image as PEM,
// so that bench/run.sh can time a module scan without the kernel
// decompression that --kernel does on every run:
//
//	kkeys vmlinuz > keys.pem
//	vigil scan --trust keys.pem DIR
package main

import (
	"encoding/pem"
	"fmt"
	"os"

	"github.com/vigil-attest/vigil/kernelkeys"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kkeys VMLINUZ > keys.pem")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "kkeys:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	cs, err := kernelkeys.Certificates(f, st.Size())
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		return fmt.Errorf("%s: no built-in certificates", path)
	}
	for _, c := range cs {
		if err := pem.Encode(os.Stdout, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return err
		}
	}
	return nil
}
