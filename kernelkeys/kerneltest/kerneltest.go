// Package kerneltest builds synthetic kernel payloads carrying the kernel's
// compiled-in key lists, for tests of kernelkeys and of what consumes it.
package kerneltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vigil-attest/vigil/internal/testpki"
)

// Image is a vmlinux-like ELF64 (one PT_LOAD at the x86-64 kernel
// base, as the real payload has) carrying the byte layout of
// certs/system_certificates.S, certs/revocation_certificates.S and
// certs/blacklist_hashes.c, and the System.map that locates them.
type Image struct {
	// ELF is the payload (vmlinux); wrap it in a bzImage or compress it
	// as a test needs.
	ELF []byte
	// SystemMap is its System.map text.
	SystemMap string
	// Symbols are the addresses it names.
	Symbols map[string]uint64
}

const (
	kBase   = 0xffffffff81000000 // p_vaddr of the one PT_LOAD
	kOffset = 0x1000             // its p_offset
)

// Build lays out system (system_certificate_list), revoked
// (revocation_certificate_list; nil for a kernel without
// CONFIG_SYSTEM_REVOCATION_LIST) and hashes (blacklist_hashes[] strings,
// "tbs:..."/"bin:...") with a stray certificate outside every list and a
// linux_banner.
func Build(system, revoked [][]byte, hashes []string) Image {
	var data []byte
	syms := map[string]uint64{}
	at := func(name string) { syms[name] = kBase + uint64(len(data)) }
	align := func() {
		for len(data)%8 != 0 {
			data = append(data, 0)
		}
	}
	// Junk, a stray certificate (in .rodata, say) and the banner.
	data = append(data, bytes.Repeat([]byte{0xcc}, 4096)...)
	stray := testpki.NewRoot(testpki.Options{CommonName: "stray, not in any list"})
	data = append(data, stray.Cert.Raw...)
	at("linux_banner")
	data = append(data, "Linux version 6.1.0-synthetic (vigil test)\x00"...)
	list := func(name string, certs [][]byte) {
		align()
		at(name)
		n := 0
		for _, c := range certs {
			data = append(data, c...)
			n += len(c)
		}
		align()
		at(name + "_size")
		data = binary.LittleEndian.AppendUint64(data, uint64(n))
	}
	list("system_certificate_list", system)
	if revoked != nil {
		list("revocation_certificate_list", revoked)
	}
	// The hash strings, then the NULL-terminated pointer array.
	var ptrs []uint64
	for _, h := range hashes {
		ptrs = append(ptrs, kBase+uint64(len(data)))
		data = append(data, h...)
		data = append(data, 0)
	}
	align()
	at("blacklist_hashes")
	for _, p := range append(ptrs, 0) {
		data = binary.LittleEndian.AppendUint64(data, p)
	}
	data = append(data, bytes.Repeat([]byte{0xcc}, 512)...)

	// ELF64 header and one program header.
	img := make([]byte, kOffset, kOffset+len(data))
	copy(img, "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(img[16:], 2)     // ET_EXEC
	le.PutUint16(img[18:], 62)    // EM_X86_64
	le.PutUint32(img[20:], 1)     // EV_CURRENT
	le.PutUint64(img[24:], kBase) // e_entry
	le.PutUint64(img[32:], 64)    // e_phoff
	le.PutUint16(img[52:], 64)    // e_ehsize
	le.PutUint16(img[54:], 56)    // e_phentsize
	le.PutUint16(img[56:], 1)     // e_phnum
	ph := img[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[8:], kOffset)
	le.PutUint64(ph[16:], kBase)
	le.PutUint64(ph[24:], kBase)
	le.PutUint64(ph[32:], uint64(len(data)))
	le.PutUint64(ph[40:], uint64(len(data)))
	le.PutUint64(ph[48:], 0x1000)
	img = append(img, data...)

	var m strings.Builder
	fmt.Fprintf(&m, "%016x T _text\n%016x T startup_64\n", uint64(kBase), uint64(kBase))
	for _, name := range []string{"linux_banner", "system_certificate_list", "system_certificate_list_size",
		"revocation_certificate_list", "revocation_certificate_list_size", "blacklist_hashes"} {
		if a, ok := syms[name]; ok {
			fmt.Fprintf(&m, "%016x R %s\n", a, name)
		}
	}
	return Image{ELF: img, SystemMap: m.String(), Symbols: syms}
}
