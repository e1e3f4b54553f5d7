package evidence

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/eventlog/eventlogtest"
	"github.com/vigil-attest/vigil/ima/imatest"
)

// TestAttestedBootFacts: the facts derived from real firmware logs that
// replay to the quote, and the logs that do not count as a measured boot.
func TestAttestedBootFacts(t *testing.T) {
	t.Run("keylime: Fedora shim and grub, Secure Boot off", func(t *testing.T) {
		fx := newFixture(t, fixtureOptions{alg: akECDSA, logs: true})
		r := verify(t, fx.ev, fx.opts)
		wantValid(t, r)
		b := r.Attested.Boot
		if !r.EventLogVerified || b == nil {
			t.Fatalf("not verified: %s", r.EventLogDetail)
		}
		if b.SecureBoot || !b.SecureBootMeasured || b.SetupMode {
			t.Errorf("secure boot %v measured %v setup %v", b.SecureBoot, b.SecureBootMeasured, b.SetupMode)
		}
		for _, n := range []string{"PK", "KEK", "db", "dbx"} {
			if v := b.Variables[n]; v == nil || v.Entries == 0 || v.Malformed || len(v.SHA256) != 64 {
				t.Errorf("variable %s = %+v", n, v)
			}
		}
		if len(b.Variables["dbx"].Hashes) == 0 || len(b.Variables["db"].Certificates) == 0 {
			t.Errorf("dbx hashes %d, db certificates %d", len(b.Variables["dbx"].Hashes), len(b.Variables["db"].Certificates))
		}
		if len(b.BootApplications) != 3 {
			t.Fatalf("boot applications %+v", b.BootApplications)
		}
		if !b.CmdlineMeasured || !strings.HasPrefix(b.KernelCmdline, "(hd3,gpt2)/vmlinuz-6.11.5-300.fc41") {
			t.Errorf("cmdline %q", b.KernelCmdline)
		}
		// grub started the kernel without LoadImage: PCR 4 holds no
		// kernel.
		if b.Kernel != nil {
			t.Errorf("kernel %+v", b.Kernel)
		}
		if b.Shim == nil || !b.Shim.PCR14 || b.Shim.MokList == "" || b.Shim.MokListX == "" || b.Shim.MokListTrusted == "" || b.Shim.SbatLevel == "" {
			t.Errorf("shim %+v", b.Shim)
		}
		for _, a := range b.Authorities {
			if a.Name == "SbatLevel" {
				t.Error("SbatLevel counted as an authority")
			}
		}
		if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}; !slices.Equal(b.PCRs, want) {
			t.Errorf("pcrs %v, want %v", b.PCRs, want)
		}
	})

	// A log that replays to the quote but is not a firmware's measured
	// boot does not verify: the evidence stays valid, the boot facts
	// absent, the detail says why.
	notBoot := []struct {
		name   string
		log    func(t *testing.T) []byte
		detail string
	}{
		{"truncated real log: only PCR 7's separator", func(t *testing.T) []byte { return readEventLog(t, "sb_cert_eventlog") }, "PCR 0 has no separator"},
		{"only the Spec ID event", func(t *testing.T) []byte { return specIDOnly(t) }, "extends no boot PCR"},
		{"a separator of value 1", func(t *testing.T) []byte {
			return rewriteSeparator(t, readEventLog(t, eventLogName), 3, []byte{1, 0, 0, 0})
		}, "PCR 3's separator is error"},
		{"PCR 0's separator first", func(t *testing.T) []byte {
			return firmwareless(t, readEventLog(t, eventLogName))
		}, "PCR 0 holds no firmware measurement"},
	}
	for _, c := range notBoot {
		t.Run(c.name, func(t *testing.T) {
			log := c.log(t)
			f := newFakeTPM(t, "agent-a", akECDSA)
			f.setLogPCRs(t, log, nil, 0)
			ev, err := Build(context.Background(), f, BuildOptions{Nonce: testNonce, Report: testReport(t, "agent-a"), EventLog: log})
			if err != nil {
				t.Fatal(err)
			}
			o := Options{Nonce: testNonce, AK: f.ak.Public()}
			r := verify(t, ev, o)
			wantValid(t, r)
			if r.EventLogVerified || r.Attested.Boot != nil || !strings.Contains(r.EventLogDetail, c.detail) {
				t.Fatalf("verified %v, detail %q, want %q", r.EventLogVerified, r.EventLogDetail, c.detail)
			}
		})
	}
}

// specIDOnly is a crypto-agile log holding only its Spec ID event: the
// keylime log cut after its first event.
func specIDOnly(t *testing.T) []byte {
	t.Helper()
	full := readEventLog(t, eventLogName)
	_, end := eventBounds(t, full, 0)
	return bytes.Clone(full[:end])
}

// eventBounds returns where event i of a crypto-agile log starts and
// ends, by parsing growing prefixes.
func eventBounds(t *testing.T, log []byte, i int) (int, int) {
	t.Helper()
	prev := 0
	n := 0
	for end := 1; end <= len(log); end++ {
		l, err := eventlog.Parse(log[:end])
		if err != nil || len(l.Events) != n+1 {
			continue
		}
		if n == i {
			return prev, end
		}
		prev, n = end, n+1
	}
	t.Fatalf("no event %d", i)
	return 0, 0
}

// rewriteSeparator replaces the data of PCR pcr's separator, with
// digests to match, so that the log still replays.
func rewriteSeparator(t *testing.T, log []byte, pcr uint32, data []byte) []byte {
	t.Helper()
	l, err := eventlog.Parse(log)
	if err != nil {
		t.Fatal(err)
	}
	return rebuild(t, log, l, func(ev *eventlog.Event) bool {
		if ev.Type == eventlog.EvSeparator && ev.PCR == pcr {
			ev.Data = data
			return true
		}
		return false
	})
}

// rebuild encodes a crypto-agile log again after edit changed its events
// (the Spec ID event is kept as it was). An event edit reports as
// changed gets digests of its new data in every bank.
func rebuild(t *testing.T, orig []byte, l *eventlog.Log, edit func(*eventlog.Event) bool) []byte {
	t.Helper()
	_, end := eventBounds(t, orig, 0)
	out := bytes.Clone(orig[:end])
	le32 := func(v uint32) { out = binary.LittleEndian.AppendUint32(out, v) }
	for i := 1; i < len(l.Events); i++ {
		e := l.Events[i]
		e.Data = bytes.Clone(e.Data)
		e.Digests = slices.Clone(e.Digests)
		if edit(&e) {
			for j, d := range e.Digests {
				h := d.Alg.New()
				h.Write(e.Data)
				e.Digests[j].Value = h.Sum(nil)
			}
		}
		le32(e.PCR)
		le32(uint32(e.Type))
		le32(uint32(len(e.Digests)))
		for _, d := range e.Digests {
			out = binary.LittleEndian.AppendUint16(out, uint16(d.Alg))
			out = append(out, d.Value...)
		}
		le32(uint32(len(e.Data)))
		out = append(out, e.Data...)
	}
	return out
}

// firmwareless moves PCR 0's separator before PCR 0's other events.
func firmwareless(t *testing.T, log []byte) []byte {
	t.Helper()
	l, err := eventlog.Parse(log)
	if err != nil {
		t.Fatal(err)
	}
	return rebuild(t, log, l, func(ev *eventlog.Event) bool {
		if ev.PCR == 0 && ev.Type != eventlog.EvNoAction && ev.Type != eventlog.EvSeparator {
			ev.PCR = 1
		}
		return false
	})
}

// FuzzAttestedBoot: deriving boot facts from any log that parses never
// panics, and the facts hold together: the kernel is one of the boot
// applications, every digest is SHA-256 hex, the facts encode as JSON.
// Seeded with the real logs and the firmware-like Debian log.
func FuzzAttestedBoot(f *testing.F) {
	for _, n := range []string{"keylime_binary_bios_measurements", "sb_cert_eventlog", "crypto_agile_eventlog",
		"ubuntu_2104_shielded_vm_no_secure_boot_eventlog", "coreos_36_shielded_vm_no_secure_boot_eventlog"} {
		f.Add(readEventLog(f, n))
	}
	f.Add(eventlogtest.Debian().Log())
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := eventlog.Parse(b)
		if err != nil {
			return
		}
		s := l.Summarize()
		_ = firmwareStructure(l, s)
		bf := deriveBoot(b, l, s, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
		if bf.Kernel != nil && !slices.Contains(bf.BootApplications, *bf.Kernel) {
			t.Fatalf("kernel %+v is no boot application", bf.Kernel)
		}
		for _, a := range bf.BootApplications {
			if len(a.SHA256) != 64 {
				t.Fatalf("boot application digest %q", a.SHA256)
			}
		}
		if _, err := json.Marshal(bf); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAttestedIMAFacts: the modules and firmware an IMA list measured,
// the file list on request, boot_aggregate against the quoted PCRs, and
// the cache giving the same boot facts.
func TestAttestedIMAFacts(t *testing.T) {
	debian := eventlogtest.Debian()
	log := debian.Log()
	list := imatest.Boot(30, debian.BootPCRs(), "/lib/modules/6.1.0-28-amd64/kernel/fs/fuse/fuse.ko",
		"/lib/modules/6.1.0-28-amd64/kernel/drivers/net/wireguard/wire-guard.ko.xz", "/lib/firmware/i915/tgl_dmc.bin")
	f := newFakeTPM(t, "agent-a", akECDSA)
	f.setLogPCRs(t, log, list, len(list))
	ev, err := Build(context.Background(), f, BuildOptions{Nonce: testNonce, Report: testReport(t, "agent-a"), EventLog: log, IMALog: list})
	if err != nil {
		t.Fatal(err)
	}
	cache := NewCache(4)
	o := Options{Nonce: testNonce, AK: f.ak.Public(), IMAFiles: true, Cache: cache}
	r := verify(t, ev, o)
	wantValid(t, r)
	im := r.Attested.IMA
	if im == nil || !slices.Equal(im.Modules, []string{"fuse", "wire_guard"}) || !slices.Equal(im.Firmware, []string{"/lib/firmware/i915/tgl_dmc.bin"}) {
		t.Fatalf("IMA facts %+v", im)
	}
	if !im.BootAggregateMatches || im.Entries != 33 || len(im.Files) != 33 {
		t.Fatalf("boot aggregate %v, entries %d, files %d", im.BootAggregateMatches, im.Entries, len(im.Files))
	}
	if fl := im.Files[len(im.Files)-1]; fl.Path != "/lib/firmware/i915/tgl_dmc.bin" || !strings.HasPrefix(fl.Digest, "sha256:") || fl.Template != "ima-ng" {
		t.Fatalf("file %+v", fl)
	}
	b := r.Attested.Boot
	if b == nil || !b.SecureBoot || b.Kernel == nil || b.Kernel.Authority != "Shim" || !b.Initrd || b.Shim == nil || !b.Shim.PCR14 {
		t.Fatalf("boot facts %+v", b)
	}
	// The cache gives the same facts; without the file list asked, none.
	o.IMAFiles = false
	r2 := verify(t, ev, o)
	if r2.Attested.Boot != b || len(r2.Attested.IMA.Files) != 0 {
		t.Fatal("the cache did not give the same boot facts, or files were listed unasked")
	}
	// Another boot's IMA list (its boot_aggregate over other PCRs).
	other := eventlogtest.Debian()
	other.SecureBoot = false
	list2 := imatest.Boot(30, other.BootPCRs())
	f.setLogPCRs(t, log, list2, len(list2))
	ev2, err := Build(context.Background(), f, BuildOptions{Nonce: testNonce, Report: testReport(t, "agent-a"), EventLog: log, IMALog: list2})
	if err != nil {
		t.Fatal(err)
	}
	r3 := verify(t, ev2, o)
	wantValid(t, r3)
	if r3.Attested.IMA == nil || r3.Attested.IMA.BootAggregateMatches {
		t.Fatal("another boot's IMA list matches this boot")
	}
	for _, c := range []struct{ path, want string }{
		{"/lib/modules/x/kernel/fs/fuse/fuse.ko", "fuse"}, {"a/b/nf-tables.ko.zst", "nf_tables"},
		{"/x/y.ko.gz", "y"}, {"/x/.ko", ""}, {"/usr/bin/ko", ""}, {"/x/y.kob", ""}, {"", ""},
	} {
		if got := ModuleName(c.path); got != c.want {
			t.Errorf("ModuleName(%q) = %q, want %q", c.path, got, c.want)
		}
	}
}
