package appraise_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/vigil-attest/vigil/appraise"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/eventlog/eventlogtest"
	"github.com/vigil-attest/vigil/evidence"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/testhost"
	"github.com/vigil-attest/vigil/internal/testpe"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

// lie is one way a host misrepresents itself, played against the real
// parts: swtpm extended as the firmware and the kernel extend it, the
// stock measurer over a fixture tree, the verifier and the default
// policy. Each lie asserts the level cap and the exact reason codes.
type lie struct {
	name string
	// boot is what the firmware measured (default eventlogtest.Debian()).
	boot func(b *eventlogtest.Boot)
	// modules are loaded after boot: IMA measures each (a path), whatever
	// the module views then show.
	modules []string
	// host is what the kernel shows the measurer.
	host func(h *testhost.Host, log []byte)
	// report rewrites the report the agent signs (its JSON members).
	report func(r map[string]any)
	// evidence changes what the agent sends.
	evidence func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions)
	level    int
	reasons  map[string]int // reason → the level it blocks
}

func TestLyingHost(t *testing.T) {
	lies := []lie{
		{name: "honest host", level: 3,
			reasons: map[string]int{"lockdown-below-confidentiality": 4, "no-reference-values": 4}},

		// Boot claims the verified log contradicts.
		{name: "report says Secure Boot on, the log off", level: 0,
			boot:    func(b *eventlogtest.Boot) { b.SecureBoot = false },
			reasons: map[string]int{"secure-boot-contradicted": 1, "secure-boot-off": 3}},
		{name: "report's boot applications are not the log's", level: 0,
			host: func(h *testhost.Host, _ []byte) {
				other := eventlogtest.Debian()
				other.Apps[1].SHA256 = bytes.Repeat([]byte{0x42}, 32)
				h.EventLog = other.Log()
			},
			reasons: map[string]int{"boot-application-contradicted": 1}},
		{name: "kernel command line is not the measured one", level: 0,
			host:    func(h *testhost.Host, _ []byte) { h.Cmdline += " module.sig_enforce=0" },
			reasons: map[string]int{"cmdline-contradicted": 1}},
		{name: "measured lockdown=confidentiality, report integrity", level: 0,
			boot:    func(b *eventlogtest.Boot) { b.KernelCmdline += " lockdown=confidentiality" },
			reasons: map[string]int{"lockdown-contradicted": 1}},
		{name: "measured module.sig_enforce=1, report off", level: 0,
			host: func(h *testhost.Host, _ []byte) {
				// The running kernel shows neither the parameter nor
				// enforcement.
				h.Cmdline = strings.Replace("BOOT_IMAGE="+eventlogtest.DebianCmdline, " module.sig_enforce=1", "", 1)
				h.SigEnforce = "N"
			},
			reasons: map[string]int{"sig-enforce-contradicted": 1, "cmdline-contradicted": 1, "sig-enforce-off": 3}},

		// The boot itself.
		{name: "PCR 4 holds no kernel (OVMF's -kernel fallback)", level: 2,
			boot:    func(b *eventlogtest.Boot) { b.Apps = b.Apps[:2] },
			reasons: map[string]int{"kernel-unmeasured": 3}},
		{name: "a boot image no authority verified", level: 2,
			boot:    func(b *eventlogtest.Boot) { b.Apps[0].Authority = nil },
			reasons: map[string]int{"boot-binary-unverified": 3}},
		{name: "the kernel's digest is in the measured dbx", level: 0,
			boot: func(b *eventlogtest.Boot) {
				b.DBX = dbxWith(t, b.DBX, b.Apps[2].SHA256)
			},
			reasons: map[string]int{"revoked-boot-binary": 1}},
		{name: "OVMF's placeholder dbx (the SHA-256 of nothing) is not current", level: 2,
			boot: func(b *eventlogtest.Boot) {
				b.DBX = dbxWith(t, nil, sha256Of(nil))
			},
			reasons: map[string]int{"dbx-outdated": 3}},
		{name: "setup mode: no PK measured", level: 2,
			boot:    func(b *eventlogtest.Boot) { b.PK = nil },
			reasons: map[string]int{"secure-boot-setup-mode": 3}},
		{name: "a log without separators is no boot", level: 2,
			boot:    func(b *eventlogtest.Boot) { b.OmitSeparators = []int{0, 1, 2, 3, 4, 5, 6, 7} },
			reasons: map[string]int{"event-log-not-verified": 3}},

		// The quote selection.
		{name: "only the resettable PCR 16 quoted", level: 0,
			evidence: func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions) {
				bo.PCRs = map[string][]int{"sha256": {16}}
			},
			reasons: map[string]int{"pcr-selection-insufficient": 1}},
		{name: "only PCR 23 quoted, no IMA list", level: 0,
			evidence: func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions) {
				bo.PCRs, bo.IMALog = map[string][]int{"sha256": {23}}, nil
			},
			reasons: map[string]int{"pcr-selection-insufficient": 1}},
		{name: "boot PCRs quoted without shim's PCR 14", level: 0,
			evidence: func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions) {
				bo.PCRs = map[string][]int{"sha256": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
			},
			reasons: map[string]int{"pcr-selection-insufficient": 1}},
		{name: "a PCR extended behind the log's back", level: 0,
			evidence: func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions) {
				if err := e.PCRExtend(context.Background(), "sha256", 4, bytes.Repeat([]byte{7}, 32)); err != nil {
					t.Fatal(err)
				}
			},
			reasons: map[string]int{"event-log-mismatch": 1}},

		// IMA.
		{name: "IMA list truncated", level: 0,
			evidence: func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions) {
				bo.IMALog = dropLast(t, bo.IMALog, 2)
			},
			reasons: map[string]int{"ima-mismatch": 1}},
		{name: "IMA list missing while the report says active", level: 3,
			host:     func(h *testhost.Host, _ []byte) {},
			evidence: func(t *testing.T, e *tpm.Enclave, bo *evidence.BuildOptions) { bo.IMALog = nil },
			reasons:  map[string]int{"ima-not-verified": 4}},
		{name: "a module measured at load and missing from every view", level: 0,
			modules: []string{"/lib/modules/6.1.0-28-amd64/updates/reptile.ko"},
			reasons: map[string]int{"ima-module-unlisted": 1}},
		// The Atsiv case as the real 6.1 kernel shows it (internal/testvm
		// TestRealAtsiv): loaded from outside /lib/modules, list_del'd
		// and kobject_del'd, so in no list; IMA measured the load.
		{name: "Atsiv: a MOK-signed module hidden from every list, its load in the IMA list", level: 0,
			modules: []string{"/root/atsiv_kobj.ko"},
			host: func(h *testhost.Host, _ []byte) {
				h.KernelViews = true
				h.Modules = append(h.Modules, testhost.Module{Name: "atsiv_kobj", Size: 16384, Taint: "O", Hide: []string{"proc_modules", "sysfs", "kallsyms", "btf"}})
			},
			reasons: map[string]int{"ima-module-unlisted": 1, "hidden-module": 1}},
		{name: "Atsiv, and the report lies: no hidden module, no allocations surplus", level: 0,
			modules: []string{"/root/atsiv_kobj.ko"},
			host: func(h *testhost.Host, _ []byte) {
				h.KernelViews = true
				h.Modules = append(h.Modules, testhost.Module{Name: "atsiv_kobj", Size: 16384, Taint: "O", Hide: []string{"proc_modules", "sysfs", "kallsyms", "btf"}})
			},
			report: func(r map[string]any) {
				m := r["modules"].(map[string]any)
				m["hidden"] = []any{}
				al := m["allocations"].(map[string]any)
				al["count"], al["unlisted"], al["unlisted_sizes"] = al["listed"], 0, []any{}
			},
			reasons: map[string]int{"ima-module-unlisted": 1}},
		{name: "a hidden module's load in the IMA list, the report's module list unavailable", level: 0,
			modules: []string{"/root/atsiv_kobj.ko"},
			report: func(r map[string]any) {
				m := r["modules"].(map[string]any)
				m["status"], m["error"], m["loaded"] = "unavailable", "open /proc/modules: permission denied", []any{}
			},
			reasons: map[string]int{"ima-module-unlisted": 1, "measurement-error": 3}},

		// A report outside the schema: statuses outside the enum, null
		// or absent sections. The decoder refuses them (the first case
		// re-encodes the report unchanged: the rewriting alone is fine).
		{name: "report re-encoded unchanged", level: 3,
			report:  func(r map[string]any) {},
			reasons: map[string]int{"lockdown-below-confidentiality": 4}},
		{name: "IMA status \"OK\" (not in the enum)", level: 0,
			report:  func(r map[string]any) { r["ima"].(map[string]any)["status"] = "OK" },
			reasons: map[string]int{"report-malformed": 1}},
		{name: "lockdown \"Confidentiality\"", level: 0,
			report:  func(r map[string]any) { r["enforcement"].(map[string]any)["lockdown"] = "Confidentiality" },
			reasons: map[string]int{"report-malformed": 1}},
		{name: "debug status \"fine\"", level: 0,
			report:  func(r map[string]any) { r["debug"].(map[string]any)["status"] = "fine" },
			reasons: map[string]int{"report-malformed": 1}},
		{name: "a null IMA section", level: 0,
			report:  func(r map[string]any) { r["ima"] = nil },
			reasons: map[string]int{"report-malformed": 1}},
		{name: "no measured_boot section", level: 0,
			report:  func(r map[string]any) { delete(r, "measured_boot") },
			reasons: map[string]int{"report-malformed": 1}},
		{name: "a null module list", level: 0,
			report:  func(r map[string]any) { r["modules"].(map[string]any)["loaded"] = nil },
			reasons: map[string]int{"report-malformed": 1}},
		{name: "an unknown section", level: 0,
			report:  func(r map[string]any) { r["attested"] = map[string]any{"secure_boot": true} },
			reasons: map[string]int{"report-malformed": 1}},

		// Boot files the host's own firmware and shim would refuse.
		{name: "an unsigned boot file on the ESP", level: 2,
			host: func(h *testhost.Host, _ []byte) {
				b, err := os.ReadFile(testpe.Build(t, "amd64"))
				if err != nil {
					t.Fatal(err)
				}
				h.Files["/boot/efi/EFI/evil/evil.efi"] = b
			},
			reasons: map[string]int{"boot-file-not-allowed": 3}},

		// Machine owner keys.
		{name: "a MOK certificate the policy does not approve", level: 2,
			host: func(h *testhost.Host, _ []byte) {
				attacker := eventlogtest.DebianCerts().PK.Cert // any certificate not approved
				setMokList(t, h, attacker.Raw)
			},
			reasons: map[string]int{"mok-not-approved": 3}},
		// Debian 12's shim logs its vendor certificate's use as a
		// MokListRT authority (issue 11's real boot), as it would an
		// enrolled key: the policy cannot approve it from the log, and
		// the operator lists it in reference.mok_certificates.
		{name: "shim logs its vendor certificate as MokListRT: not approved by itself", level: 2,
			boot: func(b *eventlogtest.Boot) { b.Apps[1].Authority.Name = "MokListRT" },
			host: func(h *testhost.Host, _ []byte) {
				setMokList(t, h, eventlogtest.DebianCerts().Vendor.Cert.Raw)
			},
			reasons: map[string]int{"mok-not-approved": 3}},
		{name: "shim's vendor certificate in MokListRT is approved by the attested Shim authority", level: 3,
			host: func(h *testhost.Host, _ []byte) {
				setMokList(t, h, eventlogtest.DebianCerts().Vendor.Cert.Raw)
			},
			reasons: map[string]int{"lockdown-below-confidentiality": 4}},

		// The module views.
		{name: "module tainted unsigned by the kernel, its file signed", level: 0,
			host: func(h *testhost.Host, _ []byte) {
				h.Modules[0].Taint = "E"
				h.Tainted |= 1 << 13
			},
			reasons: map[string]int{"module-taint-contradicted": 1, "unsigned-module": 3}},
	}
	a := defaultAppraiser(t)
	for _, c := range lies {
		t.Run(c.name, func(t *testing.T) {
			b := eventlogtest.Debian()
			if c.boot != nil {
				c.boot(&b)
			}
			mods := append([]string{"/lib/modules/6.1.0-28-amd64/kernel/net/netfilter/nf_tables.ko", "/lib/modules/6.1.0-28-amd64/misc/vboxguest.ko.xz"}, c.modules...)
			_, e, log, list := firmwareBoot(t, b, 40, mods...)
			h := healthyHost(t)
			h.Cmdline = "BOOT_IMAGE=" + b.KernelCmdline
			h.EventLog = log
			h.Files[testhost.IMAListPath] = list
			if c.host != nil {
				c.host(h, log)
			}
			bo := evidence.BuildOptions{Nonce: nonce, Report: measureHost(t, h, engine(t, "")), EventLog: log, IMALog: list}
			if c.report != nil {
				bo.Report = rewriteReport(t, bo.Report, c.report)
			}
			if c.evidence != nil {
				c.evidence(t, e, &bo)
			}
			out := appraiseOK(t, a, &appraise.Request{Agent: tpmAgent(e), Nonce: nonce, Evidence: build(t, e, bo)})
			if out.Level != c.level {
				t.Errorf("level %d, want %d; failures:\n%s", out.Level, c.level, failureSet(out))
			}
			for r, l := range c.reasons {
				if !hasFailure(out, r, l) {
					t.Errorf("no failure %s at level %d; failures:\n%s", r, l, failureSet(out))
				}
			}
			for _, f := range out.Failures {
				if f.Detail == "" {
					t.Errorf("failure without a detail: %+v", f)
				}
			}
			if c.name == "honest host" {
				want := map[string]string{"secure_boot": "attested", "dbx": "attested", "boot_binaries": "attested",
					"kernel_cmdline": "attested", "ima": "attested", "lockdown": "corroborated", "sig_enforce": "corroborated",
					"modules": "corroborated", "processes": "asserted"}
				for k, v := range want {
					if out.Provenance[k] != v {
						t.Errorf("provenance %s = %q, want %q (%v)", k, out.Provenance[k], v, out.Provenance)
					}
				}
			}
		})
	}
}

// TestLyingHostReboot: the appraisal state follows the boot. A reboot
// between two rounds, with the IMA list read from the old boot's offset,
// is detected from the quote (the TPM's reset count), judged without the
// list, and the next round's list from 0 brings the host back; an IMA
// failure without a reboot is level 0 once and recovers the round after.
func TestLyingHostReboot(t *testing.T) {
	outer := t
	a := defaultAppraiser(t)
	b := eventlogtest.Debian()
	mods := []string{"/lib/modules/6.1.0-28-amd64/kernel/net/netfilter/nf_tables.ko", "/lib/modules/6.1.0-28-amd64/misc/vboxguest.ko"}
	sw, e, log, list := firmwareBoot(t, b, 80, mods...)
	h := healthyHost(t)
	h.EventLog = log
	h.Files[testhost.IMAListPath] = list
	report := measureHost(t, h, engine(t, ""))
	agent := tpmAgent(e)
	round := func(t *testing.T, e *tpm.Enclave, st []byte, bo evidence.BuildOptions) *appraise.Outcome {
		t.Helper()
		bo.Nonce, bo.Report = nonce, report
		return appraiseOK(t, a, &appraise.Request{Agent: agent, Nonce: nonce, Evidence: build(t, e, bo), State: st})
	}
	out := round(t, e, nil, evidence.BuildOptions{EventLog: log, IMALog: list})
	if out.Level != 3 || !out.Verification.IMAVerified {
		t.Fatalf("round 1: level %d\n%s", out.Level, failureSet(out))
	}
	st := out.State
	off := appraise.IMAOffset(st)

	for _, c := range []struct {
		name string
		// list is the new boot's IMA list (n entries).
		n int
	}{{"reboot, a longer IMA list", 120}, {"reboot, a shorter IMA list", 30}} {
		t.Run(c.name, func(t *testing.T) {
			sw.Restart()
			e2 := openTPM(outer, sw)
			log2 := b.Log()
			testtpm.ExtendEventLog(t, e2, log2)
			list2 := imatest.Boot(c.n, bootPCRs(b), mods...)
			testtpm.ExtendIMA(t, e2, list2)
			// The agent reads the new list from the old boot's offset
			// and leaves out the log (its digest is the saved one).
			tail := []byte{}
			if int(off) < len(list2) {
				tail = list2[off:]
			}
			out := round(t, e2, st, evidence.BuildOptions{IMALog: tail, IMAOffset: off})
			if out.Level != 3 || !hasFailure(out, "ima-not-verified", 4) || !strings.Contains(failureSet(out), "a new boot") {
				t.Fatalf("round after the reboot: level %d\n%s", out.Level, failureSet(out))
			}
			if appraise.IMAOffset(out.State) != 0 {
				t.Fatalf("the IMA replay does not restart: offset %d", appraise.IMAOffset(out.State))
			}
			// The next round sends the list whole, and IMA verifies.
			out = round(t, e2, out.State, evidence.BuildOptions{IMALog: list2})
			if out.Level != 3 || !out.Verification.IMAVerified || hasFailure(out, "ima-not-verified", 4) {
				t.Fatalf("second round after the reboot: level %d\n%s", out.Level, failureSet(out))
			}
			st, off, e = out.State, appraise.IMAOffset(out.State), e2
		})
	}

	t.Run("reboot, an identical IMA list", func(t *testing.T) {
		sw.Restart()
		e2 := openTPM(outer, sw)
		testtpm.ExtendEventLog(t, e2, b.Log())
		list2 := imatest.Boot(30, bootPCRs(b), mods...)
		testtpm.ExtendIMA(t, e2, list2)
		// Nothing new after the saved offset: the new boot's PCR 10 is
		// the old one, and the saved replay still holds.
		out := round(t, e2, st, evidence.BuildOptions{IMALog: []byte{}, IMAOffset: off})
		if out.Level != 3 || !out.Verification.IMAVerified {
			t.Fatalf("level %d\n%s", out.Level, failureSet(out))
		}
		st, e = out.State, e2
	})

	t.Run("an IMA failure without a reboot recovers next round", func(t *testing.T) {
		cur := imatest.Boot(30, bootPCRs(b), mods...)
		extra := bytes.Clone(cur)
		for i := 2000; i < 2015; i++ {
			r := imatest.Record(i)
			var err error
			if extra, err = ima.AppendBinary(extra, &r); err != nil {
				t.Fatal(err)
			}
		}
		testtpm.ExtendIMA(t, e, extra[len(cur):])
		bad := bytes.Clone(extra[len(cur):])
		bad[len(bad)-1] ^= 1
		out := round(t, e, st, evidence.BuildOptions{IMALog: bad, IMAOffset: int64(len(cur))})
		if out.Level != 0 || !(hasFailure(out, "ima-mismatch", 1) || hasFailure(out, "ima-malformed", 1)) || out.State == nil || appraise.IMAOffset(out.State) != 0 {
			t.Fatalf("tampered increment: level %d, state %s\n%s", out.Level, out.State, failureSet(out))
		}
		out = round(t, e, out.State, evidence.BuildOptions{IMALog: extra})
		if out.Level != 3 || !out.Verification.IMAVerified {
			t.Fatalf("the round after: level %d\n%s", out.Level, failureSet(out))
		}
	})
}

// dbxWith is dbx with one more EFI_CERT_SHA256 list holding hash.
func dbxWith(t *testing.T, dbx, hash []byte) []byte {
	t.Helper()
	out, err := efi.AppendSignatureLists(bytes.Clone(dbx), efi.HashList(efi.CertSHA256, efi.GUID{1}, hash))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dropLast is a binary IMA list without its last n entries.
func dropLast(t *testing.T, list []byte, n int) []byte {
	t.Helper()
	var ends []int64
	p := ima.NewParser(bytes.NewReader(list), ima.Options{})
	for {
		if _, err := p.Next(); err != nil {
			break
		}
		ends = append(ends, p.Offset())
	}
	if len(ends) <= n {
		t.Fatalf("the list has %d entries", len(ends))
	}
	return bytes.Clone(list[:ends[len(ends)-1-n]])
}

// rewriteReport applies edit to a report's JSON members and encodes it
// canonically again (RFC 8785), as an agent that lies would sign it.
func rewriteReport(t *testing.T, report []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(report, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jcs.Transform(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// setMokList gives the host shim's MokListRT (and MokListTrustedRT) with
// the certificates ders.
func setMokList(t *testing.T, h *testhost.Host, ders ...[]byte) {
	t.Helper()
	var lists []efi.SignatureList
	for _, d := range ders {
		lists = append(lists, efi.X509List(efi.MustParseGUID("605dab50-e046-4300-abb6-3dd810dd8b23"), d))
	}
	data, err := efi.AppendSignatureLists(nil, lists...)
	if err != nil {
		t.Fatal(err)
	}
	const rt = efi.BootServiceAccess | efi.RuntimeAccess
	h.EFIVars[efi.MokListRT] = efi.Variable{Attributes: rt, Data: data}
	h.EFIVars[efi.MokListTrustedRT] = efi.Variable{Attributes: rt, Data: []byte{1}}
}
