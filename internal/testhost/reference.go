package testhost

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/vigil-attest/vigil/codesign"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// IMAListPath is where the kernel exposes the binary IMA list.
const IMAListPath = "/sys/kernel/security/ima/binary_runtime_measurements"

// SetSecureBoot sets efivars as a UEFI machine has them: SecureBoot and
// SetupMode, PK and KEK, a db holding the anchors, and a dbx of dbxHashes
// SHA-256 entries (as Microsoft's dbx has a few hundred).
func (h *Host) SetSecureBoot(on bool, anchors []*x509.Certificate, dbxHashes int) error {
	const rt = efi.NonVolatile | efi.BootServiceAccess | efi.RuntimeAccess
	const db = rt | efi.TimeBasedAuthenticatedWriteAccess
	owner := efi.MustParseGUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
	var dbLists []efi.SignatureList
	for _, c := range anchors {
		dbLists = append(dbLists, efi.X509List(owner, c.Raw))
	}
	dbData, err := efi.AppendSignatureLists(nil, dbLists...)
	if err != nil {
		return err
	}
	var hashes [][]byte
	for i := 0; i < dbxHashes; i++ {
		d := sha256.Sum256([]byte(fmt.Sprintf("revoked boot binary %d", i)))
		hashes = append(hashes, d[:])
	}
	dbxData := []byte{}
	if len(hashes) > 0 {
		if dbxData, err = efi.AppendSignatureLists(nil, efi.HashList(efi.CertSHA256, owner, hashes...)); err != nil {
			return err
		}
	}
	var pk []byte
	if len(anchors) > 0 {
		if pk, err = efi.AppendSignatureLists(nil, efi.X509List(owner, anchors[0].Raw)); err != nil {
			return err
		}
	}
	sb := byte(0)
	if on {
		sb = 1
	}
	h.EFIVars = map[efi.VarID]efi.Variable{
		efi.SecureBoot: {Attributes: rt, Data: []byte{sb}},
		efi.SetupMode:  {Attributes: rt, Data: []byte{0}},
		efi.PK:         {Attributes: db, Data: pk},
		efi.KEK:        {Attributes: db, Data: pk},
		efi.DB:         {Attributes: db, Data: dbData},
		efi.DBX:        {Attributes: db, Data: dbxData},
	}
	return nil
}

// Reference is the host of the performance figures: 200 loaded modules
// signed by s, 300 processes, an IMA list of imaEntries entries, Secure
// Boot on with anchors in db and 400
// hashes in dbx, and eventLog (a real firmware log) when not nil.
func Reference(s *codesign.Signer, imaEntries int, anchors []*x509.Certificate, eventLog []byte) (*Host, error) {
	h := Base()
	if err := h.SetSecureBoot(true, anchors, 400); err != nil {
		return nil, err
	}
	h.EventLog = eventLog
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
		h.Files[IMAListPath] = imatest.List(imaEntries)
	}
	return h, nil
}
