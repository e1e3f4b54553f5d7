package testvm

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/report"
)

// grubCfgConfidential is grubCfg with lockdown=confidentiality, the
// level-4 boot.
const grubCfgConfidential = `set timeout=0
set default=0
menuentry "vigil real boot, lockdown=confidentiality" {
	linux /vmlinuz console=ttyS0 panic=-1 rootfstype=ramfs "ima_policy=tcb|critical_data" lockdown=confidentiality
	initrd /initrd.img
}
`

// level4Init is the first boot's /init after the network: the guest's
// own views of what the agent reports (read with cat, not vigil), the
// TCG benchmark figures (busybox time -v), two attestation rounds with a
// new executable between them, evidence on the guest TPM, and a capture
// of what the agent reads to the share.
const level4Init = `O=/mnt/b1
mkdir -p $O/efivars
cat /proc/cmdline >$O/cmdline
cat /sys/kernel/security/lockdown >$O/lockdown
cat /proc/keys >$O/keys 2>&1
for f in /sys/firmware/efi/efivars/*; do cat "$f" >"$O/efivars/${f##*/}"; done
busybox time -v /bin/vigil agent measure --kernel /mnt/vmlinuz --cache-dir /tmp/kernel-keys -o json >$O/measure-cold.json 2>$O/measure-cold.err
busybox time -v /bin/vigil agent measure --kernel /mnt/vmlinuz --cache-dir /tmp/kernel-keys -o json >$O/measure-warm.json 2>$O/measure-warm.err
ATTEST1
cp /bin/busybox /tmp/busybox-copy
/tmp/busybox-copy true
ATTEST2
busybox time -v /bin/vigil agent evidence --tpm /dev/tpmrm0 --nonce 000102030405060708090a0b0c0d0e0f --kernel /mnt/vmlinuz --cache-dir /mnt/state/cache >$O/evidence.json 2>$O/evidence.err
/bin/vigil agent capture $O/capture --kernel /mnt/vmlinuz --cache-dir /mnt/state/cache 2>$O/capture.err
echo $? >$O/capture.rc
if [ -e /.cache ]; then find /.cache; else echo none; fi >$O/home-cache
cp /sys/kernel/security/tpm0/binary_bios_measurements $O/binary_bios_measurements
cp /sys/kernel/security/ima/binary_runtime_measurements $O/ima.bin
dmesg >$O/dmesg
`

// rebootInit is a later boot's /init: one round, the list after it.
const rebootInit = `O=/mnt/BOOT
mkdir -p $O
PRE
ATTEST
cp /sys/kernel/security/ima/binary_runtime_measurements $O/ima.bin
`

// TestRealLevel4 boots the signed chain with lockdown=confidentiality,
// under a policy whose boot_binaries are the Authenticode digests Vigil's
// engine computes from the downloaded shim, grub and kernel (equal to
// pesign's and osslsigncode's), and:
//   - the guest's stock agent enrolls and attests at level 4, twice; the
//     second round sends only the IMA entries the first did not, from the
//     offset the service's replay state ends at (seen by a proxy in front
//     of the service); the session report verifies on the host;
//   - the event log's boot applications are those same three digests;
//   - the report's live db, dbx, MokListRT, MokListXRT, MokListTrustedRT,
//     SbatLevelRT, lockdown and command line equal what the guest shows
//     with cat (efivarfs, securityfs, /proc/cmdline), and /proc/keys has
//     the keyrings Secure Boot fills;
//   - each module the guest loaded is in the IMA list with the SHA-256
//     Vigil reports for its file;
//   - the capture, measured on the host with --root, reproduces the
//     guest's report apart from report.VolatileFields;
//   - then two reboots keeping the TPM state and the service, one whose
//     IMA list differs (another executable ran) and one whose list is
//     the same as the boot before: each returns to level 4 on its first
//     round.
func TestRealLevel4(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boots: about 3 minutes under TCG")
	}
	p := Require(t)
	t0 := time.Now()
	// The reference values (TestBootChainDigests checks them against two
	// peers).
	dig := engineDigests(t, p)
	t.Logf("reference values: shim %s grub %s kernel %s", dig.Shim, dig.Grub, dig.Kernel)
	r := newRig(t, p, vmPolicyRef(t, p, dig.list()))
	init := strings.NewReplacer("ATTEST1", attestOnce("b1/attest1"), "ATTEST2", attestOnce("b1/attest2")).Replace(level4Init)
	r.boot("b1", guestSpec{Init: init, GrubCfg: grubCfgConfidential}, true)

	for _, n := range []string{"b1/attest1", "b1/attest2"} {
		out := r.once(n)
		checkLevel4(t, r, n, out)
	}
	rec := r.rec.attests()
	if len(rec) != 2 {
		t.Fatalf("the service saw %d attestations, want 2", len(rec))
	}
	fullList := []byte(r.read("b1/ima.bin"))
	t.Run("ima-rounds", func(t *testing.T) {
		first, second := rec[0], rec[1]
		if !first.HasIMA || first.Offset != 0 || len(first.IMA) == 0 {
			t.Fatalf("round 1 IMA list: present %v offset %d, %d bytes; want the whole list from 0", first.HasIMA, first.Offset, len(first.IMA))
		}
		if !second.HasIMA || second.Offset != int64(len(first.IMA)) {
			t.Fatalf("round 2 IMA list: present %v offset %d; want it to start where round 1 ended (%d)", second.HasIMA, second.Offset, len(first.IMA))
		}
		if len(second.IMA) == 0 || len(second.IMA) >= len(first.IMA) {
			t.Errorf("round 2 sent %d bytes of IMA list (round 1 %d): want only the new entries", len(second.IMA), len(first.IMA))
		}
		if !bytes.Contains(second.IMA, []byte("/tmp/busybox-copy")) || bytes.Contains(first.IMA, []byte("/tmp/busybox-copy")) {
			t.Errorf("the executable run between the rounds is not in round 2's entries only")
		}
		sent := append(append([]byte{}, first.IMA...), second.IMA...)
		if !bytes.HasPrefix(fullList, sent) {
			t.Errorf("the two rounds' entries (%d bytes) are not a prefix of the guest's list (%d bytes)", len(sent), len(fullList))
		}
		if !first.HasLog || second.HasLog {
			t.Errorf("event log sent: round 1 %v, round 2 %v; want once (the service has it)", first.HasLog, second.HasLog)
		}
		for i, a := range rec {
			t.Logf("round %d: IMA offset %d, %d bytes; service answered %d in %s", i+1, a.Offset, len(a.IMA), a.Status, a.Elapsed.Round(time.Millisecond))
		}
	})

	var rep report.Report
	if err := json.Unmarshal(rec[0].Report, &rep); err != nil {
		t.Fatalf("the report round 1 sent: %v", err)
	}
	t.Run("boot-applications", func(t *testing.T) {
		// In order of first appearance; the kernel is logged twice (shim's
		// verification for grub, then the firmware's LoadImage).
		var got []string
		for _, a := range rep.MeasuredBoot.BootApplications {
			if d := a.Digests["sha256"]; !slices.Contains(got, d) {
				got = append(got, d)
			}
		}
		if want := dig.list(); !slices.Equal(got, want) {
			t.Errorf("the event log's boot applications %v, want shim, grub, kernel %v", got, want)
		}
		t.Logf("%d boot application events, digests %v", len(rep.MeasuredBoot.BootApplications), got)
	})
	t.Run("guest-views", func(t *testing.T) { checkGuestViews(t, r, &rep) })
	t.Run("ima-modules", func(t *testing.T) { checkIMAModules(t, &rep, fullList) })
	t.Run("capture", func(t *testing.T) { checkCapture(t, r) })
	benchRows(t, r, rec)

	// The reboots: the same TPM state, service and agent state.
	for _, b := range []struct{ name, pre, why string }{
		{"b2", "cp /bin/busybox /tmp/busybox-other\n/tmp/busybox-other true\n", "a different IMA list"},
		{"b3", "cp /bin/busybox /tmp/busybox-other\n/tmp/busybox-other true\n", "the same IMA list as the boot before"},
	} {
		t.Run("reboot-"+b.name, func(t *testing.T) {
			init := strings.NewReplacer("BOOT", b.name, "PRE", b.pre, "ATTEST", attestOnce(b.name+"/attest")).Replace(rebootInit)
			n := len(r.rec.attests())
			r.boot(b.name, guestSpec{Init: init, GrubCfg: grubCfgConfidential}, true)
			out := r.once(b.name + "/attest")
			checkLevel4(t, r, b.name, out)
			// The service's offset was the boot before's; the agent saw the
			// new boot ID and sent this boot's list from its start.
			rec := r.rec.attests()
			if len(rec) != n+1 || rec[n].Offset != 0 || !bytes.Equal(rec[n].IMA, []byte(r.read(b.name + "/ima.bin"))[:len(rec[n].IMA)]) {
				t.Errorf("%s: the first round after boot did not send the new list from its start", b.name)
			}
			t.Logf("%s (%s): level %d on the first round after boot", b.name, b.why, out.Level)
		})
	}
	l1, l2, l3 := fullList, []byte(r.read("b2/ima.bin")), []byte(r.read("b3/ima.bin"))
	n1, n2, n3 := imaEntries(t, l1), imaEntries(t, l2), imaEntries(t, l3)
	t.Logf("IMA lists: boot 1 %d entries, boot 2 %d, boot 3 %d; boot 3 byte-identical to boot 2: %v", n1, n2, n3, bytes.Equal(l2, l3))
	if bytes.Equal(l1, l2) {
		t.Errorf("boot 2's IMA list equals boot 1's: the different-list reboot is not different")
	}
	// (The byte lengths may differ by a few: the names of the agent's
	// temporary state files, which IMA measures on the share, are random.)
	if n2 != n3 {
		t.Errorf("boot 3's IMA list has %d entries (%d bytes), boot 2's %d (%d bytes): the same-list reboot is not the same", n3, len(l3), n2, len(l2))
	}
	t.Logf("total %s", time.Since(t0).Round(100*time.Millisecond))
}

// TestBootChainDigests: the Authenticode SHA-256 digests Vigil's engine
// computes from the downloaded shim, grub and kernel (the level-4
// reference values) equal pesign's, and osslsigncode's where it can read
// the file (not Debian's shim: "Corrupted attribute certificate table",
// it carries two signatures); the image's built-in key list is the one
// key /proc/keys shows in .builtin_trusted_keys.
func TestBootChainDigests(t *testing.T) {
	p := Require(t)
	if _, err := exec.LookPath("pesign"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pesign is missing (make deps)")
		}
		t.Skip("pesign is missing (make deps)")
	}
	dig := engineDigests(t, p)
	checked := 0
	for _, c := range []struct{ name, path, got string }{{"shim", p.Shim, dig.Shim}, {"grub", p.Grub, dig.Grub}, {"kernel", p.Vmlinuz, dig.Kernel}} {
		if peer := pesignSHA256(t, c.path); peer != c.got {
			t.Errorf("%s: engine Authenticode SHA-256 %s, pesign %s", c.name, c.got, peer)
		}
		switch peer, why := osslsigncodeSHA256(c.path); {
		case peer == "" && c.name == "shim":
			t.Logf("%s: osslsigncode cannot compute it: %s", c.name, why)
		case peer == "":
			t.Errorf("%s: osslsigncode: %s", c.name, why)
		case peer != c.got:
			t.Errorf("%s: engine Authenticode SHA-256 %s, osslsigncode %s", c.name, c.got, peer)
		default:
			checked++
		}
	}
	if checked != 2 {
		t.Errorf("osslsigncode agreed on %d files, want grub and the kernel", checked)
	}
	// sbverify prints no digest, but "Signature verification OK" says the
	// Authenticode digest it computed is the one the signature signs,
	// which is the one the engine computed and found signed (dig): the
	// three files verify under the anchors their firmware and shim use.
	dir := t.TempDir()
	pemOf := func(name string, c *x509.Certificate) string {
		f := filepath.Join(dir, name)
		os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
		return f
	}
	debian := pemOf("debian.pem", testpki.EmbeddedCert(t, p.Shim, "Debian Secure Boot CA"))
	uefi2011 := pemOf("uefi2011.pem", testpki.EmbeddedCert(t, p.Shim, "Microsoft Corporation UEFI CA 2011"))
	for _, c := range []struct{ name, path, ca string }{{"shim", p.Shim, uefi2011}, {"grub", p.Grub, debian}, {"kernel", p.Vmlinuz, debian}} {
		out, err := exec.Command("sbverify", "--cert", c.ca, c.path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Signature verification OK") {
			t.Errorf("%s: sbverify --cert %s: %v\n%s", c.name, filepath.Base(c.ca), err, out)
		}
	}
	if k := builtinKeys(t, p.Vmlinuz); len(k.System) != 1 || k.System[0].Subject.CommonName != "Build time autogenerated kernel key" {
		t.Errorf("the kernel's system list: %d certificates", len(k.System))
	}
}

// checkLevel4 asserts a round's outcome: level 4, no failures, and a
// session report that verifies against the service CA and says so.
func checkLevel4(t *testing.T, r *rig, name string, out onceResult) {
	t.Helper()
	if out.Enrollment != "approved" || out.Level != 4 || len(out.Failures) != 0 {
		t.Errorf("%s: enrollment %s, level %d (%s), failures %v; want approved, level 4, none", name, out.Enrollment, out.Level, out.Status, reasons(out.Failures))
	}
	v, err := ear.Verify(out.Token, r.svc.CAPool, time.Now())
	if err != nil {
		t.Errorf("%s: session report: %v", name, err)
		return
	}
	if v.Claims.AgentID != out.AgentID || v.Claims.Level != out.Level {
		t.Errorf("%s: session report agent %q level %d; output agent %q level %d", name, v.Claims.AgentID, v.Claims.Level, out.AgentID, out.Level)
	}
}

// The variables' vendor GUIDs (efivarfs names them NAME-GUID).
const (
	guidImageSecurity = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
	guidShim          = "605dab50-e046-4300-abb6-3dd810dd8b23"
)

// checkGuestViews compares the report with the guest's own views, read
// in the guest with cat: each efivarfs variable (4 bytes of attributes,
// then the data), securityfs' lockdown, /proc/cmdline and /proc/keys.
func checkGuestViews(t *testing.T, r *rig, rep *report.Report) {
	efivar := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(r.share, "b1", "efivars", name))
		if err != nil || len(b) < 4 {
			t.Fatalf("efivarfs %s from the guest: %d bytes, %v", name, len(b), err)
		}
		return b[4:]
	}
	digest := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	sb := rep.SecureBoot
	for _, c := range []struct {
		name string
		db   *report.SignatureDB
	}{
		{"db-" + guidImageSecurity, sb.DB},
		{"dbx-" + guidImageSecurity, sb.DBX},
		{"MokListRT-" + guidShim, sb.MOK},
		{"MokListXRT-" + guidShim, sb.MOKX},
	} {
		if c.db == nil {
			t.Errorf("report: no %s", c.name)
			continue
		}
		if got, want := c.db.Digest, digest(efivar(c.name)); got != want {
			t.Errorf("%s: report digest %s, efivarfs %s", c.name, got, want)
		}
	}
	if sb.MOK != nil && sb.MOK.Entries < 1 {
		t.Errorf("MokListRT: %d entries, want shim's vendor certificate", sb.MOK.Entries)
	}
	trusted := efivar("MokListTrustedRT-" + guidShim)
	if sb.MokListTrusted == nil || *sb.MokListTrusted != (len(trusted) > 0 && trusted[0] == 1) {
		t.Errorf("MokListTrustedRT: report %v, efivarfs %x", sb.MokListTrusted, trusted)
	}
	if got, want := sb.SbatLevel, string(efivar("SbatLevelRT-"+guidShim)); got == "" || strings.TrimRight(want, "\x00") != got {
		t.Errorf("SbatLevelRT: report %q, efivarfs %q", got, want)
	}
	lockdown := r.read("b1/lockdown")
	if !strings.Contains(lockdown, "[confidentiality]") || rep.Enforcement.Lockdown != "confidentiality" {
		t.Errorf("lockdown: securityfs %q, report %q", strings.TrimSpace(lockdown), rep.Enforcement.Lockdown)
	}
	if got, want := rep.Kernel.Cmdline, strings.TrimSpace(r.read("b1/cmdline")); got != want {
		t.Errorf("cmdline: report %q, /proc/cmdline %q", got, want)
	}
	// The keyrings Secure Boot fills, in the kernel's own listing.
	keys := r.read("b1/keys")
	rings := keyrings(keys)
	for _, ring := range []string{".builtin_trusted_keys", ".platform", ".machine", ".blacklist"} {
		if _, ok := rings[ring]; !ok {
			t.Errorf("/proc/keys has no %s keyring: %v", ring, rings)
		}
	}
	// .platform holds db's certificates (load_uefi.c), .machine
	// MokListRT's (shim set MokListTrustedRT).
	if sb.DB != nil && rings[".platform"] != sb.DB.ByType["x509"] {
		t.Errorf(".platform has %d keys, the report's db %d certificates", rings[".platform"], sb.DB.ByType["x509"])
	}
	if sb.MOK != nil && rings[".machine"] != sb.MOK.ByType["x509"] {
		t.Errorf(".machine has %d keys, the report's MokListRT %d certificates", rings[".machine"], sb.MOK.ByType["x509"])
	}
	// .blacklist holds dbx's and MokListXRT's hashes (load_uefi.c) and
	// the kernel's built-in revocations (blacklist_hashes[], the
	// revocation certificates), as Vigil reads them from the image.
	kk := builtinKeys(t, r.p.Vmlinuz)
	if want := entries(sb.DBX) + entries(sb.MOKX) + len(kk.Hashes) + len(kk.Revoked); rings[".blacklist"] != want {
		t.Errorf(".blacklist has %d keys; dbx %d + MokListXRT %d + the kernel's %d hashes and %d revoked certificates = %d",
			rings[".blacklist"], entries(sb.DBX), entries(sb.MOKX), len(kk.Hashes), len(kk.Revoked), want)
	}
	if rings[".builtin_trusted_keys"] != len(kk.System) {
		t.Errorf(".builtin_trusted_keys has %d keys, the image's system list %d", rings[".builtin_trusted_keys"], len(kk.System))
	}
	// The report's own keyrings section (keyctl in the guest) against
	// /proc/keys.
	kr := rep.Keyrings
	if kr.Status != report.StatusOK || kr.Membership != report.MembershipKeyctl || kr.BlacklistCount != rings[".blacklist"] || len(kr.Missing) != 0 {
		t.Errorf("report keyrings: status %s, membership %s, blacklist %d (/proc/keys %d), missing %v", kr.Status, kr.Membership, kr.BlacklistCount, rings[".blacklist"], kr.Missing)
	}
	perRing := map[string]int{}
	for _, k := range kr.Trusted {
		perRing[k.Keyring]++
	}
	for _, ring := range []string{".builtin_trusted_keys", ".secondary_trusted_keys", ".machine"} {
		// .secondary_trusted_keys links the other two keyrings (/proc/keys
		// counts the links): it holds no key of its own here.
		want := rings[ring]
		if ring == ".secondary_trusted_keys" {
			want = 0
		}
		if perRing[ring] != want {
			t.Errorf("report keyrings: %d trusted keys in %s, /proc/keys %d", perRing[ring], ring, rings[ring])
		}
	}
	t.Logf("keyrings %v; db %d, dbx %d (%v), MokListRT %d, MokListXRT %d (%v) entries", rings, entries(sb.DB), entries(sb.DBX), byType(sb.DBX), entries(sb.MOK), entries(sb.MOKX), byType(sb.MOKX))
}

// builtinKeys are the key lists built into a kernel image.
func builtinKeys(t *testing.T, path string) *kernelkeys.Keys {
	t.Helper()
	f, size := openSized(t, path)
	k, err := kernelkeys.Read(f, size, kernelkeys.Options{})
	if err != nil {
		t.Fatalf("kernelkeys.Read %s: %v", path, err)
	}
	return k
}

func entries(db *report.SignatureDB) int {
	if db == nil {
		return -1
	}
	return db.Entries
}

func byType(db *report.SignatureDB) map[string]int {
	if db == nil {
		return nil
	}
	return db.ByType
}

// keyringLine is a keyring in /proc/keys: "... keyring   .blacklist: 115".
var keyringLine = regexp.MustCompile(`\skeyring\s+(\.[A-Za-z_]+): (empty|\d+)`)

// keyrings returns the kernel's keyrings and their key counts.
func keyrings(s string) map[string]int {
	out := map[string]int{}
	for _, m := range keyringLine.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	return out
}

// checkIMAModules: each loaded module's file is in the IMA list with the
// SHA-256 the report gives it.
func checkIMAModules(t *testing.T, rep *report.Report, list []byte) {
	byName := map[string]string{}
	_, err := ima.Parse(bytes.NewReader(list), ima.Options{SHA256Only: true, Visit: func(e *ima.Entry) {
		if e.Known && bytes.HasSuffix(e.Name, []byte(".ko")) {
			byName[string(e.Name)] = string(e.DigestAlgo) + ":" + hex.EncodeToString(e.FileDigest)
		}
	}})
	if err != nil {
		t.Fatalf("ima.Parse: %v", err)
	}
	if len(rep.Modules.Loaded) == 0 {
		t.Fatal("the report lists no loaded module")
	}
	for _, m := range rep.Modules.Loaded {
		got, ok := byName[m.Path]
		switch {
		case !ok:
			t.Errorf("module %s (%s): not in the IMA list (%d module entries)", m.Name, m.Path, len(byName))
		case got != "sha256:"+m.SHA256:
			t.Errorf("module %s: IMA %s, report sha256 %s", m.Name, got, m.SHA256)
		}
	}
	t.Logf("%d loaded modules, each in the IMA list with the report's digest", len(rep.Modules.Loaded))
}

func imaEntries(t *testing.T, list []byte) int {
	st, err := ima.Parse(bytes.NewReader(list), ima.Options{SHA256Only: true})
	if err != nil {
		t.Fatalf("ima.Parse: %v", err)
	}
	return st.Entries
}
