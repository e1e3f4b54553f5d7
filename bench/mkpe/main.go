// Command mkpe makes variants of an unsigned PE image for the benchmarks by
// appending overlay data after the sections. The Authenticode image hash
// covers such data, so each variant has its own image hash and, once
// signed, its own signature.
//
//	mkpe -in base.exe -out v.exe -overlay 4096 -seed 7     # base + 4 KiB
//	mkpe -in base.exe -out big.exe -size 536870912         # grow to 512 MiB
//
// The overlay is pseudorandom (seeded, so runs are reproducible) and its
// length is a multiple of 8, so the file needs no padding when signed.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
)

func main() {
	in := flag.String("in", "", "unsigned PE image")
	out := flag.String("out", "", "output file")
	overlay := flag.Int64("overlay", 0, "bytes of overlay to append (rounded up to a multiple of 8)")
	size := flag.Int64("size", 0, "grow the file to this size instead (rounded up to a multiple of 8)")
	seed := flag.Uint64("seed", 1, "seed of the overlay data")
	flag.Parse()
	if err := mkpe(*in, *out, *overlay, *size, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkpe:", err)
		os.Exit(1)
	}
}

func mkpe(in, out string, overlay, size int64, seed uint64) error {
	if in == "" || out == "" || (overlay > 0) == (size > 0) {
		return fmt.Errorf("need -in, -out and exactly one of -overlay, -size")
	}
	base, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	if len(base) < 2 || base[0] != 'M' || base[1] != 'Z' {
		return fmt.Errorf("%s: not a PE image", in)
	}
	// Pad the base to a multiple of 8 first: overlay data then starts where
	// a signer would put its padding.
	pad := (8 - int64(len(base))%8) % 8
	if size > 0 {
		overlay = size - int64(len(base)) - pad
		if overlay < 0 {
			return fmt.Errorf("%s is already %d bytes, more than -size %d", in, len(base), size)
		}
	}
	overlay = (overlay + 7) &^ 7
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(base)
	w.Write(make([]byte, pad))
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b [8]byte
	for left := overlay; left > 0; left -= 8 {
		binary.LittleEndian.PutUint64(b[:], rng.Uint64())
		w.Write(b[:])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
