package testvm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testkmod"
	"github.com/vigil-attest/vigil/internal/testpki"
	"github.com/vigil-attest/vigil/internal/testtpm"
)

// oracleInit is /init of the oracle guest: for each line "NAME FILE DEST
// MODE" of /mnt/oracle/cases it copies the file to DEST (on the ramfs
// root), loads it with finit_module(2) (MODE compressed: with
// MODULE_INIT_COMPRESSED_FILE) and records the kernel's answer and its
// taint after it.
const oracleInit = initPrologue + `while read name file dest mode; do
	mkdir -p "$(dirname "$dest")"
	cp "/mnt/oracle/$file" "$dest"
	if [ "$mode" = compressed ]; then r=$(/bin/finit "$dest" compressed); else r=$(/bin/finit "$dest"); fi
	echo "$name $(cat /proc/sys/kernel/tainted) $r" >>/mnt/oracle.out
done </mnt/oracle/cases
cp /proc/modules /mnt/proc_modules
cat /sys/module/module/parameters/sig_enforce >/mnt/sig_enforce
cat /proc/cmdline >/mnt/cmdline
cat /proc/keys >/mnt/keys
dmesg >/mnt/dmesg
sync
umount /mnt
echo VIGIL-INIT-DONE
poweroff -f
`

// oracleCase is one module handed to the kernel and to vigil verify.
type oracleCase struct {
	name string
	// file is what the kernel loads (in the share's oracle directory);
	// judged is what vigil verify judges (default file): for a
	// compressed module, vigil judges the compressed file and the kernel
	// loads what kmod would, the file decompressed in user space.
	file, judged string
	// dest is where the guest loads it from.
	dest string
	// compressed asks the kernel to decompress (MODULE_INIT_COMPRESSED_FILE).
	compressed bool
	// kernelAccepts is what the kernel's source says it does, asserted
	// so that a harness that refuses everything cannot pass.
	kernelAccepts bool
	// stricter, when set, is the reason Vigil denies a module this kernel
	// loads, by design: the one case where the verdicts differ, pinned.
	stricter string
}

// kernelAnswer is one line of the guest's oracle.out.
type kernelAnswer struct {
	accepted bool
	errno    string
	message  string
	tainted  string
}

// TestKernelOracle: the kernel is the oracle for module signatures. In
// one boot under Secure Boot (lockdown integrity) and
// module.sig_enforce=1, each crafted module is loaded with finit_module,
// and vigil verify --mode kernel, given the keys the guest kernel trusts
// (the Debian kernel's built-in key by --kernel, the enrolled MOK by
// --trust: the .machine keyring), must say allowed exactly when the
// kernel accepted the module.
func TestKernelOracle(t *testing.T) {
	t.Parallel() // two guests at once: the suite's real-host part fits its budget on 2 cores
	if testing.Short() {
		t.Skip("real boots: the MOK enrollment (two boots, once per run) and the oracle boot")
	}
	p := Require(t)
	mt := RequireModuleTools(t, p)
	t0 := time.Now()
	ctx := context.Background()
	work := t.TempDir()
	share := filepath.Join(work, "share")
	dir := filepath.Join(share, "oracle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mok := EnrolledMOK(t, p)
	vigil := Vigil(t)
	finit := BuildFinit(ctx, t)

	_, file, _, _ := runtime.Caller(0)
	probe, err := os.ReadFile(filepath.Join(filepath.Dir(file), "testdata", "oracle", "probe.c"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"vp_unsigned", "vp_unknown", "vp_mok", "vp_sha1", "vp_attrs", "vp_two_bad", "vp_two_unknown", "vp_xz", "vp_zst", "vp_gz", "vp_gz_unsigned", "vp_xz_crc64", "vp_outside"}
	src := map[string][]byte{}
	for _, n := range names {
		src[n+".c"] = probe
	}
	kos, err := mt.BuildModules(ctx, filepath.Join(work, "build"), src)
	if err != nil {
		t.Fatal(err)
	}
	rel := "/lib/modules/" + p.Release + "/"
	out := func(n string) string { return filepath.Join(dir, n) }
	sign := func(hash, key, cert, name string) {
		t.Helper()
		if err := mt.Sign(ctx, hash, key, cert, kos[name], out(name+".ko")); err != nil {
			t.Fatal(err)
		}
	}
	content := func(name string) []byte {
		b, err := os.ReadFile(kos[name])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unknown := testpki.NewRoot(testpki.Options{CommonName: "Vigil Test Unknown Module Key"})
	unknownCert, unknownKey := unknown.WriteFiles(t, work, "unknown")
	mokArgs := []string{"-signer", mok.CertPEM, "-inkey", mok.KeyPEM}

	var cases []oracleCase
	add := func(c oracleCase) {
		if c.dest == "" {
			c.dest = rel + "extra/" + c.file
		}
		if c.judged == "" {
			c.judged = c.file
		}
		cases = append(cases, c)
	}
	// Debian's own module, signed at build time by the key built into the
	// kernel; and the same with one byte of its code changed.
	debian := filepath.Join(p.ModulesDir, "kernel", "drivers", "net", "dummy.ko")
	deb, err := os.ReadFile(debian)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(deb)
	tampered[len(tampered)/3] ^= 0x01
	os.WriteFile(out("dummy_tampered.ko"), tampered, 0o644)
	add(oracleCase{name: "tampered", file: "dummy_tampered.ko"})
	os.WriteFile(out("dummy.ko"), deb, 0o644)
	add(oracleCase{name: "debian-signed", file: "dummy.ko", dest: rel + "kernel/drivers/net/dummy.ko", kernelAccepts: true})
	os.WriteFile(out("vp_unsigned.ko"), content("vp_unsigned"), 0o644)
	add(oracleCase{name: "unsigned", file: "vp_unsigned.ko"})
	sign("sha256", unknownKey, unknownCert, "vp_unknown")
	add(oracleCase{name: "unknown-key", file: "vp_unknown.ko"})
	sign("sha256", mok.KeyPEM, mok.CertPEM, "vp_mok")
	add(oracleCase{name: "mok-trusted", file: "vp_mok.ko", kernelAccepts: true})
	sign("sha1", mok.KeyPEM, mok.CertPEM, "vp_sha1")
	add(oracleCase{name: "sha1", file: "vp_sha1.ko", kernelAccepts: true})
	// openssl's default signed attributes (contentType, signingTime,
	// messageDigest, S/MIME capabilities): pkcs7_verify refuses them for
	// a module.
	testkmod.OpensslSigned(t, dir, "vp_attrs.ko", content("vp_attrs"), 0, append([]string{"-nocerts"}, mokArgs...)...)
	add(oracleCase{name: "signed-attributes", file: "vp_attrs.ko"})
	// Two signers, both the MOK; the second SignerInfo's signature (the
	// DER's last bytes with -noattr) corrupted.
	two := testkmod.OpensslSigned(t, work, "vp_two_bad.ko", content("vp_two_bad"), 0, append(append([]string{"-noattr", "-nocerts"}, mokArgs...), mokArgs...)...)
	c2, p72 := testkmod.SignedContent(t, two)
	p72[len(p72)-1] ^= 0x01
	testkmod.Write(t, dir, "vp_two_bad.ko", c2, p72)
	add(oracleCase{name: "two-signers-one-bad", file: "vp_two_bad.ko"})
	// Two sound signers, the MOK and a key no keyring holds:
	// pkcs7_validate_trust passes over -ENOKEY.
	testkmod.OpensslSigned(t, dir, "vp_two_unknown.ko", content("vp_two_unknown"), 0,
		append(append([]string{"-noattr", "-nocerts"}, mokArgs...), "-signer", unknownCert, "-inkey", unknownKey)...)
	add(oracleCase{name: "two-signers-one-unknown", file: "vp_two_unknown.ko", kernelAccepts: true})
	// Compressed, as Debian's newer kernels ship modules: signed, then
	// compressed. The kernel decompresses only with
	// CONFIG_MODULE_DECOMPRESS; otherwise kmod decompresses in user space
	// and the kernel judges the bytes it is given.
	decompress := kernelConfig(t, p, "CONFIG_MODULE_DECOMPRESS") == "y"
	for _, z := range []struct {
		name, ext string
		tool      []string
		stricter  string
	}{
		// As kbuild's modules_install compresses (scripts/Makefile.modinst).
		{name: "vp_xz", ext: ".xz", tool: []string{"xz", "--check=crc32", "--lzma2=dict=1MiB"}},
		{name: "vp_zst", ext: ".zst", tool: []string{"zstd", "-T0", "--ultra", "-22"}},
		{name: "vp_gz", ext: ".gz", tool: []string{"gzip", "-9"}},
		{name: "vp_gz_unsigned", ext: ".gz", tool: []string{"gzip", "-9"}},
		// xz's default check, CRC64: kmod's liblzma decompresses it, the
		// kernel's own decompressor (lib/xz without XZ_USE_CRC64) refuses
		// it, and Vigil's kernel mode follows the kernel's decompressor.
		{name: "vp_xz_crc64", ext: ".xz", tool: []string{"xz"}, stricter: "malformed"},
	} {
		if z.name == "vp_gz_unsigned" {
			os.WriteFile(out(z.name+".ko"), content(z.name), 0o644)
		} else {
			sign("sha256", mok.KeyPEM, mok.CertPEM, z.name)
		}
		compress(t, z.tool, out(z.name+".ko"), out(z.name+".ko"+z.ext))
		accepts := z.name != "vp_gz_unsigned"
		add(oracleCase{name: z.name + "-in-kernel", file: z.name + ".ko" + z.ext, compressed: true, kernelAccepts: accepts && decompress})
		add(oracleCase{name: z.name + "-kmod", file: z.name + ".ko", judged: z.name + ".ko" + z.ext, dest: rel + "extra/" + z.name + ".ko",
			kernelAccepts: accepts, stricter: z.stricter})
	}
	sign("sha256", mok.KeyPEM, mok.CertPEM, "vp_outside")
	add(oracleCase{name: "outside-lib-modules", file: "vp_outside.ko", dest: "/tmp/elsewhere/vp_outside.ko", kernelAccepts: true})

	var manifest strings.Builder
	for _, c := range cases {
		mode := "plain"
		if c.compressed {
			mode = "compressed"
		}
		fmt.Fprintf(&manifest, "%s %s %s %s\n", c.name, c.file, c.dest, mode)
	}
	if err := os.WriteFile(filepath.Join(dir, "cases"), []byte(manifest.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// Vigil's verdicts, on the host, with the guest kernel's keys: under
	// a policy of the kernel's own rules (any digest down to SHA-1, no
	// EKU, no validity periods), and under the default policy, which may
	// be stricter (SHA-256 at least) but never laxer than the kernel.
	kernelRules := filepath.Join(work, "kernel-rules.yaml")
	if err := os.WriteFile(kernelRules, []byte("name: the kernel's own rules\nmin_hash: sha1\nrequire_eku: []\nignore_expiry: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, c := range cases {
		files = append(files, out(c.judged))
	}
	verdicts := vigilVerify(t, vigil, append([]string{"--policy", kernelRules, "--kernel", p.Vmlinuz, "--trust", mok.CertPEM}, files...))
	defaults := vigilVerify(t, vigil, append([]string{"--kernel", p.Vmlinuz, "--trust", mok.CertPEM}, files...))

	// The kernel's.
	initrd := filepath.Join(work, "initrd.img")
	err = BuildInitramfs(p, Initramfs{
		Init:    oracleInit,
		Modules: []string{"efivarfs", "virtio_pci", "9pnet_virtio", "9p"},
		Files:   []File{{Path: "bin/finit", Mode: 0o755, Data: finit}},
	}, initrd)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(work, "disk.img")
	cfg := strings.Replace(grubCfg, "panic=-1", "panic=-1 module.sig_enforce=1", 1)
	if err := BuildDisk(ctx, p, ESP{GrubCfg: cfg, Initrd: initrd}, disk); err != nil {
		t.Fatal(err)
	}
	tpm := testtpm.Start(t)
	tpm.Stop()
	runGuest(t, p, Boot{Disk: disk, Vars: mok.CopyVars(t), TPMState: tpm.StateDir, Share: share, Timeout: 150 * time.Second},
		"the oracle boot", "VIGIL-INSMOD-FAILED", "VIGIL-NO-SHARE")
	g := guestFiles{t, share}
	if !strings.Contains(g.read("cmdline"), "module.sig_enforce=1") || strings.TrimSpace(g.read("sig_enforce")) != "Y" {
		t.Fatalf("the guest does not enforce module signatures: cmdline %q, sig_enforce %q", g.read("cmdline"), g.read("sig_enforce"))
	}
	answers := map[string]kernelAnswer{}
	for _, l := range strings.Split(strings.TrimSpace(g.read("oracle.out")), "\n") {
		f := strings.SplitN(l, " ", 5)
		if len(f) < 4 {
			t.Fatalf("oracle line %q", l)
		}
		a := kernelAnswer{tainted: f[1], accepted: f[2] == "accepted", errno: f[3]}
		if len(f) == 5 {
			a.message = f[4]
		}
		answers[f[0]] = a
	}
	procMods := g.read("proc_modules")
	for _, c := range cases {
		a, ok := answers[c.name]
		if !ok {
			t.Errorf("%s: the guest recorded no answer", c.name)
			continue
		}
		v, ok := verdicts[filepath.Base(out(c.judged))]
		if !ok {
			t.Errorf("%s: vigil verify judged no %s", c.name, c.judged)
			continue
		}
		kernel := "rejects"
		if a.accepted {
			kernel = "accepts"
		}
		t.Logf("%-26s kernel %s (errno %s %s, tainted %s); vigil allowed=%v %v (mode %s)", c.name, kernel, a.errno, a.message, a.tainted, v.Allowed, v.Reasons, v.Mode)
		if a.accepted != c.kernelAccepts {
			t.Errorf("%s: the kernel %s it; its source says accepted=%v", c.name, kernel, c.kernelAccepts)
		}
		if c.compressed && !decompress && a.errno != "95" {
			t.Errorf("%s: without CONFIG_MODULE_DECOMPRESS the kernel answers %s %s, want 95 (EOPNOTSUPP)", c.name, a.errno, a.message)
		}
		if c.compressed && !decompress {
			continue // the kernel did not judge the content; the -kmod case did
		}
		if d := defaults[filepath.Base(out(c.judged))]; d.Allowed && !a.accepted {
			t.Errorf("%s: vigil's default policy allows it, the kernel %s it (%s %s)", c.name, kernel, a.errno, a.message)
		}
		if c.stricter != "" {
			if v.Allowed || !a.accepted || !slices.Contains(v.Reasons, c.stricter) {
				t.Errorf("%s: vigil allowed=%v %v, kernel %s; want vigil denying %s where this kernel loads it", c.name, v.Allowed, v.Reasons, kernel, c.stricter)
			}
			continue
		}
		if v.Allowed != a.accepted {
			t.Errorf("%s: vigil allowed=%v %v, the kernel %s it (%s %s)", c.name, v.Allowed, v.Reasons, kernel, a.errno, a.message)
		}
		if v.Mode != "kernel" {
			t.Errorf("%s: vigil judged in mode %q", c.name, v.Mode)
		}
		if a.accepted {
			// A module the kernel verified carries no E taint; the MOK's
			// are out of tree (O).
			mod := strings.TrimSuffix(filepath.Base(c.dest), ".ko")
			line := moduleLine(procMods, mod)
			if line == "" || strings.Contains(line, "E)") || (mod != "dummy" && !strings.Contains(line, "(O)")) {
				t.Errorf("%s: /proc/modules %q, want taint (O) only for a MOK-signed module, none for Debian's", c.name, line)
			}
		}
	}
	t.Logf("total %s", time.Since(t0).Round(100*time.Millisecond))
}

// fileVerdict is one file's line of vigil verify -o json.
type fileVerdict struct {
	Path    string   `json:"path"`
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
	Mode    string   `json:"mode"`
}

// vigilVerify runs vigil verify --mode kernel -o json with args and
// returns the verdicts by file base name.
func vigilVerify(t *testing.T, vigil string, args []string) map[string]fileVerdict {
	t.Helper()
	vout, err := exec.Command(vigil, append([]string{"verify", "--mode", "kernel", "-o", "json"}, args...)...).Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("vigil verify: %v: %s", err, vout)
	}
	out := map[string]fileVerdict{}
	sc := bufio.NewScanner(bytes.NewReader(vout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v fileVerdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("vigil verify output %q: %v", sc.Text(), err)
		}
		out[filepath.Base(v.Path)] = v
	}
	return out
}

func moduleLine(procModules, name string) string {
	for _, l := range strings.Split(procModules, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

// compress writes in compressed by tool (xz, zstd, gzip and options)
// to out.
func compress(t *testing.T, tool []string, in, out string) {
	t.Helper()
	b, err := exec.Command(tool[0], append(tool[1:], "-c", in)...).Output()
	if err != nil {
		t.Fatalf("%v -c %s: %v", tool, in, err)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// kernelConfig is KEY's value in the artifacts kernel's config ("" when
// unset).
func kernelConfig(t *testing.T, p Parts, key string) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(p.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "..", "..", "..", "boot", "config-"+p.Release))
	if err != nil {
		t.Fatalf("the kernel's config: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}
