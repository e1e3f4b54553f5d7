package testvm

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testserver"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/report"
	"github.com/vigil-attest/vigil/verdict"
)

// atsivInit is /init of the Atsiv guest: it mounts tracefs, loads the two
// hiding modules (signed by the enrolled MOK) from the ramfs root, where
// IMA measures them at load, copies the kernel's own module views to the
// share, measures, and attests once over the restricted network.
const atsivInit = initPrologue + `mount -t tracefs tracefs /sys/kernel/tracing || echo VIGIL-NO-TRACEFS
ip addr add 10.0.2.15/24 dev eth0 || echo VIGIL-NO-NET
ip link set eth0 up || echo VIGIL-NO-NET
grep -c . /proc/modules >/mnt/listed.before
for m in atsiv_list atsiv_kobj; do
	cp /mnt/$m.ko /root/$m.ko
	/bin/finit /root/$m.ko >>/mnt/finit.out
done
cat /proc/keys >/mnt/keys
cp /proc/modules /mnt/proc_modules
ls /sys/module >/mnt/sys_module
grep atsiv /proc/kallsyms >/mnt/kallsyms.atsiv
cat /sys/kernel/tracing/available_filter_functions >/mnt/available_filter_functions 2>/mnt/tracefs.err
cat /sys/kernel/security/lockdown >/mnt/lockdown
cp /proc/vmallocinfo /mnt/vmallocinfo
ls /sys/kernel/btf >/mnt/btf
cat /proc/sys/kernel/tainted >/mnt/tainted
cp /sys/kernel/security/ima/ascii_runtime_measurements /mnt/ima.txt
mkdir -p /tmp/vigil
/bin/vigil agent measure -o json >/mnt/report.json 2>/mnt/measure.err
/bin/vigil agent run --server "$(cat /mnt/server)" --tpm /dev/tpmrm0 --report-ca /mnt/ca.pem --kernel /mnt/vmlinuz \
	--state-dir /tmp/vigil --once -o json >/mnt/attest.json 2>/mnt/attest.err
echo $? >/mnt/attest.rc
dmesg >/mnt/dmesg
sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// guestService starts the attestation service for a guest's TPM and
// returns it with the forward that makes it the guest's only reachable
// address, having written the agent's inputs (server, ca.pem, vmlinuz)
// to the share.
func guestService(t *testing.T, p Parts, tpm *testtpm.TPM, share string, o testserver.Options) (*testserver.Service, Forward) {
	t.Helper()
	o.EKRoots, o.EKIntermediates = tpm.Roots, tpm.Intermediates
	svc := testserver.Start(t, o)
	u, err := url.Parse(svc.URL)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := ForwardTo(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(p.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"server":  []byte("http://" + fwd.Guest + "\n"),
		"vmlinuz": kernel,
		"ca.pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svc.CA.Raw}),
	} {
		if err := os.WriteFile(filepath.Join(share, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return svc, fwd
}

// guestFiles reads what the guest left in the share.
type guestFiles struct {
	t     *testing.T
	share string
}

func (g guestFiles) read(name string) string {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.share, name))
	if err != nil {
		g.t.Fatalf("guest output: %v", err)
	}
	return string(b)
}

// keep copies the share (and the serial console) to VIGIL_TESTVM_KEEP.
func keep(t *testing.T, share string, res *Result) {
	if dir := os.Getenv("VIGIL_TESTVM_KEEP"); dir != "" && res != nil {
		os.WriteFile(filepath.Join(share, "serial.log"), []byte(res.Serial), 0o644)
		if out, err := exec.Command("cp", "-r", share, dir).CombinedOutput(); err != nil {
			t.Logf("keep: %v: %s", err, out)
		}
	}
}

// runGuest boots b, keeps its share when asked (VIGIL_TESTVM_KEEP), and
// fails the test unless the guest's /init finished; each of bad on the
// serial console is an error. what names the boot in the log.
func runGuest(t *testing.T, p Parts, b Boot, what string, bad ...string) *Result {
	t.Helper()
	res, err := Run(context.Background(), p, b)
	keep(t, b.Share, res)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s from power-on to power-off", what, res.Elapsed.Round(100*time.Millisecond))
	if !strings.Contains(res.Serial, "VIGIL-INIT-DONE") {
		t.Fatalf("%s: the guest's /init did not finish; serial tail:\n%s", what, lastLines(res.Serial, 30))
	}
	for _, m := range bad {
		if i := strings.Index(res.Serial, m); i >= 0 {
			t.Errorf("%s: guest: %s", what, lastLines(res.Serial[:min(len(res.Serial), i+200)], 3))
		}
	}
	return res
}

// attestOutput is `vigil agent run --once -o json`.
type attestOutput struct {
	AgentID    string            `json:"agent_id"`
	Enrollment string            `json:"enrollment"`
	Level      int               `json:"level"`
	Status     string            `json:"status"`
	Token      string            `json:"token"`
	Failures   []verdict.Failure `json:"failures"`
	Code       string            `json:"code"`
	Detail     string            `json:"detail"`
}

// TestRealAtsiv is the seed's Atsiv case on a real kernel: two modules
// signed by a key the guest trusts through MOK load under Secure Boot and
// hide themselves (list_del; list_del + kobject_del). The kernel's own
// views show what each escapes; the agent's new views (ftrace's
// available_filter_functions, the module allocations of vmallocinfo)
// catch both; and the attestation, from the IMA list the TPM attests,
// gives level 0 with ima-module-unlisted for each. A second boot under
// lockdown=confidentiality, where the kernel refuses tracefs, shows what
// is left: the allocations, sysfs for the list_del variant, and the IMA
// list.
func TestRealAtsiv(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boots: the MOK enrollment (two boots) and two Atsiv boots")
	}
	p := Require(t)
	mt := RequireModuleTools(t, p)
	t0 := time.Now()
	ctx := context.Background()
	work := t.TempDir()
	kos, err := mt.BuildModules(ctx, filepath.Join(work, "build"), AtsivSources(t))
	if err != nil {
		t.Fatal(err)
	}
	finit := BuildFinit(ctx, t)
	vigil, err := os.ReadFile(Vigil(t))
	if err != nil {
		t.Fatal(err)
	}
	mok := EnrolledMOK(t, p)
	t.Logf("MOK enrolled in %s (cached for the run)", mok.Enrolled.Round(100*time.Millisecond))
	signed := map[string][]byte{}
	for _, m := range []string{"atsiv_list", "atsiv_kobj"} {
		out := filepath.Join(work, m+".ko")
		if err := mt.Sign(ctx, "sha256", mok.KeyPEM, mok.CertPEM, kos[m], out); err != nil {
			t.Fatal(err)
		}
		signed[m+".ko"] = mustReadBytes(t, out)
	}
	initrd := filepath.Join(work, "initrd.img")
	err = BuildInitramfs(p, Initramfs{
		Init:    atsivInit,
		Modules: []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p", "e1000"},
		Files:   []File{{Path: "bin/vigil", Mode: 0o755, Data: vigil}, {Path: "bin/finit", Mode: 0o755, Data: finit}},
	}, initrd)
	if err != nil {
		t.Fatal(err)
	}
	for _, lockdown := range []string{"integrity", "confidentiality"} {
		t.Run("lockdown="+lockdown, func(t *testing.T) {
			atsivBoot(t, p, mok, initrd, signed, lockdown)
		})
	}
	t.Logf("total %s", time.Since(t0).Round(100*time.Millisecond))
}

// atsivBoot is one Atsiv boot: lockdown "integrity" is the kernel's own
// (Secure Boot), "confidentiality" is asked for on the command line.
func atsivBoot(t *testing.T, p Parts, mok *MOK, initrd string, signed map[string][]byte, lockdown string) {
	ctx := context.Background()
	work := t.TempDir()
	share := filepath.Join(work, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, b := range signed {
		if err := os.WriteFile(filepath.Join(share, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := lockdown == "confidentiality"
	tpm := testtpm.Start(t)
	tpm.Stop()
	svc, fwd := guestService(t, p, tpm, share, testserver.Options{Policies: vmPolicy(t, p)})
	disk := filepath.Join(work, "disk.img")
	cfg := grubCfg
	bad := []string{"VIGIL-INSMOD-FAILED", "VIGIL-NO-SHARE", "VIGIL-NO-NET"}
	if conf {
		cfg = strings.Replace(grubCfg, "panic=-1", "panic=-1 lockdown=confidentiality", 1)
	} else {
		bad = append(bad, "VIGIL-NO-TRACEFS")
	}
	if err := BuildDisk(ctx, p, ESP{GrubCfg: cfg, Initrd: initrd}, disk); err != nil {
		t.Fatal(err)
	}
	runGuest(t, p, Boot{Disk: disk, Vars: mok.CopyVars(t), TPMState: tpm.StateDir, Share: share,
		Timeout: 180 * time.Second, Forwards: []Forward{fwd}}, "the Atsiv boot, lockdown="+lockdown, bad...)
	g := guestFiles{t, share}
	if got := g.read("lockdown"); !strings.Contains(got, "["+lockdown+"]") {
		t.Fatalf("lockdown %q, want [%s]", strings.TrimSpace(got), lockdown)
	}
	if !conf {
		captureSeeds(t, share)
	}

	// The kernel loaded both: the MOK is in its .machine keyring.
	if got := g.read("finit.out"); got != "accepted 0\naccepted 0\n" {
		t.Fatalf("finit_module of the two MOK-signed modules: %q; dmesg tail: %s", got, lastLines(g.read("dmesg"), 10))
	}
	if keys := g.read("keys"); !strings.Contains(keys, "Vigil Test Module Signing MOK") {
		t.Errorf("/proc/keys lacks the enrolled MOK")
	}
	dmesg := g.read("dmesg")
	for _, m := range []string{"atsiv_list", "atsiv_kobj"} {
		if !strings.Contains(dmesg, m+": loaded, hiding") {
			t.Errorf("dmesg lacks %s's line", m)
		}
	}

	// What each variant escapes, by the kernel's own files.
	procMods := g.read("proc_modules")
	sysMods := strings.Fields(g.read("sys_module"))
	for _, m := range []string{"atsiv_list", "atsiv_kobj"} {
		if strings.Contains(procMods, m) {
			t.Errorf("%s is in /proc/modules", m)
		}
	}
	if !slices.Contains(sysMods, "atsiv_list") || slices.Contains(sysMods, "atsiv_kobj") {
		t.Errorf("/sys/module: atsiv_list present %v (want true), atsiv_kobj present %v (want false)",
			slices.Contains(sysMods, "atsiv_list"), slices.Contains(sysMods, "atsiv_kobj"))
	}
	if k := strings.TrimSpace(g.read("kallsyms.atsiv")); k != "" {
		t.Errorf("/proc/kallsyms names the hidden modules (list_del removes them on 6.1): %q", k)
	}
	aff := g.read("available_filter_functions")
	if conf {
		// LOCKDOWN_TRACEFS is a confidentiality reason: the kernel
		// disables tracing at boot and never creates tracefs's files.
		if aff != "" || !strings.Contains(g.read("dmesg"), "Tracing disabled due to lockdown") {
			t.Errorf("tracefs under lockdown=confidentiality: %d bytes read (%q), want none and dmesg's \"Tracing disabled due to lockdown\"", len(aff), g.read("tracefs.err"))
		}
	} else {
		for _, m := range []string{"atsiv_list", "atsiv_kobj"} {
			if !strings.Contains(aff, " ["+m+"]\n") {
				t.Errorf("available_filter_functions lacks a function of [%s]", m)
			}
		}
	}

	// /sys/kernel/btf: every listed Debian module has its file, the
	// hiding modules (built without the kernel's vmlinux) none.
	btf := strings.Fields(g.read("btf"))
	if !slices.Contains(btf, "e1000") || slices.Contains(btf, "atsiv_list") || slices.Contains(btf, "atsiv_kobj") {
		t.Errorf("/sys/kernel/btf = %v, want e1000 and no atsiv module", btf)
	}

	// The agent's report: both hidden, each by the views that see it.
	var rep report.Report
	if err := json.Unmarshal([]byte(g.read("report.json")), &rep); err != nil {
		t.Fatalf("report: %v; stderr: %s", err, g.read("measure.err"))
	}
	wantHidden := []report.HiddenModule{
		{Name: "atsiv_kobj", SeenIn: []string{report.ViewFtrace}, MissingFrom: []string{report.ViewProcModules, report.ViewSysfs, report.ViewKallsyms}},
		{Name: "atsiv_list", SeenIn: []string{report.ViewFtrace, report.ViewSysfs}, MissingFrom: []string{report.ViewProcModules, report.ViewKallsyms}},
	}
	wantViews := []string{report.ViewProcModules, report.ViewSysfs, report.ViewKallsyms, report.ViewFtrace, report.ViewBTF}
	if conf {
		// Only sysfs still shows the list_del variant; nothing names
		// the kobject_del one.
		wantHidden = []report.HiddenModule{
			{Name: "atsiv_list", SeenIn: []string{report.ViewSysfs}, MissingFrom: []string{report.ViewProcModules, report.ViewKallsyms}},
		}
		wantViews = []string{report.ViewProcModules, report.ViewSysfs, report.ViewKallsyms, report.ViewBTF}
	}
	if got, _ := json.Marshal(rep.Modules.Hidden); string(got) != string(mustJSON(t, wantHidden)) {
		t.Errorf("modules.hidden = %s, want %s", got, mustJSON(t, wantHidden))
	}
	if !slices.Equal(rep.Modules.Views, wantViews) {
		t.Errorf("modules.views = %v, want %v", rep.Modules.Views, wantViews)
	}
	al := rep.Modules.Allocations
	t.Logf("allocations: %+v", al)
	if al.Status != report.StatusOK || al.Unlisted != 2 || al.Count != al.Listed+2 || len(al.UnlistedSizes) != 2 {
		t.Errorf("modules.allocations = %+v, want 2 unlisted", al)
	}
	if al.Listed != len(strings.Split(strings.TrimSpace(procMods), "\n")) {
		t.Errorf("allocations.listed %d, /proc/modules has %d lines", al.Listed, len(strings.Split(strings.TrimSpace(procMods), "\n")))
	}
	// IMA measured both loads.
	ima := g.read("ima.txt")
	for _, m := range []string{"atsiv_list", "atsiv_kobj"} {
		if !strings.Contains(ima, "/root/"+m+".ko") {
			t.Errorf("the IMA list lacks /root/%s.ko", m)
		}
	}

	// The attestation: level 0, the attested IMA list naming each load
	// that no view lists, and the asserted views too.
	var out attestOutput
	if err := json.Unmarshal([]byte(g.read("attest.json")), &out); err != nil {
		t.Fatalf("vigil agent run --once: %q: %v; stderr: %s", g.read("attest.json"), err, g.read("attest.err"))
	}
	for _, f := range out.Failures {
		t.Logf("failure: level %d %s %s (%s): %s", f.Level, f.Reason, f.Claim, f.Provenance, f.Detail)
	}
	if out.Level != 0 {
		t.Errorf("level %d (%s), want 0", out.Level, out.Status)
	}
	attested := map[string]bool{}
	asserted := 0
	for _, f := range out.Failures {
		if f.Reason == "ima-module-unlisted" && f.Provenance == "attested" && f.Level == 1 {
			attested[strings.Fields(f.Detail)[0]] = true
		}
		if f.Reason == "hidden-module" && f.Provenance == "asserted" && f.Level == 1 {
			asserted++
		}
	}
	if !attested["atsiv_list"] || !attested["atsiv_kobj"] {
		t.Errorf("ima-module-unlisted (attested) for %v, want atsiv_list and atsiv_kobj", attested)
	}
	if asserted != len(wantHidden)+1 {
		t.Errorf("%d hidden-module failures, want one per hidden module (%d) and one for the allocations", asserted, len(wantHidden))
	}
	rs, err := svc.Store.Results(t.Context(), out.AgentID, 10)
	if err != nil || len(rs) != 1 || rs[0].Level != 0 {
		t.Errorf("stored results: %+v, %v", rs, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// captureSeeds, with VIGIL_TESTVM_SEEDS=1, writes the guest's module
// views to measure/testdata/guest (the fuzz targets' seeds): vmallocinfo
// whole, and of available_filter_functions the lines tagged with a module
// plus the first 200.
func captureSeeds(t *testing.T, share string) {
	if os.Getenv("VIGIL_TESTVM_SEEDS") != "1" {
		return
	}
	dir := filepath.Join("..", "..", "measure", "testdata", "guest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm, err := os.ReadFile(filepath.Join(share, "vmallocinfo"))
	if err != nil {
		t.Fatal(err)
	}
	aff, err := os.ReadFile(filepath.Join(share, "available_filter_functions"))
	if err != nil {
		t.Fatal(err)
	}
	var keepLines []string
	for i, l := range strings.Split(string(aff), "\n") {
		if i < 200 || strings.HasSuffix(l, "]") {
			keepLines = append(keepLines, l)
		}
	}
	os.WriteFile(filepath.Join(dir, "vmallocinfo"), vm, 0o644)
	os.WriteFile(filepath.Join(dir, "available_filter_functions"), []byte(strings.Join(keepLines, "\n")), 0o644)
	os.WriteFile(filepath.Join(dir, "proc_modules"), []byte(mustRead(t, filepath.Join(share, "proc_modules"))), 0o644)
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
