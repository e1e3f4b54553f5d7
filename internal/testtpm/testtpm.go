// Package testtpm runs Debian's swtpm for tests: a real TPM 2.0 emulator,
// provisioned by swtpm_setup with RSA and ECC EKs and their certificates
// in NV, issued by a swtpm-localca CA whose certificates are returned so
// that tests can verify the EK certificate chain.
//
// Provisioning (swtpm_setup) takes about a second, so it is done once:
// the CA and a provisioned template state are cached under the user's
// cache directory (VIGIL_TESTTPM_CACHE overrides it), keyed by the swtpm
// version, and every Start copies the template into a fresh state
// directory and starts its own swtpm process, stopped in tb.Cleanup. TPMs
// started from the template share their endorsement seed (the same EK);
// Options.Fresh provisions a TPM of its own.
//
// swtpm missing is a test failure, not a skip: `make deps` installs it.
package testtpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	"github.com/google/go-tpm/tpm2/transport/tcp"

	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/trust"
)

// cacheFormat changes when the cached layout or provisioning changes.
const cacheFormat = "v1"

// Options selects how Start runs swtpm.
type Options struct {
	// TCP serves the TPM on a free 127.0.0.1 port (command port P,
	// control port P+1) instead of a unix socket.
	TCP bool
	// Fresh provisions a new TPM (its own seeds, EKs and EK
	// certificates) instead of copying the cached template.
	Fresh bool
}

// TPM is a running swtpm.
type TPM struct {
	// URI is the address for tpm.Open: unix:///…/swtpm.sock or
	// tcp://127.0.0.1:PORT.
	URI string
	// TCTI is the same TPM for tpm2-tools (TPM2TOOLS_TCTI or --tcti):
	// swtpm:path=… or swtpm:host=127.0.0.1,port=….
	TCTI string
	// StateDir is the TPM's state directory.
	StateDir string
	// Roots is the manufacturer root: swtpm-localca's root CA.
	Roots []*x509.Certificate
	// Intermediates is swtpm-localca's issuing CA, which signs the EK
	// certificates.
	Intermediates []*x509.Certificate

	tb     testing.TB
	dir    string
	sock   string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// Start starts a swtpm on a unix socket, provisioned from the template.
func Start(tb testing.TB) *TPM { return StartWith(tb, Options{}) }

// StartTCP starts a swtpm on a free loopback port.
func StartTCP(tb testing.TB) *TPM { return StartWith(tb, Options{TCP: true}) }

// StartWith starts a swtpm as o says. It stops in tb.Cleanup.
func StartWith(tb testing.TB, o Options) *TPM {
	tb.Helper()
	c := provisioned(tb)
	reapOnce.Do(reap)
	dir, err := os.MkdirTemp("", "vtpm")
	if err != nil {
		tb.Fatalf("testtpm: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	// The owner file lets a later run remove the directory when this
	// process dies without cleaning up (a killed fuzz worker, a timeout).
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		tb.Fatalf("testtpm: %v", err)
	}
	t := &TPM{tb: tb, dir: dir, StateDir: filepath.Join(dir, "state"), Roots: c.roots, Intermediates: c.intermediates}
	if err := os.Mkdir(t.StateDir, 0o700); err != nil {
		tb.Fatalf("testtpm: %v", err)
	}
	if o.Fresh {
		if err := c.provision(t.StateDir); err != nil {
			tb.Fatalf("testtpm: %v", err)
		}
	} else if err := copyDir(c.template, t.StateDir); err != nil {
		tb.Fatalf("testtpm: copy the provisioned state: %v", err)
	}
	if o.TCP {
		var err error
		for attempt := 0; attempt < 8; attempt++ {
			if t.port, err = freePortPair(); err != nil {
				continue
			}
			if err = t.start(); err == nil {
				break
			}
		}
		if err != nil {
			tb.Fatalf("testtpm: %v", err)
		}
		t.URI = "tcp://127.0.0.1:" + strconv.Itoa(t.port)
		t.TCTI = fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", t.port)
	} else {
		t.sock = filepath.Join(dir, "swtpm.sock")
		if err := t.start(); err != nil {
			tb.Fatalf("testtpm: %v", err)
		}
		t.URI = "unix://" + t.sock
		t.TCTI = "swtpm:path=" + t.sock
	}
	tb.Cleanup(t.Stop)
	return t
}

// start runs swtpm on the state directory and waits until it answers.
func (t *TPM) start() error {
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + t.StateDir,
		"--flags", "not-need-init,startup-clear"}
	if t.sock != "" {
		args = append(args,
			"--server", "type=unixio,path="+t.sock,
			"--ctrl", "type=unixio,path="+t.sock+".ctrl")
	} else {
		args = append(args,
			"--server", "type=tcp,port="+strconv.Itoa(t.port),
			"--ctrl", "type=tcp,port="+strconv.Itoa(t.port+1))
	}
	t.log = filepath.Join(t.dir, "swtpm.log")
	logf, err := os.OpenFile(t.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("swtpm", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// swtpm dies with the test process, even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start swtpm: %v (run `make deps` to install swtpm)", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.cmd, t.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("swtpm exited: %s", t.logTail())
		default:
		}
		if err := t.ping(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			t.kill()
			return fmt.Errorf("swtpm does not answer: %v; %s", err, t.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends TPM2_GetRandom.
func (t *TPM) ping() error {
	var tp transport.TPMCloser
	var err error
	if t.sock != "" {
		if _, err = os.Stat(t.sock); err != nil {
			return err
		}
		tp, err = linuxudstpm.Open(t.sock)
	} else {
		tp, err = tcp.Open(tcp.Config{
			CommandAddress:  net.JoinHostPort("127.0.0.1", strconv.Itoa(t.port)),
			PlatformAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(t.port+1)),
		})
	}
	if err != nil {
		return err
	}
	defer tp.Close()
	_, err = tpm2.GetRandom{BytesRequested: 8}.Execute(tp)
	return err
}

func (t *TPM) logTail() string {
	b, _ := os.ReadFile(t.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "swtpm log: " + strings.TrimSpace(string(b))
}

func (t *TPM) kill() {
	if t.cmd == nil {
		return
	}
	t.cmd.Process.Kill()
	<-t.exited
	t.cmd = nil
}

// Stop stops swtpm (SIGTERM, then SIGKILL after 5 s). The state stays
// until the test ends; Restart starts it again.
func (t *TPM) Stop() {
	if t.cmd == nil {
		return
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
		t.cmd = nil
	case <-time.After(5 * time.Second):
		t.tb.Logf("testtpm: swtpm ignored SIGTERM; killing it")
		t.kill()
	}
}

// Restart stops swtpm and starts it again on the same state: a TPM reset
// (PCRs are back to their initial values, transient objects are gone,
// persistent objects and NV stay), at the same URI.
func (t *TPM) Restart() {
	t.tb.Helper()
	t.Stop()
	if err := t.start(); err != nil {
		t.tb.Fatalf("testtpm: restart: %v", err)
	}
}

var reapOnce sync.Once

// reap removes the state directories of test processes that died without
// cleaning up.
func reap() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "vtpm*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// freePortPair finds P such that P and P+1 are free on 127.0.0.1.
func freePortPair() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err != nil || p+1 > 65535 {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no free pair of loopback ports")
}

func copyDir(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// cache is the provisioned CA and template.
type cache struct {
	dir           string
	template      string
	setupConf     string
	roots         []*x509.Certificate
	intermediates []*x509.Certificate
}

var (
	cacheOnce sync.Once
	theCache  *cache
	cacheErr  error
)

// provisioned returns the cache, provisioning it on first use (once per
// machine and swtpm version; a file lock serializes test binaries).
func provisioned(tb testing.TB) *cache {
	tb.Helper()
	cacheOnce.Do(func() { theCache, cacheErr = openCache() })
	if cacheErr != nil {
		tb.Fatalf("testtpm: %v", cacheErr)
	}
	return theCache
}

func openCache() (*cache, error) {
	for _, tool := range []string{"swtpm", "swtpm_setup", "swtpm_localca"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: run `make deps` (installs swtpm and swtpm-tools)", tool)
		}
	}
	ver, err := exec.Command("swtpm", "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("swtpm --version: %v: %s", err, ver)
	}
	root := os.Getenv("VIGIL_TESTTPM_CACHE")
	if root == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		root = filepath.Join(base, "vigil-testtpm")
	}
	sum := sha256.Sum256(append([]byte(cacheFormat+"\n"), ver...))
	c := &cache{dir: filepath.Join(root, cacheFormat+"-"+hex.EncodeToString(sum[:6]))}
	c.template = filepath.Join(c.dir, "template")
	c.setupConf = filepath.Join(c.dir, "swtpm_setup.conf")
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(c.dir, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	done := filepath.Join(c.dir, "done")
	if _, err := os.Stat(done); err != nil {
		if err := c.build(); err != nil {
			return nil, fmt.Errorf("provision swtpm: %w", err)
		}
		if err := os.WriteFile(done, ver, 0o600); err != nil {
			return nil, err
		}
	}
	if c.roots, err = trust.LoadCertificates(filepath.Join(c.dir, "ca", "swtpm-localca-rootca-cert.pem")); err != nil {
		return nil, err
	}
	if c.intermediates, err = trust.LoadCertificates(filepath.Join(c.dir, "ca", "issuercert.pem")); err != nil {
		return nil, err
	}
	return c, nil
}

// build writes the swtpm_setup and swtpm-localca configurations (a CA of
// our own under the cache, not the system's /var/lib/swtpm-localca) and
// provisions the template state; swtpm_localca creates the CA on first
// use.
func (c *cache) build() error {
	for _, d := range []string{"ca", "template"} {
		os.RemoveAll(filepath.Join(c.dir, d))
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o700); err != nil {
			return err
		}
	}
	ca := filepath.Join(c.dir, "ca")
	localca, err := exec.LookPath("swtpm_localca")
	if err != nil {
		return err
	}
	files := map[string]string{
		"swtpm-localca.conf":    fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca),
		"swtpm-localca.options": "--platform-manufacturer Vigil\n--platform-version 2.1\n--platform-model swtpm\n",
		"swtpm_setup.conf":      fmt.Sprintf("create_certs_tool = %[2]s\ncreate_certs_tool_config = %[1]s/swtpm-localca.conf\ncreate_certs_tool_options = %[1]s/swtpm-localca.options\nactive_pcr_banks = sha256\n", c.dir, localca),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return c.provision(c.template)
}

// provision runs swtpm_setup into state.
func (c *cache) provision(state string) error {
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state,
		"--createek", "--create-ek-cert", "--create-platform-cert",
		"--pcr-banks", "sha256", "--overwrite", "--config", c.setupConf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		if ctx.Err() == context.DeadlineExceeded && cmd.Process != nil {
			cmd.Process.Kill()
		}
	}()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("swtpm_setup: %v:\n%s", err, out.String())
	}
	return nil
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Extender extends PCRs; *tpm.Enclave is one.
type Extender interface {
	PCRExtend(ctx context.Context, bank string, pcr int, digest []byte) error
}

// ExtendEventLog extends the SHA-256 digest of every event of a real TCG
// event log (EV_NO_ACTION events excepted) into the PCRs through e, so that
// the log replays to the PCRs the TPM quotes. It returns the parsed log.
// A log with a StartupLocality event cannot be reproduced (swtpm starts
// from locality 0, the log's PCR 0 from 3): such a log fails the test, as
// does a log without a SHA-256 bank.
func ExtendEventLog(tb testing.TB, e Extender, log []byte) *eventlog.Log {
	tb.Helper()
	l, err := eventlog.Parse(log)
	if err != nil {
		tb.Fatalf("testtpm: parse event log: %v", err)
	}
	for i := range l.Events {
		ev := &l.Events[i]
		if ev.Type == eventlog.EvNoAction && ev.PCR == 0 && bytes.HasPrefix(ev.Data, []byte("StartupLocality\x00")) {
			tb.Fatalf("testtpm: the event log has a StartupLocality event (PCR 0 starts at locality %d): swtpm cannot reproduce it; use another log", ev.Data[len(ev.Data)-1])
		}
	}
	start := 0
	if l.SpecID != nil {
		start = 1
	}
	n := 0
	for i := start; i < len(l.Events); i++ {
		ev := &l.Events[i]
		if ev.Type == eventlog.EvNoAction {
			continue
		}
		d := ev.Digest(eventlog.AlgSHA256)
		if d == nil {
			tb.Fatalf("testtpm: event %d has no SHA-256 digest (format %s)", ev.Num, l.Format)
		}
		if err := e.PCRExtend(context.Background(), "sha256", int(ev.PCR), d); err != nil {
			tb.Fatalf("testtpm: extend event %d into PCR %d: %v", ev.Num, ev.PCR, err)
		}
		n++
	}
	if n == 0 {
		tb.Fatalf("testtpm: the event log has no event to extend")
	}
	return l
}

// ExtendIMA extends each entry of a binary IMA list (or a suffix of one)
// into its PCR as the kernel does: the SHA-256 of the template data, all
// ones for a violation.
func ExtendIMA(tb testing.TB, e Extender, list []byte) {
	tb.Helper()
	p := ima.NewParser(bytes.NewReader(list), ima.Options{})
	for {
		en, err := p.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			tb.Fatalf("testtpm: IMA list: %v", err)
		}
		d := sha256.Sum256(en.Data)
		if en.Violation() {
			d = [32]byte(bytes.Repeat([]byte{0xff}, 32))
		}
		if err := e.PCRExtend(context.Background(), "sha256", int(en.PCR), d[:]); err != nil {
			tb.Fatalf("testtpm: extend IMA entry into PCR %d: %v", en.PCR, err)
		}
	}
}
