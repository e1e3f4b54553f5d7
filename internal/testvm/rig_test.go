package testvm

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/authenticode"
	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/verdict"
)

// rig is what a series of boots of one guest shares: the guest's TPM
// state (provisioned once, kept across boots as on a real machine), the
// attestation service on the host, a recording proxy in front of it
// (the guest's one reachable address), and the 9p share (the agent's
// state directory lives on it, /mnt/state, so that it survives reboots).
type rig struct {
	t     *testing.T
	p     Parts
	work  string
	share string
	vigil []byte
	tpm   *testtpm.TPM
	svc   *testserver.Service
	rec   *recorder
	guest string // the service's address in the guest, 10.0.2.100:PORT
	host  string // the proxy's address on the host
	boots int
}

// newRig provisions the TPM, starts the service with policies and the
// proxy, and fills the share with what every guest reads: the server URL,
// the service CA and the booted kernel (as /boot/vmlinuz-RELEASE on an
// installed host: its built-in key signs the modules).
func newRig(t *testing.T, p Parts, policies *appraise.Policies) *rig {
	t.Helper()
	r := &rig{t: t, p: p, work: t.TempDir()}
	r.share = filepath.Join(r.work, "share")
	if err := os.Mkdir(r.share, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.vigil, err = os.ReadFile(Vigil(t)); err != nil {
		t.Fatal(err)
	}
	r.tpm = testtpm.Start(t)
	r.tpm.Stop()
	r.svc = testserver.Start(t, testserver.Options{EKRoots: r.tpm.Roots, EKIntermediates: r.tpm.Intermediates, Policies: policies})
	r.rec = startRecorder(t, r.svc.URL)
	fwd, err := ForwardTo(r.rec.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.host, r.guest = fwd.Host, fwd.Guest
	kernel, err := os.ReadFile(p.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	r.write("server", []byte("http://"+r.guest+"\n"))
	r.write("vmlinuz", kernel)
	r.write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.svc.CA.Raw}))
	return r
}

// hostVigil writes the static vigil the guest runs to the work directory
// (once) and returns its path, to run it on the host.
func (r *rig) hostVigil() string {
	r.t.Helper()
	bin := filepath.Join(r.work, "vigil-host")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.WriteFile(bin, r.vigil, 0o755); err != nil {
		r.t.Fatal(err)
	}
	return bin
}

// warmKernelKeys extracts the booted kernel's keys on the host into the
// agent's cache on the share (--state-dir /mnt/state: /mnt/state/cache),
// keyed as the guest keys /mnt/vmlinuz (the same bytes, no System.map):
// the guest's agent then skips its own extraction, about 20 s under TCG.
func (r *rig) warmKernelKeys() {
	r.t.Helper()
	cmd := exec.Command(r.hostVigil(), "kernel-keys", r.p.Vmlinuz)
	cmd.Env = append(os.Environ(), "VIGIL_CACHE_DIR="+filepath.Join(r.share, "state", "cache"))
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("vigil kernel-keys on the host: %v: %s", err, lastLines(string(out), 5))
	}
	if m, _ := filepath.Glob(filepath.Join(r.share, "state", "cache", "kernelkeys", "*.v2.pem")); len(m) != 1 {
		r.t.Fatalf("the host's kernel-keys left %d cache files", len(m))
	}
}

func (r *rig) write(name string, b []byte) {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(r.share, name)), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.share, name), b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// read returns a file the guest wrote to the share.
func (r *rig) read(name string) string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.share, name))
	if err != nil {
		r.t.Fatalf("guest output: %v", err)
	}
	return string(b)
}

// guestSpec is one boot of the rig's guest.
type guestSpec struct {
	// Init is /init after initPrologue and the network set-up.
	Init string
	// GrubCfg defaults to grubCfg.
	GrubCfg string
	// Parts, when set, replaces the rig's (another firmware).
	Parts *Parts
	// Boot's Disk, TPMState, Share and Forwards are the rig's.
	Boot Boot
	// NoNet leaves the network out.
	NoNet bool
	// Wrap, when set, adjusts the built initramfs path into the boot
	// (the -kernel boot uses it).
	Wrap func(initrd string, b *Boot)
}

// vmModules are the modules every rig guest loads.
var vmModules = []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p", "e1000"}

// netUp is the guest's network: the restricted user network, where
// 10.0.2.100 is the host's service and nothing else is reachable.
const netUp = `ip addr add 10.0.2.15/24 dev eth0 || echo VIGIL-NO-NET
ip link set eth0 up || echo VIGIL-NO-NET
mkdir -p /mnt/state
`

// initEnd copies what every boot leaves and powers off.
const initEnd = `sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// boot builds the images and boots the guest once. With mustFinish it
// fails the test when /init did not finish; without, the result and
// Run's error are the test's to judge.
func (r *rig) boot(name string, g guestSpec, mustFinish bool) (*Result, error) {
	r.t.Helper()
	r.boots++
	t0 := time.Now()
	p := r.p
	if g.Parts != nil {
		p = *g.Parts
	}
	dir := filepath.Join(r.work, fmt.Sprintf("boot%d", r.boots))
	if err := os.Mkdir(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	init := initPrologue
	if !g.NoNet {
		init += netUp
	}
	init += g.Init + initEnd
	initrd := filepath.Join(dir, "initrd.img")
	err := BuildInitramfs(p, Initramfs{
		Init:    init,
		Modules: vmModules,
		Files:   []File{{Path: "bin/vigil", Mode: 0o755, Data: r.vigil}},
	}, initrd)
	if err != nil {
		r.t.Fatal(err)
	}
	cfg := g.GrubCfg
	if cfg == "" {
		cfg = grubCfg
	}
	disk := filepath.Join(dir, "disk.img")
	if err := BuildDisk(context.Background(), p, ESP{GrubCfg: cfg, Initrd: initrd}, disk); err != nil {
		r.t.Fatal(err)
	}
	b := g.Boot
	b.Disk, b.TPMState, b.Share = disk, r.tpm.StateDir, r.share
	if !g.NoNet {
		b.Forwards = []Forward{{Guest: r.guest, Host: r.host}}
	}
	if b.Timeout == 0 {
		b.Timeout = 240 * time.Second
	}
	if g.Wrap != nil {
		g.Wrap(initrd, &b)
	}
	images := time.Since(t0)
	res, err := Run(context.Background(), p, b)
	if res != nil {
		r.t.Logf("%s: images %s, boot %s (power-on to power-off)", name, images.Round(100*time.Millisecond), res.Elapsed.Round(100*time.Millisecond))
		r.keep(name, res)
	}
	if !mustFinish {
		return res, err
	}
	if err != nil {
		r.t.Fatalf("%s: %v", name, err)
	}
	if !strings.Contains(res.Serial, "VIGIL-INIT-DONE") {
		r.t.Fatalf("%s: the guest's /init did not finish; serial tail:\n%s", name, lastLines(res.Serial, 30))
	}
	for _, bad := range []string{"VIGIL-INSMOD-FAILED", "VIGIL-NO-SHARE", "VIGIL-NO-NET"} {
		if i := strings.Index(res.Serial, bad); i >= 0 {
			r.t.Errorf("%s: guest: %s", name, lastLines(res.Serial[:min(len(res.Serial), i+200)], 3))
		}
	}
	return res, nil
}

// keep copies the share and the serial console to $VIGIL_TESTVM_KEEP/NAME.
func (r *rig) keep(name string, res *Result) {
	keep := os.Getenv("VIGIL_TESTVM_KEEP")
	if keep == "" {
		return
	}
	os.WriteFile(filepath.Join(r.share, "serial-"+name+".log"), []byte(res.Serial), 0o644)
	dst := filepath.Join(keep, r.t.Name(), name)
	os.MkdirAll(filepath.Dir(dst), 0o755)
	os.RemoveAll(dst)
	if out, err := exec.Command("cp", "-r", r.share, dst).CombinedOutput(); err != nil {
		r.t.Logf("keep: %v: %s", err, out)
	}
}

// onceResult is `vigil agent run --once -o json`'s output.
type onceResult struct {
	AgentID    string            `json:"agent_id"`
	Enrollment string            `json:"enrollment"`
	Level      int               `json:"level"`
	Status     string            `json:"status"`
	Token      string            `json:"token"`
	Failures   []verdict.Failure `json:"failures"`
	Code       string            `json:"code"`
	Detail     string            `json:"detail"`
}

// attestOnce is the guest shell for one round: `vigil agent run --once`
// with the agent's state on the share, under busybox time (wall time and
// maximum RSS), into OUT.json, OUT.err (time's figures and the agent's
// log) and OUT.rc.
func attestOnce(out string) string {
	return fmt.Sprintf(`busybox time -v /bin/vigil agent run --server "$(cat /mnt/server)" --tpm /dev/tpmrm0 --report-ca /mnt/ca.pem --kernel /mnt/vmlinuz \
	--state-dir /mnt/state --once -o json >/mnt/%[1]s.json 2>/mnt/%[1]s.err
echo $? >/mnt/%[1]s.rc
`, out)
}

// once reads a round's output; it fails the test when there is none.
func (r *rig) once(name string) onceResult {
	r.t.Helper()
	var out onceResult
	rc := strings.TrimSpace(r.read(name + ".rc"))
	if err := json.Unmarshal([]byte(r.read(name+".json")), &out); err != nil {
		r.t.Fatalf("%s: vigil agent run --once exited %s, output %q: %v; stderr: %s", name, rc, r.read(name+".json"), err, lastLines(r.read(name+".err"), 20))
	}
	for _, f := range out.Failures {
		r.t.Logf("%s: level %d, failure: level %d %s %s (%s): %s", name, out.Level, f.Level, f.Reason, f.Claim, f.Provenance, f.Detail)
	}
	r.t.Logf("%s: exit %s, agent %s, enrollment %s, level %d (%s)", name, rc, out.AgentID, out.Enrollment, out.Level, out.Status)
	return out
}

// reasons are a result's failure reason codes with their levels,
// "LEVEL:reason", sorted as listed.
func reasons(fs []verdict.Failure) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%d:%s", f.Level, f.Reason))
	}
	return out
}

// timed are busybox `time -v`'s wall time and maximum RSS.
type timed struct {
	Wall   time.Duration
	MaxKiB int
}

var (
	wallRe = regexp.MustCompile(`Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+)m? ?([\d.]+)s?`)
	rssRe  = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
)

// parseTime reads busybox time -v's figures from a stderr file.
func parseTime(t *testing.T, s string) timed {
	t.Helper()
	var out timed
	m := wallRe.FindStringSubmatch(s)
	if m == nil {
		t.Errorf("no busybox time figures in %q", lastLines(s, 5))
		return out
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	sec, _ := strconv.ParseFloat(m[3], 64)
	out.Wall = time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(sec*float64(time.Second))
	if m := rssRe.FindStringSubmatch(s); m != nil {
		// busybox (1.35) converts ru_maxrss from pages to KiB, but Linux
		// gives it in KiB already: its figure is pagesize/1024 = 4 times
		// too large (checked on the host against getrusage for a program
		// that touches 100 MiB: busybox 413376, ru_maxrss 103384).
		n, _ := strconv.Atoi(m[1])
		out.MaxKiB = n / (os.Getpagesize() / 1024)
	}
	return out
}

// recorder is a reverse proxy in front of the service that keeps every
// evidence the guest sends and how long the service took to answer it.
type recorder struct {
	addr string
	mu   sync.Mutex
	ev   []recorded
}

// recorded is one attestation as the proxy saw it.
type recorded struct {
	Offset  int64  // ima_log.offset
	IMA     []byte // ima_log.data
	HasIMA  bool
	HasLog  bool // event_log present
	Report  []byte
	Elapsed time.Duration // from the request to the service's answer
	Status  int
}

func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{addr: ln.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/attest") {
			proxy.ServeHTTP(w, req)
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, 256<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var ev struct {
			Report   []byte `json:"report"`
			EventLog *struct {
				Data []byte `json:"data"`
			} `json:"event_log"`
			IMALog *struct {
				Offset int64  `json:"offset"`
				Data   []byte `json:"data"`
			} `json:"ima_log"`
		}
		_ = json.Unmarshal(body, &ev)
		r := recorded{Report: ev.Report, HasLog: ev.EventLog != nil}
		if ev.IMALog != nil {
			r.HasIMA, r.Offset, r.IMA = true, ev.IMALog.Offset, ev.IMALog.Data
		}
		sw := &statusWriter{ResponseWriter: w}
		t0 := time.Now()
		proxy.ServeHTTP(sw, req)
		r.Elapsed, r.Status = time.Since(t0), sw.status
		rec.mu.Lock()
		rec.ev = append(rec.ev, r)
		rec.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rec
}

// attests returns the evidence recorded so far.
func (rec *recorder) attests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.ev...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// bootDigests are the Authenticode SHA-256 image hashes (hex) of the
// signed chain, computed by Vigil's engine from the downloaded files.
type bootDigests struct{ Shim, Grub, Kernel string }

func (d bootDigests) list() []string { return []string{d.Shim, d.Grub, d.Kernel} }

// openSized opens a file for a parser that takes an io.ReaderAt and its
// size; it is closed when the test ends.
func openSized(t *testing.T, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

func authenticodeSHA256(t *testing.T, path string) string {
	t.Helper()
	pe, err := authenticode.Parse(openSized(t, path))
	if err != nil {
		t.Fatalf("authenticode.Parse %s: %v", path, err)
	}
	h, err := pe.ImageHash(crypto.SHA256)
	if err != nil {
		t.Fatalf("authenticode image hash %s: %v", path, err)
	}
	return hex.EncodeToString(h[crypto.SHA256])
}

func engineDigests(t *testing.T, p Parts) bootDigests {
	t.Helper()
	return bootDigests{Shim: authenticodeSHA256(t, p.Shim), Grub: authenticodeSHA256(t, p.Grub), Kernel: authenticodeSHA256(t, p.Vmlinuz)}
}

var pesignHash = regexp.MustCompile(`(?m)^hash: ([0-9a-f]{64})$`)

// pesignSHA256 is pesign's Authenticode SHA-256 of a PE file (`pesign
// -h`, Red Hat's signing tool: a peer no one here wrote).
func pesignSHA256(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("pesign", "-h", "-d", "sha256", "-i", path).CombinedOutput()
	if err != nil {
		t.Fatalf("pesign -h %s: %v: %s", path, err, out)
	}
	m := pesignHash.FindSubmatch(out)
	if m == nil {
		t.Fatalf("pesign -h %s printed no hash: %s", path, out)
	}
	return string(m[1])
}

var osslDigest = regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-Fa-f]{64})`)

// osslsigncodeSHA256 is osslsigncode verify's "Calculated message
// digest", or "" with the reason when it cannot parse the file (Debian's
// shim: "Corrupted attribute certificate table", it has two).
func osslsigncodeSHA256(path string) (string, string) {
	out, _ := exec.Command("osslsigncode", "verify", "-in", path).CombinedOutput()
	m := osslDigest.FindSubmatch(out)
	if m == nil {
		return "", lastLines(string(out), 4)
	}
	return strings.ToLower(string(m[1])), ""
}
