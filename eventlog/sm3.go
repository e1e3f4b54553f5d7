package eventlog

import (
	"encoding/binary"
	"hash"
	"math/bits"
)

// SM3 (GB/T 32905-2016), for the TPM's SM3_256 bank. The standard library
// has no SM3; this is the specification's algorithm, checked against its
// test vectors and OpenSSL in the tests.

const (
	sm3Size  = 32
	sm3Block = 64
)

var sm3IV = [8]uint32{0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e}

type sm3 struct {
	h   [8]uint32
	buf [sm3Block]byte
	n   int    // bytes in buf
	len uint64 // bytes written
}

func newSM3() hash.Hash {
	d := &sm3{}
	d.Reset()
	return d
}

func (d *sm3) Reset()         { d.h, d.n, d.len = sm3IV, 0, 0 }
func (d *sm3) Size() int      { return sm3Size }
func (d *sm3) BlockSize() int { return sm3Block }

func (d *sm3) Write(p []byte) (int, error) {
	n := len(p)
	d.len += uint64(n)
	if d.n > 0 {
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n == sm3Block {
			d.block(d.buf[:])
			d.n = 0
		}
	}
	for len(p) >= sm3Block {
		d.block(p[:sm3Block])
		p = p[sm3Block:]
	}
	d.n += copy(d.buf[:], p)
	return n, nil
}

func (d *sm3) Sum(in []byte) []byte {
	c := *d
	var pad [sm3Block + 8]byte
	pad[0] = 0x80
	k := (sm3Block + 56 - int(c.len%sm3Block) - 1) % sm3Block
	binary.BigEndian.PutUint64(pad[1+k:], c.len*8)
	c.Write(pad[:1+k+8])
	var out [sm3Size]byte
	for i, v := range c.h {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return append(in, out[:]...)
}

func sm3P0(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 9) ^ bits.RotateLeft32(x, 17) }
func sm3P1(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 15) ^ bits.RotateLeft32(x, 23) }

func (d *sm3) block(p []byte) {
	var w [68]uint32
	for i := 0; i < 16; i++ {
		w[i] = binary.BigEndian.Uint32(p[4*i:])
	}
	for j := 16; j < 68; j++ {
		w[j] = sm3P1(w[j-16]^w[j-9]^bits.RotateLeft32(w[j-3], 15)) ^ bits.RotateLeft32(w[j-13], 7) ^ w[j-6]
	}
	a, b, c, dd, e, f, g, h := d.h[0], d.h[1], d.h[2], d.h[3], d.h[4], d.h[5], d.h[6], d.h[7]
	for j := 0; j < 64; j++ {
		t := uint32(0x79cc4519)
		if j >= 16 {
			t = 0x7a879d8a
		}
		a12 := bits.RotateLeft32(a, 12)
		ss1 := bits.RotateLeft32(a12+e+bits.RotateLeft32(t, j%32), 7)
		ss2 := ss1 ^ a12
		var ff, gg uint32
		if j < 16 {
			ff, gg = a^b^c, e^f^g
		} else {
			ff, gg = (a&b)|(a&c)|(b&c), (e&f)|(^e&g)
		}
		tt1 := ff + dd + ss2 + (w[j] ^ w[j+4])
		tt2 := gg + h + ss1 + w[j]
		dd, c, b, a = c, bits.RotateLeft32(b, 9), a, tt1
		h, g, f, e = g, bits.RotateLeft32(f, 19), e, sm3P0(tt2)
	}
	d.h[0] ^= a
	d.h[1] ^= b
	d.h[2] ^= c
	d.h[3] ^= dd
	d.h[4] ^= e
	d.h[5] ^= f
	d.h[6] ^= g
	d.h[7] ^= h
}
