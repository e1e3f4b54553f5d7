package testvm

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testtpm"
)

// MokRequest is a pending MokManager request as mokutil leaves it in
// efivarfs: NAME (MokNew to enroll, MokXNew to revoke) holding
// EFI_SIGNATURE_LISTs and NAME's Auth variable (MokAuth, MokXAuth)
// holding the password hash MokManager checks, both NV|BS|RT.
type MokRequest struct {
	Name     string // "MokNew" or "MokXNew"
	Lists    []byte // the EFI_SIGNATURE_LISTs
	Password string
}

// mokAttrs are the attributes mokutil writes the request with.
const mokAttrs = efi.NonVolatile | efi.BootServiceAccess | efi.RuntimeAccess

// authName is the request's password variable: MokNew → MokAuth,
// MokXNew → MokXAuth.
func (r MokRequest) authName() string {
	return strings.TrimSuffix(r.Name, "New") + "Auth"
}

// Files returns the two efivarfs files (name → attributes and data) the
// guest writes under /sys/firmware/efi/efivars. The Auth variable is the
// simple-hash form (mokutil --simple-hash; shim's MokManager
// compute_pw_hash): SHA-256 over the request's data and the password as
// UCS-2.
func (r MokRequest) Files() map[string][]byte {
	h := sha256.New()
	h.Write(r.Lists)
	for _, c := range utf16.Encode([]rune(r.Password)) {
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], c)
		h.Write(b[:])
	}
	newVar, _ := efi.Variable{Attributes: mokAttrs, Data: r.Lists}.MarshalBinary()
	auth, _ := efi.Variable{Attributes: mokAttrs, Data: h.Sum(nil)}.MarshalBinary()
	return map[string][]byte{
		efi.VarID{Name: r.Name, GUID: efi.ShimLock}.FileName():       newVar,
		efi.VarID{Name: r.authName(), GUID: efi.ShimLock}.FileName(): auth,
	}
}

// mokRequestInit is /init of the boot that files a MOK request: it copies
// each file of /mnt/mokreq to efivarfs (one write each, as efivarfs
// requires) and powers off. shim finds the request at the next boot and
// starts MokManager.
const mokRequestInit = initPrologue + `for f in /mnt/mokreq/*; do
	dd if="$f" of="/sys/firmware/efi/efivars/$(basename "$f")" bs=64k 2>/mnt/mokreq.err || echo VIGIL-MOKREQ-FAILED
done
ls /sys/firmware/efi/efivars/ >/mnt/efivars.list
sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// MokManagerSteps drive MokManager over the serial console through a
// pending request (NOTES, "Real boots in qemu"): a key at shim's prompt,
// the request's entry of the menu (the second), Continue past the key
// view, Yes, the password, and Reboot. With -no-reboot qemu then exits.
// Each wait is for text only the next screen has: confirm is that
// screen's question ("Enroll the key(s)?", MokManager's mok_enrollment;
// for MokListX the same question).
func MokManagerSteps(password string) []ConsoleStep {
	// MokManager's notice for a list type it does not show (an
	// EFI_CERT_X509_SHA256 list in a MokListX request).
	notices := []string{"Doesn't look like a key or hash", "Press a key"}
	steps := []ConsoleStep{
		{Wait: "Press any key to perform MOK management", Send: " "},
		{Wait: "Enroll hash from disk", Delay: 2 * time.Second, Send: KeyDown},
		{Delay: time.Second, Send: KeyEnter},
		// One "View key N" per key, then Continue, the last item: Down
		// stops there however many keys the request has.
		{Wait: "View key 0", Delay: 2 * time.Second, Send: strings.Repeat(KeyDown, 8), Dismiss: notices},
		{Delay: time.Second, Send: KeyEnter},
		{Wait: "Enroll the key", Delay: 2 * time.Second, Send: KeyDown, Dismiss: notices},
		{Delay: time.Second, Send: KeyEnter},
		{Wait: "Password", Delay: 2 * time.Second},
	}
	for _, c := range password {
		steps = append(steps, ConsoleStep{Delay: 200 * time.Millisecond, Send: string(c)})
	}
	return append(steps,
		ConsoleStep{Delay: 500 * time.Millisecond, Send: KeyEnter},
		// Reboot is the first, selected entry of the menu MokManager
		// returns to; under a loaded TCG its text has come minutes late
		// (or not at all): Enter after 45 s anyway.
		ConsoleStep{Wait: "Reboot", Delay: 2 * time.Second, Send: KeyEnter, Within: 45 * time.Second},
	)
}

// ApplyMokRequest files req in the guest's variables (vars, modified in
// place) and has MokManager act on it: two boots, the first writing the
// request from the guest's efivarfs, the second driving MokManager over
// the console. The boots use a throw-away TPM.
func ApplyMokRequest(ctx context.Context, tb testing.TB, p Parts, vars string, req MokRequest) (time.Duration, error) {
	tb.Helper()
	t0 := time.Now()
	work := tb.TempDir()
	share := filepath.Join(work, "share")
	if err := os.MkdirAll(filepath.Join(share, "mokreq"), 0o755); err != nil {
		return 0, err
	}
	for name, b := range req.Files() {
		if err := os.WriteFile(filepath.Join(share, "mokreq", name), b, 0o644); err != nil {
			return 0, err
		}
	}
	initrd := filepath.Join(work, "initrd.img")
	if err := BuildInitramfs(p, Initramfs{Init: mokRequestInit, Modules: []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p"}}, initrd); err != nil {
		return 0, err
	}
	disk := filepath.Join(work, "disk.img")
	if err := BuildDisk(ctx, p, ESP{GrubCfg: grubCfg, Initrd: initrd}, disk); err != nil {
		return 0, err
	}
	tpm := testtpm.Start(tb)
	tpm.Stop()
	res, err := Run(ctx, p, Boot{Disk: disk, Vars: vars, TPMState: tpm.StateDir, Share: share, Timeout: 120 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("testvm: the MOK request boot: %w", err)
	}
	if !strings.Contains(res.Serial, "VIGIL-INIT-DONE") || strings.Contains(res.Serial, "VIGIL-MOKREQ-FAILED") {
		e, _ := os.ReadFile(filepath.Join(share, "mokreq.err"))
		return 0, fmt.Errorf("testvm: the guest did not file the MOK request: %s; serial tail:\n%s", e, lastLines(res.Serial, 20))
	}
	list, _ := os.ReadFile(filepath.Join(share, "efivars.list"))
	if !strings.Contains(string(list), req.Name+"-") {
		return 0, fmt.Errorf("testvm: %s is not in the guest's efivarfs after the write: %s", req.Name, list)
	}
	res, err = Run(ctx, p, Boot{Disk: disk, Vars: vars, TPMState: tpm.StateDir, Share: share, Timeout: 240 * time.Second,
		Console: MokManagerSteps(req.Password)})
	if err != nil {
		return 0, fmt.Errorf("testvm: the MokManager boot: %w", err)
	}
	if strings.Contains(res.Serial, "VIGIL-INIT-START") {
		return 0, fmt.Errorf("testvm: MokManager did not reboot the guest; serial tail:\n%s", lastLines(ansi.ReplaceAllString(res.Serial, ""), 30))
	}
	return time.Since(t0), nil
}

// MOK is a machine owner key enrolled in a copy of OVMF's Secure Boot
// variables: the guest's shim trusts it (MokList) and, with
// MokListTrustedRT, the kernel trusts it for modules (.machine).
type MOK struct {
	Key      *testpki.Cert
	CertPEM  string // the certificate, PEM
	KeyPEM   string // its private key, PEM
	Vars     string // OVMF variables with the key enrolled; copy before a boot
	Enrolled time.Duration
}

var (
	mokOnce sync.Once
	mokVal  *MOK
	mokErr  error
	// mokDir holds the enrolled variables for the rest of the test
	// binary's run (removed by TestMain).
	mokDir string
)

// EnrolledMOK returns the test run's MOK, enrolling it on first use (two
// boots: one enrollment per `go test`). Each caller copies Vars
// (MOK.CopyVars) for its own boots.
func EnrolledMOK(tb testing.TB, p Parts) *MOK {
	tb.Helper()
	mokOnce.Do(func() {
		// MokManager under TCG on a loaded machine is slow: one retry
		// from fresh variables.
		for try := 0; try < 2; try++ {
			if mokVal, mokErr = enrollMOK(tb, p); mokErr == nil {
				return
			}
			tb.Logf("testvm: MOK enrollment, try %d: %v", try+1, mokErr)
		}
	})
	if mokErr != nil {
		tb.Fatalf("testvm: enroll the MOK: %v", mokErr)
	}
	return mokVal
}

func enrollMOK(tb testing.TB, p Parts) (_ *MOK, err error) {
	dir, err := os.MkdirTemp("", "vigil-testvm-mok")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	mokDir = dir
	key := testpki.NewRoot(testpki.Options{CommonName: "Vigil Test Module Signing MOK", Key: testpki.RSA2048,
		EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
	m := &MOK{Key: key, CertPEM: filepath.Join(dir, "mok.pem"), KeyPEM: filepath.Join(dir, "mok.key"), Vars: filepath.Join(dir, "vars.fd")}
	if err := os.WriteFile(m.CertPEM, key.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(m.KeyPEM, key.KeyPEM(), 0o600); err != nil {
		return nil, err
	}
	if err := copyFile(p.OVMFVars, m.Vars); err != nil {
		return nil, err
	}
	lists, err := efi.X509List(efi.ShimLock, key.Cert.Raw).MarshalBinary()
	if err != nil {
		return nil, err
	}
	d, err := ApplyMokRequest(context.Background(), tb, p, m.Vars, MokRequest{Name: "MokNew", Lists: lists, Password: "vigiltest"})
	if err != nil {
		return nil, err
	}
	m.Enrolled = d
	return m, nil
}

// CopyVars copies the enrolled variables to a file of tb's own.
func (m *MOK) CopyVars(tb testing.TB) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "vars.fd")
	if err := copyFile(m.Vars, out); err != nil {
		tb.Fatal(err)
	}
	return out
}
