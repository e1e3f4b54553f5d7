package testvm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/internal/testtpm"
)

// initPrologue starts every guest's /init: busybox, the pseudo
// filesystems the agent reads, the initramfs's modules, efivarfs and the
// 9p share, with a marker on the serial console.
const initPrologue = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
echo VIGIL-INIT-START
for m in $(cat /etc/modules-load); do insmod "$m" || echo "VIGIL-INSMOD-FAILED $m"; done
mount -t efivarfs efivarfs /sys/firmware/efi/efivars
mount -t 9p -o trans=virtio,version=9p2000.L share /mnt || echo VIGIL-NO-SHARE
`

// guestInit is /init of the real-boot guest: it mounts what the agent
// reads, measures, copies the kernel's own views of the same facts to the
// share, and powers off. Markers on the serial console delimit it.
const guestInit = initPrologue + `/bin/vigil agent measure -o json >/mnt/report.json 2>/mnt/measure.err
echo $? >/mnt/measure.rc
cp /sys/kernel/security/tpm0/binary_bios_measurements /mnt/binary_bios_measurements
cat /proc/cmdline >/mnt/cmdline
cat /sys/kernel/security/lockdown >/mnt/lockdown
cat /sys/module/module/parameters/sig_enforce >/mnt/sig_enforce
cp /sys/kernel/security/ima/binary_runtime_measurements /mnt/ima.bin
for bank in sha1 sha256; do
	for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23; do
		echo "$i $(cat /sys/class/tpm/tpm0/pcr-$bank/$i)"
	done >/mnt/pcrs-$bank
done
dmesg >/mnt/dmesg
sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// grubCfg boots the signed kernel with IMA on a ramfs root (tmpfs is
// excluded by the tcb policy) and the policy name quoted (grub splits
// on |).
const grubCfg = `set timeout=0
set default=0
menuentry "vigil real boot" {
	linux /vmlinuz console=ttyS0 panic=-1 rootfstype=ramfs "ima_policy=tcb|critical_data"
	initrd /initrd.img
}
`

// TestRealBoot boots Debian's signed shim → grub → kernel under OVMF
// Secure Boot with a swtpm TPM, runs the stock agent in the guest, and
// checks the report against the kernel's and firmware's own views and
// the event log against the guest TPM's PCRs and tpm2_eventlog.
func TestRealBoot(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boot: about 40 s under TCG")
	}
	p := Require(t)
	t0 := time.Now()
	work := t.TempDir()
	share := filepath.Join(work, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	vigil, err := os.ReadFile(Vigil(t))
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(work, "initrd.img")
	err = BuildInitramfs(p, Initramfs{
		Init:    guestInit,
		Modules: []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p"},
		Files:   []File{{Path: "bin/vigil", Mode: 0o755, Data: vigil}},
	}, initrd)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(work, "disk.img")
	if err := BuildDisk(context.Background(), p, ESP{GrubCfg: grubCfg, Initrd: initrd}, disk); err != nil {
		t.Fatal(err)
	}
	tpm := testtpm.Start(t)
	tpm.Stop()
	t.Logf("images built in %s", time.Since(t0).Round(100*time.Millisecond))

	res, err := Run(context.Background(), p, Boot{Disk: disk, TPMState: tpm.StateDir, Share: share, Timeout: 150 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot: %s from power-on to power-off", res.Elapsed.Round(100*time.Millisecond))
	if !strings.Contains(res.Serial, "VIGIL-INIT-DONE") {
		t.Fatalf("the guest's /init did not finish; serial tail:\n%s", lastLines(res.Serial, 30))
	}
	for _, bad := range []string{"VIGIL-INSMOD-FAILED", "VIGIL-NO-SHARE"} {
		if i := strings.Index(res.Serial, bad); i >= 0 {
			t.Errorf("guest: %s", lastLines(res.Serial[:i+200], 3))
		}
	}
	if keep := os.Getenv("VIGIL_TESTVM_KEEP"); keep != "" {
		// For a look at what the guest wrote: VIGIL_TESTVM_KEEP=DIR.
		os.WriteFile(filepath.Join(share, "serial.log"), []byte(res.Serial), 0o644)
		if out, err := exec.Command("cp", "-r", share, keep).CombinedOutput(); err != nil {
			t.Logf("keep: %v: %s", err, out)
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(share, name))
		if err != nil {
			t.Fatalf("guest output: %v", err)
		}
		return string(b)
	}

	// The firmware's and kernel's own words.
	// The kernel's secureboot line is in dmesg; the EFI stub prints to
	// the firmware console, so its line is on the serial console only.
	if dmesg := read("dmesg"); !strings.Contains(dmesg, "secureboot: Secure boot enabled") {
		t.Errorf("dmesg lacks %q", "secureboot: Secure boot enabled")
	}
	if !strings.Contains(res.Serial, "EFI stub: UEFI Secure Boot is enabled") {
		t.Errorf("the serial console lacks %q", "EFI stub: UEFI Secure Boot is enabled")
	}
	if got := strings.TrimSpace(read("lockdown")); !strings.Contains(got, "[integrity]") {
		t.Errorf("lockdown = %q, want [integrity]", got)
	}
	if got := strings.TrimSpace(read("sig_enforce")); got != "Y" {
		t.Errorf("sig_enforce = %q, want Y", got)
	}
	cmdline := strings.TrimSpace(read("cmdline"))
	if !strings.Contains(cmdline, "ima_policy=tcb|critical_data") || !strings.Contains(cmdline, "rootfstype=ramfs") {
		t.Errorf("cmdline = %q", cmdline)
	}

	// The agent's report says the same.
	if rc := strings.TrimSpace(read("measure.rc")); rc != "0" {
		t.Fatalf("vigil agent measure exited %s: %s", rc, read("measure.err"))
	}
	var rep struct {
		SecureBoot struct {
			Status  string `json:"status"`
			Enabled bool   `json:"enabled"`
		} `json:"secure_boot"`
		Enforcement struct {
			Status     string `json:"status"`
			Lockdown   string `json:"lockdown"`
			SigEnforce bool   `json:"sig_enforce"`
		} `json:"enforcement"`
		MeasuredBoot struct {
			Status        string                       `json:"status"`
			Format        string                       `json:"format"`
			Events        int                          `json:"events"`
			PCRs          map[string]map[string]string `json:"pcrs"`
			KernelCmdline string                       `json:"kernel_cmdline"`
		} `json:"measured_boot"`
		Kernel struct {
			Cmdline string `json:"cmdline"`
		} `json:"kernel"`
	}
	if err := json.Unmarshal([]byte(read("report.json")), &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.SecureBoot.Status != "ok" || !rep.SecureBoot.Enabled {
		t.Errorf("report secure_boot = %+v, want ok and enabled", rep.SecureBoot)
	}
	if rep.Enforcement.Status != "ok" || rep.Enforcement.Lockdown != "integrity" || !rep.Enforcement.SigEnforce {
		t.Errorf("report enforcement = %+v, want lockdown integrity and sig_enforce", rep.Enforcement)
	}

	// The event log replays to the guest TPM's PCRs, as tpm2_eventlog
	// replays it, and as the agent reported.
	logPath := filepath.Join(share, "binary_bios_measurements")
	raw := read("binary_bios_measurements")
	el, err := eventlog.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("eventlog.Parse of the guest's log: %v", err)
	}
	replay := el.Replay().Hex()
	t.Logf("event log: %d events, banks %v", len(el.Events), el.Banks())
	peer := tpm2Eventlog(t, logPath)
	if len(replay["sha256"]) == 0 {
		t.Errorf("the log has no sha256 bank: banks %v", el.Banks())
	}
	for _, alg := range el.Banks() {
		bank := alg.String()
		tpmPCRs := guestPCRs(t, read("pcrs-"+bank))
		if len(replay[bank]) == 0 {
			t.Errorf("replay has no %s bank", bank)
		}
		for idx, v := range replay[bank] {
			if tpmPCRs[idx] != v {
				t.Errorf("%s PCR %s: replay %s, guest TPM %s", bank, idx, v, tpmPCRs[idx])
			}
			if peer[bank][idx] != v {
				t.Errorf("%s PCR %s: replay %s, tpm2_eventlog %s", bank, idx, v, peer[bank][idx])
			}
			if rep.MeasuredBoot.PCRs[bank][idx] != v {
				t.Errorf("%s PCR %s: replay %s, agent report %s", bank, idx, v, rep.MeasuredBoot.PCRs[bank][idx])
			}
		}
		if len(peer[bank]) != len(replay[bank]) {
			t.Errorf("%s: tpm2_eventlog replays %d PCRs, vigil %d", bank, len(peer[bank]), len(replay[bank]))
		}
	}
	for _, idx := range []string{"0", "4", "7", "8", "9"} {
		if replay["sha256"][idx] == "" {
			t.Errorf("sha256 PCR %s not extended by the log", idx)
		}
	}
	if rep.MeasuredBoot.Status != "ok" || rep.MeasuredBoot.Format != "crypto-agile" || rep.MeasuredBoot.Events != len(el.Events) {
		t.Errorf("report measured_boot: status %s format %s events %d (log has %d)", rep.MeasuredBoot.Status, rep.MeasuredBoot.Format, rep.MeasuredBoot.Events, len(el.Events))
	}
	if !strings.Contains(cmdline, strings.TrimSpace(strings.TrimPrefix(rep.MeasuredBoot.KernelCmdline, "/vmlinuz"))) || rep.MeasuredBoot.KernelCmdline == "" {
		t.Errorf("grub-measured cmdline %q vs /proc/cmdline %q", rep.MeasuredBoot.KernelCmdline, cmdline)
	}
	// The files grub measured into PCR 9 are the files on the ESP: each
	// event's SHA-256 is the digest of the file its data names (the
	// kernel, the initramfs, grub.cfg).
	initrdBytes, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	kernelBytes, err := os.ReadFile(p.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := map[string][32]byte{"/vmlinuz": sha256.Sum256(kernelBytes), "/initrd.img": sha256.Sum256(initrdBytes), "/grub.cfg": sha256.Sum256([]byte(grubCfg))}
	seen := map[string]bool{}
	for _, e := range el.Events {
		if e.PCR != 9 {
			continue
		}
		name := strings.TrimRight(string(e.Data), "\x00")
		for suffix, sum := range wantFiles {
			if strings.HasSuffix(name, suffix) {
				seen[suffix] = true
				if got := e.Digest(eventlog.AlgSHA256); !bytes.Equal(got, sum[:]) {
					t.Errorf("PCR 9 event %d %q: sha256 %x, the file's %x", e.Num, name, got, sum)
				}
			}
		}
	}
	for suffix := range wantFiles {
		if !seen[suffix] {
			t.Errorf("grub measured no file ending in %s into PCR 9", suffix)
		}
	}
	// IMA is real: the list replays to the guest TPM's PCR 10, and its
	// boot_aggregate is the SHA-256 over PCRs 0-9 (ima_calc_boot_aggregate,
	// security/integrity/ima/ima_crypto.c: PCRs 8 and 9 are included for
	// a TPM 2.0 bank other than SHA-1).
	st, err := ima.Parse(strings.NewReader(read("ima.bin")), ima.Options{SHA256Only: true})
	if err != nil {
		t.Fatalf("ima.Parse of the guest's list: %v", err)
	}
	tpm256 := guestPCRs(t, read("pcrs-sha256"))
	if got := hex.EncodeToString(st.SHA256[10][:]); got != tpm256["10"] {
		t.Errorf("IMA list (%d entries) replays PCR 10 to %s, guest TPM %s", st.Entries, got, tpm256["10"])
	}
	agg := sha256.New()
	for i := 0; i < 10; i++ {
		b, _ := hex.DecodeString(tpm256[strconv.Itoa(i)])
		agg.Write(b)
	}
	if want := "sha256:" + hex.EncodeToString(agg.Sum(nil)); st.BootAggregate != want {
		t.Errorf("boot_aggregate %s, want %s (over the guest TPM's PCRs 0-9)", st.BootAggregate, want)
	}
	if st.Entries < 2 {
		t.Errorf("IMA measured %d entries on a ramfs root, want busybox and vigil too", st.Entries)
	}
	t.Logf("IMA: %d entries, boot_aggregate %s", st.Entries, st.BootAggregate)
	t.Logf("total %s", time.Since(t0).Round(100*time.Millisecond))
}

// guestPCRs reads "INDEX HEX" lines from the guest's
// /sys/class/tpm/tpm0/pcr-BANK/INDEX files.
func guestPCRs(t *testing.T, s string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(l)
		if len(f) == 1 {
			continue // a bank the TPM does not have allocated
		}
		if len(f) != 2 {
			t.Fatalf("guest PCR line %q", l)
		}
		out[f[0]] = strings.ToLower(f[1])
	}
	return out
}

var pcrLine = regexp.MustCompile(`^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$`)

// tpm2Eventlog runs tpm2-tools' tpm2_eventlog on the log and returns its
// replayed PCRs (the "pcrs:" section of its YAML).
func tpm2Eventlog(t *testing.T, path string) map[string]map[string]string {
	out, err := exec.Command("tpm2_eventlog", path).Output()
	if err != nil {
		t.Fatalf("tpm2_eventlog: %v", err)
	}
	res := map[string]map[string]string{}
	in, bank := false, ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "pcrs:":
			in = true
		case !in:
		case strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "    ") && strings.HasSuffix(l, ":"):
			bank = strings.TrimSuffix(strings.TrimSpace(l), ":")
			res[bank] = map[string]string{}
		case bank != "":
			if m := pcrLine.FindStringSubmatch(l); m != nil {
				if _, err := hex.DecodeString(m[2]); err == nil {
					i, _ := strconv.Atoi(m[1])
					res[bank][strconv.Itoa(i)] = strings.ToLower(m[2])
				}
			}
		}
	}
	if len(res) == 0 {
		t.Fatalf("tpm2_eventlog printed no pcrs section")
	}
	return res
}

// TestBootTimeout: a guest that has not powered off by the timeout is
// killed, Run says so, and no qemu or swtpm is left behind.
func TestBootTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts qemu")
	}
	p := Require(t)
	work := t.TempDir()
	initrd := filepath.Join(work, "initrd.img")
	if err := BuildInitramfs(p, Initramfs{Init: "#!/bin/busybox sh\nwhile :; do /bin/busybox sleep 1; done\n"}, initrd); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(work, "disk.img")
	if err := BuildDisk(context.Background(), p, ESP{GrubCfg: grubCfg, Initrd: initrd}, disk); err != nil {
		t.Fatal(err)
	}
	tpm := testtpm.Start(t)
	tpm.Stop()
	before := children(t)
	t0 := time.Now()
	_, err := Run(context.Background(), p, Boot{Disk: disk, TPMState: tpm.StateDir, Share: work, Timeout: 5 * time.Second})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Errorf("Run returned after %s with a 5 s timeout", d)
	}
	if after := children(t); len(after) > len(before) {
		t.Errorf("children left running: %v (before: %v)", after, before)
	}
}

// children lists this process's child PIDs.
func children(t *testing.T) []string {
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}
