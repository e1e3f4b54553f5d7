package eventlog_test

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/hex"
	"maps"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/vigil-attest/vigil/eventlog"
)

// Facts read once from each real log (by hand, with tpm2_eventlog's YAML
// beside; TestRealLogsAgainstTPM2Tools cross-checks the counts it prints).
var realFacts = map[string]struct {
	format      eventlog.Format
	events      int
	banks       []eventlog.Alg
	secureBoot  bool
	sbVars      []string // names of PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG events
	apps        []string // file paths of boot applications ("" when none)
	cmdline     string   // last kernel command line ("" when none)
	grubCmds    int
	grubFiles   int
	shim        []string // shim event names
	authorities []string
	actions     []string
	separators  map[uint32]eventlog.SeparatorStatus
}{
	"coreos_36_shielded_vm_no_secure_boot_eventlog": {
		format: eventlog.FormatCryptoAgile, events: 76,
		banks:      []eventlog.Alg{eventlog.AlgSHA1, eventlog.AlgSHA256, eventlog.AlgSHA384},
		secureBoot: false, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:     []string{`\EFI\fedora\shimx64.efi`, `\EFI\fedora\grubx64.efi`},
		cmdline:  "(hd0,gpt3)/ostree/fedora-coreos-28f8e018c4312083b210ce13c9fdab9dcb7883a0200802dca4eeddc1030eb715/vmlinuz-5.18.13-200.fc36.x86_64 mitigations=auto,nosmt console=tty0 console=ttyS0,115200n8 ignition.firstboot ostree=/ostree/boot.1/fedora-coreos/28f8e018c4312083b210ce13c9fdab9dcb7883a0200802dca4eeddc1030eb715/0 ignition.platform.id=gcp",
		grubCmds: 36, grubFiles: 8,
		shim:        []string{"MokList", "MokListX", "SbatLevel", "MokListTrusted", "MokListTrusted"},
		authorities: []string{"SbatLevel", "MokListTrusted"},
		actions:     []string{"Calling EFI Application from Boot Option", "Exit Boot Services Invocation", "Exit Boot Services Returned with Success"},
		separators:  firmwareSeparatorsOK(),
	},
	"crypto_agile_eventlog": {
		format: eventlog.FormatCryptoAgile, events: 27,
		banks:      []eventlog.Alg{eventlog.AlgSHA256},
		secureBoot: false, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:        []string{"", `\EFI\centos\grubx64.efi`},
		shim:        []string{},
		authorities: []string{},
		actions:     []string{},
		separators:  firmwareSeparatorsOK(),
	},
	"ebs_event_missing_eventlog": {
		format: eventlog.FormatTCG12, events: 38,
		banks:      []eventlog.Alg{eventlog.AlgSHA1},
		secureBoot: false, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:        []string{`\EFI\debian\grubx64.efi`},
		shim:        []string{},
		authorities: []string{},
		// The log's point: ExitBootServices was never logged.
		actions:    []string{"Calling EFI Application from Boot Option"},
		separators: firmwareSeparatorsOK(),
	},
	"keylime_binary_bios_measurements": {
		format: eventlog.FormatCryptoAgile, events: 121,
		banks:      []eventlog.Alg{eventlog.AlgSHA1, eventlog.AlgSHA256},
		secureBoot: false, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:     []string{"", `\EFI\fedora\shimx64.efi`, `\EFI\fedora\grubx64.efi`},
		cmdline:  "(hd3,gpt2)/vmlinuz-6.11.5-300.fc41.x86_64 root=UUID=7d3fbd01-5598-48ea-afb0-67ce7c3853fc ro resume=/dev/mapper/luks-d3f0adc4-c30b-4aad-aa80-b469c29bc160 rd.lvm.lv=fedora/root rd.luks.uuid=luks-d53e2fe9-cc84-4bad-b410-16d3a07d6071 rd.lvm.lv=fedora/swap rd.luks.uuid=luks-d3f0adc4-c30b-4aad-aa80-b469c29bc160 rhgb quiet",
		grubCmds: 52, grubFiles: 10,
		shim:        []string{"MokList", "MokListX", "SbatLevel", "MokListTrusted"},
		authorities: []string{"SbatLevel"},
		actions:     []string{"Calling EFI Application from Boot Option"},
		separators:  firmwareSeparatorsOK(),
	},
	"option_rom_eventlog": {
		format: eventlog.FormatTCG12, events: 61,
		banks:      []eventlog.Alg{eventlog.AlgSHA1},
		secureBoot: true, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:        []string{`\EFI\Microsoft\Boot\bootmgfw.efi`},
		shim:        []string{},
		authorities: []string{"db", "db"},
		actions:     []string{"Calling EFI Application from Boot Option", "Exit Boot Services Invocation", "Exit Boot Services Returned with Success"},
		// Windows' boot manager writes "WBCL" separators into 12 to 14.
		separators: func() map[uint32]eventlog.SeparatorStatus {
			m := firmwareSeparatorsOK()
			m[12], m[13], m[14] = eventlog.SeparatorOK, eventlog.SeparatorOK, eventlog.SeparatorOK
			return m
		}(),
	},
	"sb_cert_eventlog": {
		format: eventlog.FormatCryptoAgile, events: 15,
		banks:      []eventlog.Alg{eventlog.AlgSHA1, eventlog.AlgSHA256, eventlog.AlgSHA384},
		secureBoot: true, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:        []string{`\EFI\BOOT\BOOTX64.EFI`, "", ""},
		shim:        []string{"Shim", "Shim"},
		authorities: []string{"db", "Shim", "Shim"}, // go-attestation counts 3 post-separator authorities too
		actions:     []string{},
		separators:  map[uint32]eventlog.SeparatorStatus{7: eventlog.SeparatorOK},
	},
	"ubuntu_2104_shielded_vm_no_secure_boot_eventlog": {
		format: eventlog.FormatCryptoAgile, events: 106,
		banks:      []eventlog.Alg{eventlog.AlgSHA1, eventlog.AlgSHA256, eventlog.AlgSHA384},
		secureBoot: false, sbVars: []string{"SecureBoot", "PK", "KEK", "db", "dbx"},
		apps:     []string{`\EFI\ubuntu\shimx64.efi`, `\EFI\ubuntu\grubx64.efi`},
		cmdline:  "/boot/vmlinuz-5.11.0-1006-gcp root=PARTUUID=6443a6ae-e5e9-4df7-9a06-d1329e50f33c ro console=ttyS0 panic=-1",
		grubCmds: 66, grubFiles: 9,
		shim:        []string{"MokList", "MokListX", "SbatLevel"},
		authorities: []string{"SbatLevel"},
		actions:     []string{"Calling EFI Application from Boot Option", "Exit Boot Services Invocation", "Exit Boot Services Returned with Success"},
		separators:  firmwareSeparatorsOK(),
	},
}

func firmwareSeparatorsOK() map[uint32]eventlog.SeparatorStatus {
	m := map[uint32]eventlog.SeparatorStatus{}
	for i := uint32(0); i < 8; i++ {
		m[i] = eventlog.SeparatorOK
	}
	return m
}

func TestRealLogs(t *testing.T) {
	logDir(t)
	for _, name := range realLogs {
		t.Run(name, func(t *testing.T) {
			want, ok := realFacts[name]
			if !ok {
				t.Fatalf("no facts for %s", name)
			}
			l := mustParse(t, readLog(t, name))
			if l.Format != want.format || len(l.Events) != want.events || l.Padding != 0 {
				t.Errorf("format %s, %d events, padding %d; want %s, %d, 0", l.Format, len(l.Events), l.Padding, want.format, want.events)
			}
			if got := l.Banks(); !slices.Equal(got, want.banks) {
				t.Errorf("banks %v, want %v", got, want.banks)
			}
			for i, e := range l.Events {
				if e.Num != i {
					t.Fatalf("event %d numbered %d", i, e.Num)
				}
			}
			s := l.Summarize()
			if sb := s.SecureBoot(); sb == nil || *sb != want.secureBoot {
				t.Errorf("SecureBoot %v, want %v", sb, want.secureBoot)
			}
			var names []string
			for _, v := range s.SecureBootVariables {
				names = append(names, v.Name)
				if !v.Verified {
					t.Errorf("variable %s: data does not match its digests", v.Name)
				}
				if len(v.Digests) != len(want.banks) {
					t.Errorf("variable %s: %d digests", v.Name, len(v.Digests))
				}
			}
			if !slices.Equal(names, want.sbVars) {
				t.Errorf("Secure Boot variables %v, want %v", names, want.sbVars)
			}
			var apps []string
			for _, a := range s.BootApplications {
				apps = append(apps, a.Path)
				if len(a.Digests) != len(want.banks) {
					t.Errorf("boot application %q: %d digests", a.Path, len(a.Digests))
				}
			}
			if !slices.Equal(apps, want.apps) {
				t.Errorf("boot applications %q, want %q", apps, want.apps)
			}
			var last string
			if n := len(s.KernelCmdlines); n > 0 {
				last = s.KernelCmdlines[n-1]
			}
			if last != want.cmdline {
				t.Errorf("kernel command line %q, want %q", last, want.cmdline)
			}
			if len(s.GrubCommands) != want.grubCmds || len(s.GrubFiles) != want.grubFiles {
				t.Errorf("%d grub commands, %d files; want %d, %d", len(s.GrubCommands), len(s.GrubFiles), want.grubCmds, want.grubFiles)
			}
			names = []string{}
			for _, e := range s.ShimEvents {
				names = append(names, e.Name)
			}
			if !slices.Equal(names, want.shim) {
				t.Errorf("shim events %q, want %q", names, want.shim)
			}
			names = []string{}
			for _, e := range s.Authorities {
				names = append(names, e.Name)
			}
			if !slices.Equal(names, want.authorities) {
				t.Errorf("authorities %q, want %q", names, want.authorities)
			}
			names = []string{}
			for _, a := range s.Actions {
				names = append(names, a.Text)
			}
			if !slices.Equal(names, want.actions) {
				t.Errorf("actions %q, want %q", names, want.actions)
			}
			if got := s.SeparatorStates(); !maps.Equal(got, want.separators) {
				t.Errorf("separators %v, want %v", got, want.separators)
			}
			if len(s.Problems) != 0 {
				t.Errorf("problems: %v", s.Problems)
			}
		})
	}
}

// tpm2Output is what tpm2_eventlog printed for a log.
type tpm2Output struct {
	events   int                          // entries (PCRIndex lines at event level)
	apps     int                          // EV_EFI_BOOT_SERVICES_APPLICATION events
	cmdlines []string                     // kernel_cmdline strings
	grubCmds int                          // grub_cmd events
	sbData   []string                     // VariableData of SecureBoot variables
	pcrs     map[string]map[string]string // bank → index → hex
}

var (
	tpm2Event = regexp.MustCompile(`^(- |  )PCRIndex: `)
	tpm2PCR   = regexp.MustCompile(`^    (\d+)\s*: 0x([0-9a-fA-F]+)$`)
	tpm2Bank  = regexp.MustCompile(`^  ([a-z0-9_]+):$`)
)

// runTPM2Eventlog runs tpm2-tools' tpm2_eventlog and reads its YAML by
// line (its output for a TPM 1.2 log repeats keys, which no YAML decoder
// accepts). A crash returns ok == false.
func runTPM2Eventlog(t *testing.T, path string) (out tpm2Output, ok bool) {
	t.Helper()
	if _, err := exec.LookPath("tpm2_eventlog"); err != nil {
		t.Fatalf("tpm2_eventlog (tpm2-tools) is needed: %v", err)
	}
	b, err := exec.Command("tpm2_eventlog", path).Output()
	if err != nil {
		t.Logf("tpm2_eventlog %s: %v", filepath.Base(path), err)
		return out, false
	}
	out.pcrs = map[string]map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	inPCRs, bank, sbNext := false, "", false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "pcrs:":
			inPCRs = true
		case inPCRs:
			if m := tpm2Bank.FindStringSubmatch(line); m != nil {
				bank = m[1]
				out.pcrs[bank] = map[string]string{}
			} else if m := tpm2PCR.FindStringSubmatch(line); m != nil && bank != "" {
				v := strings.ToLower(m[2])
				if prev, dup := out.pcrs[bank][m[1]]; dup && prev != v {
					t.Fatalf("tpm2_eventlog printed PCR %s:%s twice, differently", bank, m[1])
				}
				out.pcrs[bank][m[1]] = v
			}
		case tpm2Event.MatchString(line):
			out.events++
		case strings.Contains(line, "EventType: EV_EFI_BOOT_SERVICES_APPLICATION"):
			out.apps++
		case strings.HasPrefix(strings.TrimSpace(line), `"kernel_cmdline: `):
			c := strings.TrimPrefix(strings.TrimSpace(line), `"kernel_cmdline: `)
			out.cmdlines = append(out.cmdlines, strings.TrimSuffix(c, `\0"`))
		case strings.HasPrefix(strings.TrimSpace(line), `"grub_cmd: `):
			out.grubCmds++
		case strings.TrimSpace(line) == "UnicodeName: SecureBoot":
			sbNext = true
		case sbNext:
			out.sbData = append(out.sbData, strings.Trim(strings.TrimPrefix(strings.TrimSpace(line), "VariableData:"), ` "`))
			sbNext = false
		}
	}
	return out, len(out.pcrs) > 0
}

// TestRealLogsAgainstTPM2Tools compares the replay with tpm2_eventlog's
// for every bank and PCR it prints, and the counts it shows. NOTES say it
// crashes on option_rom_eventlog (checked here: it must still crash, so
// that a fixed tool is noticed) and mishandles ebs_event_missing_eventlog;
// both are checked against go-attestation in TestRealLogsAgainstGoAttestation.
func TestRealLogsAgainstTPM2Tools(t *testing.T) {
	dir := logDir(t)
	for _, name := range realLogs {
		t.Run(name, func(t *testing.T) {
			out, ok := runTPM2Eventlog(t, filepath.Join(dir, name))
			if name == "option_rom_eventlog" {
				if ok {
					t.Fatalf("tpm2_eventlog no longer fails on %s: compare with it", name)
				}
				return
			}
			if !ok {
				t.Fatalf("tpm2_eventlog printed no PCRs for %s", name)
			}
			l := mustParse(t, readLog(t, name))
			got := l.Replay().Hex()
			if len(got) != len(out.pcrs) {
				t.Errorf("banks: ours %d, tpm2_eventlog %d", len(got), len(out.pcrs))
			}
			for bank, pcrs := range out.pcrs {
				if len(got[bank]) != len(pcrs) {
					t.Errorf("bank %s: we replay %d PCRs, tpm2_eventlog %d", bank, len(got[bank]), len(pcrs))
				}
				for i, v := range pcrs {
					want := got[bank][i]
					if name == "keylime_binary_bios_measurements" && i == "0" {
						// tpm2-tools 5.4 extends EV_NO_ACTION events
						// (tpm2-tools#3224, fixed by #3230) and ignores
						// StartupLocality (#3146, fixed by #3242): its
						// PCR 0 is the replay from zero that also extends
						// the StartupLocality event's zero digest. Ours
						// (from locality 3) is checked by go-attestation.
						want = buggyPCR0(t, l, bank)
					}
					if want != v {
						t.Errorf("%s PCR %s: ours %s, tpm2_eventlog %s", bank, i, want, v)
					}
				}
			}
			s := l.Summarize()
			if out.events != len(l.Events) {
				t.Errorf("events: ours %d, tpm2_eventlog %d", len(l.Events), out.events)
			}
			if out.apps != len(s.BootApplications) {
				t.Errorf("boot applications: ours %d, tpm2_eventlog %d", len(s.BootApplications), out.apps)
			}
			if !slices.Equal(out.cmdlines, s.KernelCmdlines) {
				t.Errorf("kernel command lines: ours %q, tpm2_eventlog %q", s.KernelCmdlines, out.cmdlines)
			}
			if out.grubCmds != len(s.GrubCommands) {
				t.Errorf("grub commands: ours %d, tpm2_eventlog %d", len(s.GrubCommands), out.grubCmds)
			}
			if len(out.sbData) != 1 {
				t.Fatalf("tpm2_eventlog printed %d SecureBoot variables", len(out.sbData))
			}
			wantSB := out.sbData[0] == "01"
			if sb := s.SecureBoot(); sb == nil || *sb != wantSB {
				t.Errorf("SecureBoot %v, tpm2_eventlog's VariableData %q", sb, out.sbData[0])
			}
		})
	}
}

// buggyPCR0 replays PCR 0 as tpm2-tools 5.4 does: from zero, extending
// EV_NO_ACTION events after the first.
func buggyPCR0(t *testing.T, l *eventlog.Log, bank string) string {
	for _, alg := range l.Banks() {
		if alg.String() != bank {
			continue
		}
		v := make([]byte, alg.Size())
		for _, e := range l.Events[1:] {
			if e.PCR == 0 {
				h := alg.New()
				h.Write(v)
				h.Write(e.Digest(alg))
				v = h.Sum(nil)
			}
		}
		return hex.EncodeToString(v)
	}
	t.Fatalf("no bank %s", bank)
	return ""
}

// TestRealLogsAgainstGoAttestation parses every log with go-attestation
// (a test-only dependency) and has its replay verify ours, bank by bank:
// EventLog.Verify replays its own parse and fails unless every given PCR
// matches. This is the independent check for the two logs tpm2_eventlog
// cannot read.
func TestRealLogsAgainstGoAttestation(t *testing.T) {
	logDir(t)
	hashes := map[eventlog.Alg]crypto.Hash{
		eventlog.AlgSHA1: crypto.SHA1, eventlog.AlgSHA256: crypto.SHA256, eventlog.AlgSHA384: crypto.SHA384, eventlog.AlgSHA512: crypto.SHA512,
	}
	for _, name := range realLogs {
		t.Run(name, func(t *testing.T) {
			b := readLog(t, name)
			l := mustParse(t, b)
			el, err := attest.ParseEventLog(b)
			if err != nil {
				t.Fatalf("go-attestation: %v", err)
			}
			// go-attestation keeps the Spec ID event out of its list.
			n := len(el.Events(attest.HashSHA1))
			if l.SpecID != nil {
				n++
			}
			if n != len(l.Events) {
				t.Errorf("events: ours %d, go-attestation %d", len(l.Events), n)
			}
			if len(el.Algs) != len(l.Banks()) {
				t.Errorf("banks: ours %v, go-attestation %v", l.Banks(), el.Algs)
			}
			replay := l.Replay()
			for alg, pcrs := range replay {
				var in []attest.PCR
				for _, i := range replay.Indexes(alg) {
					in = append(in, attest.PCR{Index: int(i), Digest: pcrs[i], DigestAlg: hashes[alg]})
				}
				events, err := el.Verify(in)
				if err != nil {
					t.Errorf("%s: go-attestation rejects our PCRs: %v", alg, err)
					continue
				}
				// Every extending event of those PCRs was verified.
				want := 0
				for _, e := range l.Events {
					if e.Type != eventlog.EvNoAction && pcrs[e.PCR] != nil {
						want++
					}
				}
				if len(events) != want {
					t.Errorf("%s: go-attestation verified %d events, we extended %d", alg, len(events), want)
				}
			}
		})
	}
}

// Values quoted by the TPMs of the machines these logs came from, as
// go-attestation's tests record them (attest/secureboot_test.go,
// TestSecureBootOptionRom and TestSecureBootBug157): the strongest check
// there is, since no software wrote them.
func TestRealLogsQuotedPCRs(t *testing.T) {
	quoted := map[string]map[eventlog.Alg]map[uint32]string{
		"option_rom_eventlog": {eventlog.AlgSHA1: {
			0: "01518aedc87a0ef505d27261ef835809e7da0086",
			1: "bebff4c08a6677473ab604cedefb82f850cde883",
			2: "366a31a0c075368f0e10857333ea2ed6e8a00fd3",
			3: "b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236",
			4: "39f388c3959e904694726f4c015b6dceae0680a1",
			5: "723a0520cf7f2978548742bd1541706b2446459e",
			6: "b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236",
			7: "20de7dfba6bcdfccadad7e3eb099c91d4d97c5ad",
		}},
		"sb_cert_eventlog": {
			eventlog.AlgSHA1: {
				0: "51c323de0c0c694f4601cdd02beb58ff13629f74",
				4: "b771008d173c022bc16f4b4d1a7f8b99ed88eeb1",
				5: "d7396ac6e887da22dea03b40952f70b8dbd2a996",
				7: "45a8621d34a57df2b2e7f14c92b99ac8de7d5805",
			},
			eventlog.AlgSHA256: {
				0: "fcecb56acc303862b30eb342c4990beb50b5e0ab89722449c2d9a73f37b019fe",
				4: "a92968806f795fa34435d9f11813684ca1e7056077f700ba49f26f9962f86d89",
				5: "cc8618b77932b4efda12cc58bad93ecdd1959dea29e5ab794525a619f5baabee",
				7: "51b30488c9e6255d822bdc1b20d9a92c32bde6c3e7bc02bcdd32825eb5ef069a",
			},
		},
	}
	for name, banks := range quoted {
		got := mustParse(t, readLog(t, name)).Replay()
		for alg, pcrs := range banks {
			for i, want := range pcrs {
				if v := hex.EncodeToString(got[alg][i]); v != want {
					t.Errorf("%s %s PCR %d: replay %s, quoted %s", name, alg, i, v, want)
				}
			}
		}
	}
}

// TestStartupLocality: the keylime log starts PCR 0 at locality 3, and
// replaying it from zero would not give tpm2_eventlog's value.
func TestStartupLocality(t *testing.T) {
	l := mustParse(t, readLog(t, "keylime_binary_bios_measurements"))
	if e := l.Events[1]; e.Type != eventlog.EvNoAction || !bytes.HasPrefix(e.Data, []byte("StartupLocality\x00")) || e.Data[16] != 3 {
		t.Fatalf("event 1 is not StartupLocality 3: %s %q", e.Type, e.Data)
	}
	if got, want := hex.EncodeToString(l.Replay()[eventlog.AlgSHA256][0]), "0ee9a7feba8f4172f1a7451594aa5731665a4d353ac61814042ce107a00742f2"; got != want {
		t.Errorf("PCR 0 %s, want %s", got, want)
	}
	// Synthetic: PCR 0 = H(0…03 || D) for one event.
	for _, loc := range []byte{0, 3, 4} {
		data := []byte("crtm")
		b := agile(sha256Alg).event(0, eventlog.EvNoAction, append([]byte("StartupLocality\x00"), loc)).event(0, eventlog.EvSCRTMVersion, data).bytes()
		start := make([]byte, 32)
		start[31] = loc
		d := digestOf(sha256Alg, data)
		want := digestOf(sha256Alg, append(start, d...))
		if got := mustParse(t, b).Replay()[eventlog.AlgSHA256][0]; !bytes.Equal(got, want) {
			t.Errorf("locality %d: PCR 0 %x, want %x", loc, got, want)
		}
	}
}

func TestHex(t *testing.T) {
	l := mustParse(t, readLog(t, "crypto_agile_eventlog"))
	h := l.Replay().Hex()
	if len(h) != 1 || len(h["sha256"]) != 8 {
		t.Fatalf("Hex: %v", h)
	}
	if got := h["sha256"]["0"]; got != "1536de221b2187a421602cd81f43aa04496b0bd5a424d3b25b637a942080d0fa" {
		t.Errorf(`sha256["0"] = %s`, got)
	}
	for i := 0; i < 8; i++ {
		if _, ok := h["sha256"][strconv.Itoa(i)]; !ok {
			t.Errorf("PCR %d missing", i)
		}
	}
}
