package testhost

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/ima"
)

// IMAListPath is where the kernel exposes the binary IMA list.
const IMAListPath = "/sys/kernel/security/ima/binary_runtime_measurements"

// IMAList returns a binary ima-ng list of n entries: boot_aggregate, then
// files with SHA-256 digests under realistic paths.
func IMAList(n int) ([]byte, error) {
	recs := make([]ima.Record, 0, n)
	dirs := []string{"/usr/bin/", "/usr/lib/x86_64-linux-gnu/", "/usr/sbin/", "/etc/", "/usr/lib/systemd/"}
	for i := 0; i < n; i++ {
		name := "boot_aggregate"
		if i > 0 {
			name = fmt.Sprintf("%sfile-%05d.so.%d", dirs[i%len(dirs)], i, i%7)
		}
		d := sha256.Sum256([]byte(name))
		r := ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "sha256", Digest: d[:], Name: name}
		if err := r.SetTemplateHash(); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	var buf bytes.Buffer
	if err := ima.EncodeBinary(&buf, recs); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Reference is the host of the performance figures: 200 loaded modules
// signed by s, 300 processes and an IMA list of imaEntries entries.
func Reference(s *codesign.Signer, imaEntries int) (*Host, error) {
	h := Base()
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("mod%03d", i)
		body := append([]byte("\x7fELF\x02\x01\x01 reference module "+name), bytes.Repeat([]byte{byte(i)}, 4096)...)
		var out bytes.Buffer
		if err := codesign.SignModule(s, bytes.NewReader(body), int64(len(body)), &out); err != nil {
			return nil, err
		}
		h.Modules = append(h.Modules, Module{Name: name, Size: 65536, File: out.Bytes()})
	}
	h.Processes = []Process{
		{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd", ExeData: []byte("systemd image")},
		{PID: 812, Comm: "sshd", Exe: "/usr/sbin/sshd", ExeData: []byte("sshd image"), Threads: []int{813, 814}},
	}
	for pid := 2000; pid < 2298; pid++ {
		h.Processes = append(h.Processes, Process{PID: pid, Comm: "worker", Exe: "/usr/bin/worker", ExeData: []byte("worker image")})
	}
	if imaEntries > 0 {
		list, err := IMAList(imaEntries)
		if err != nil {
			return nil, err
		}
		h.Files[IMAListPath] = list
	}
	return h, nil
}
