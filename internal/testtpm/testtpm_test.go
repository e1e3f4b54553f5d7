package testtpm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"
	"github.com/vigil-attest/vigil/internal/artifacts"
)

func dial(t *testing.T, tp *TPM) transport.TPMCloser {
	t.Helper()
	var c transport.TPMCloser
	var err error
	if strings.HasPrefix(tp.URI, "unix://") {
		c, err = linuxudstpm.Open(strings.TrimPrefix(tp.URI, "unix://"))
	} else {
		c, err = tcp.Open(tcp.Config{CommandAddress: fmt.Sprintf("127.0.0.1:%d", tp.port), PlatformAddress: fmt.Sprintf("127.0.0.1:%d", tp.port+1)})
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rsaEK is the public area of the RSA EK swtpm_setup persisted.
func rsaEK(t *testing.T, tp *TPM) []byte {
	t.Helper()
	c := dial(t, tp)
	defer c.Close()
	rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(0x81010001)}.Execute(c)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.OutPublic.Bytes()
}

func TestStart(t *testing.T) {
	a, b := Start(t), StartTCP(t)
	fresh := StartWith(t, Options{Fresh: true})
	if !strings.HasPrefix(a.URI, "unix:///") || !strings.HasPrefix(b.URI, "tcp://127.0.0.1:") {
		t.Fatalf("URIs %s %s", a.URI, b.URI)
	}
	if a.StateDir == b.StateDir {
		t.Fatal("two TPMs share a state directory")
	}
	// Copies of the template share the endorsement seed; a fresh TPM has
	// its own.
	if !bytes.Equal(rsaEK(t, a), rsaEK(t, b)) {
		t.Error("template copies have different EKs")
	}
	if bytes.Equal(rsaEK(t, a), rsaEK(t, fresh)) {
		t.Error("a fresh TPM has the template's EK")
	}
	if len(a.Roots) != 1 || len(a.Intermediates) != 1 {
		t.Fatalf("%d roots, %d intermediates", len(a.Roots), len(a.Intermediates))
	}
	if err := a.Intermediates[0].CheckSignatureFrom(a.Roots[0]); err != nil {
		t.Fatalf("the issuing CA is not signed by the root: %v", err)
	}
	// A restart keeps the state, at the same address.
	ek := rsaEK(t, b)
	b.Restart()
	if !bytes.Equal(rsaEK(t, b), ek) {
		t.Fatal("restart lost the state")
	}
	b.Stop()
	b.Stop() // idempotent
}

type recorder struct{ pcrs []int }

func (r *recorder) PCRExtend(_ context.Context, bank string, pcr int, d []byte) error {
	if bank != "sha256" || len(d) != 32 {
		return fmt.Errorf("bank %s, %d bytes", bank, len(d))
	}
	r.pcrs = append(r.pcrs, pcr)
	return nil
}

// fatalTB records Fatalf and ends the goroutine, as testing does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func run(tb testing.TB, f func(tb testing.TB)) string {
	ftb := &fatalTB{TB: tb}
	done := make(chan struct{})
	go func() { defer close(done); f(ftb) }()
	<-done
	return ftb.msg
}

func TestExtendEventLog(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(artifacts.SharedData(t, "eventlogs/"+name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := &recorder{}
	l := ExtendEventLog(t, r, read("ubuntu_2104_shielded_vm_no_secure_boot_eventlog"))
	if len(r.pcrs) != 105 || len(l.Events) <= 105 {
		t.Fatalf("%d extends for %d events", len(r.pcrs), len(l.Events))
	}
	for name, want := range map[string]string{
		"keylime_binary_bios_measurements": "StartupLocality",
		"ebs_event_missing_eventlog":       "no SHA-256 digest",
	} {
		msg := run(t, func(tb testing.TB) { ExtendEventLog(tb, &recorder{}, read(name)) })
		if !strings.Contains(msg, want) {
			t.Errorf("%s: %q, want it to say %q", name, msg, want)
		}
	}
	if msg := run(t, func(tb testing.TB) { ExtendEventLog(tb, &recorder{}, []byte("junk")) }); !strings.Contains(msg, "parse") {
		t.Errorf("junk: %q", msg)
	}
}
