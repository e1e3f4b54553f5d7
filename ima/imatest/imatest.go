// Package imatest builds realistic IMA measurement lists for tests and
// benchmarks: a boot_aggregate entry, then files under the usual system
// directories with SHA-256 digests, a few ima-sig and ima-buf entries and
// the odd violation, as a Debian host with an ima-ng policy lists them.
package imatest

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/vigil-attest/vigil/ima"
)

var (
	dirs  = []string{"/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/systemd", "/usr/libexec", "/etc", "/usr/lib/python3/dist-packages/apt", "/usr/share/perl5"}
	bases = []string{"bash", "systemd", "libc.so.6", "libssl.so.3", "sshd", "python3.11", "ld-linux-x86-64.so.2", "libcrypto.so.3", "libsystemd.so.0", "containerd", "kubelet", "libz.so.1", "cron", "ls"}
)

// Records returns n records (n ≥ 1); the same n gives the same records.
// Entry 0 is boot_aggregate; every 97th is ima-sig, every 499th ima-buf and
// every 1009th a violation.
func Records(n int) []ima.Record {
	out := make([]ima.Record, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, Record(i))
	}
	return out
}

// Record returns entry i of Records.
func Record(i int) ima.Record {
	r := ima.Record{PCR: ima.MeasurementPCR, Template: "ima-ng", DigestAlgo: "sha256"}
	switch {
	case i == 0:
		r.Name = "boot_aggregate"
	case i%1009 == 0:
		r.Name = fmt.Sprintf("/var/log/journal/%032x/system.journal", i)
		r.Digest = make([]byte, ima.DigestSize) // a violation lists 20 zero bytes
		return r
	case i%499 == 0:
		r.Template, r.Name = "ima-buf", "kexec-cmdline"
		r.Buf = []byte(fmt.Sprintf("BOOT_IMAGE=/boot/vmlinuz-6.1.0-%d-amd64 root=UUID=8c1f6c4e-3b5a-4f0e-9d2c-1a2b3c4d5e6f ro quiet", i%40))
	case i%97 == 0:
		r.Template = "ima-sig"
		r.Name = path(i)
		// An IMA v2 signature header (type 3, version 2, sha256, key id,
		// length) and a 256-byte RSA signature.
		r.Sig = append([]byte{3, 2, 4, 0x1a, 0x2b, 0x3c, 0x4d, 1, 0}, bytes.Repeat([]byte{byte(i)}, 256)...)
	default:
		r.Name = path(i)
	}
	src := r.Name
	if r.Buf != nil {
		src = string(r.Buf)
	}
	sum := sha256.Sum256([]byte(src))
	r.Digest = sum[:]
	if err := r.SetTemplateHash(); err != nil {
		panic(err)
	}
	return r
}

func path(i int) string {
	d := dirs[i%len(dirs)]
	b := bases[(i/len(dirs))%len(bases)]
	if v := i / (len(dirs) * len(bases)); v > 0 {
		return fmt.Sprintf("%s/%s.%d", d, b, v)
	}
	return d + "/" + b
}

// List returns the binary form of Records(n).
func List(n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		r := Record(i)
		var err error
		if b, err = ima.AppendBinary(b, &r); err != nil {
			panic(err)
		}
	}
	return b
}

// Boot is a host's IMA list for one boot: Records(n) with entry 0's
// boot_aggregate set to the SHA-256 over the boot's SHA-256 PCRs 0–9 (as
// the kernel computes it), then one entry per module path (measured at
// load, as the tcb policy's MODULE_CHECK rule does).
func Boot(n int, pcrs [10][32]byte, modules ...string) []byte {
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(p[:])
	}
	var b []byte
	add := func(r ima.Record) {
		var err error
		if b, err = ima.AppendBinary(b, &r); err != nil {
			panic(err)
		}
	}
	for i := 0; i < n; i++ {
		r := Record(i)
		if i == 0 {
			r.Digest = h.Sum(nil)
			if err := r.SetTemplateHash(); err != nil {
				panic(err)
			}
		}
		add(r)
	}
	for _, m := range modules {
		r := ima.Record{PCR: ima.MeasurementPCR, Template: "ima-ng", DigestAlgo: "sha256", Name: m}
		sum := sha256.Sum256([]byte(m))
		r.Digest = sum[:]
		if err := r.SetTemplateHash(); err != nil {
			panic(err)
		}
		add(r)
	}
	return b
}
