package eventlogtest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

func parse(t *testing.T, b Boot) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Parse(b.Log())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return l
}

// checkReplay compares eventlog's replay of b's log with b.PCRs().
func checkReplay(t *testing.T, b Boot, l *eventlog.Log) {
	t.Helper()
	got := map[int][32]byte{}
	for i, v := range l.Replay()[eventlog.AlgSHA256] {
		got[int(i)] = [32]byte(v)
	}
	if want := b.PCRs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Replay() = %x, PCRs() = %x", got, want)
	}
}

// shape is the log's (PCR, type) sequence, runs collapsed: what the order
// of a real OVMF + shim + grub boot looks like.
var shape = []string{
	"0 EV_NO_ACTION", "0 EV_S_CRTM_VERSION", "0 EV_EFI_PLATFORM_FIRMWARE_BLOB ×2",
	"7 EV_EFI_VARIABLE_DRIVER_CONFIG ×5", "7 EV_SEPARATOR", "1 EV_EFI_VARIABLE_BOOT ×3", "4 EV_EFI_ACTION",
	"0 EV_SEPARATOR", "1 EV_SEPARATOR", "2 EV_SEPARATOR", "3 EV_SEPARATOR", "4 EV_SEPARATOR", "5 EV_SEPARATOR", "6 EV_SEPARATOR",
	"7 EV_EFI_VARIABLE_AUTHORITY", "5 EV_EFI_GPT_EVENT", "4 EV_EFI_BOOT_SERVICES_APPLICATION",
	"14 EV_IPL ×2", "7 EV_EFI_VARIABLE_AUTHORITY", "14 EV_IPL", "7 EV_EFI_VARIABLE_AUTHORITY", "4 EV_EFI_BOOT_SERVICES_APPLICATION",
	"9 EV_IPL", "8 EV_IPL ×3", "9 EV_IPL", "8 EV_IPL ×3", "9 EV_IPL", "8 EV_IPL ×21", "9 EV_IPL",
	"4 EV_EFI_BOOT_SERVICES_APPLICATION", "8 EV_IPL ×3", "9 EV_IPL", "9 EV_EVENT_TAG", "5 EV_EFI_ACTION ×2",
}

func TestDebian(t *testing.T) {
	b := Debian()
	if !bytes.Equal(b.Log(), Debian().Log()) {
		t.Fatal("two Debian() logs differ")
	}
	l := parse(t, b)
	if l.Format != eventlog.FormatCryptoAgile || !reflect.DeepEqual(l.Banks(), []eventlog.Alg{eventlog.AlgSHA1, eventlog.AlgSHA256}) {
		t.Fatalf("format %s, banks %v", l.Format, l.Banks())
	}
	var got []string
	for i, e := range l.Events {
		if e.Type == eventlog.EvNoAction && i > 0 {
			t.Errorf("event %d: EV_NO_ACTION after the Spec ID event", i)
		}
		s := fmt.Sprintf("%d %s", e.PCR, e.Type)
		if n := len(got); n > 0 && strings.HasPrefix(got[n-1], s) {
			c := 2
			if _, k, ok := strings.Cut(got[n-1], " ×"); ok {
				c, _ = strconv.Atoi(k)
				c++
			}
			got[n-1] = fmt.Sprintf("%s ×%d", s, c)
			continue
		}
		got = append(got, s)
	}
	if !slices.Equal(got, shape) {
		t.Errorf("shape\n%q\nwant\n%q", got, shape)
	}
	s := l.Summarize()
	if len(s.Problems) != 0 {
		t.Errorf("problems: %v", s.Problems)
	}
	if sb := s.SecureBoot(); sb == nil || !*sb {
		t.Errorf("SecureBoot() = %v", sb)
	}
	names := func(vs []eventlog.Variable) (out []string) {
		for _, v := range vs {
			if !v.Verified || v.Trailing != 0 {
				t.Errorf("%s: verified %v, %d trailing bytes", v.Name, v.Verified, v.Trailing)
			}
			out = append(out, v.Name)
		}
		return out
	}
	if n := names(s.SecureBootVariables); !slices.Equal(n, []string{"SecureBoot", "PK", "KEK", "db", "dbx"}) {
		t.Errorf("variables %q", n)
	}
	if n := names(s.Authorities); !slices.Equal(n, []string{"db", "SbatLevel", "Shim"}) {
		t.Errorf("authorities %q", n)
	}
	if len(s.BootApplications) != 3 {
		t.Fatalf("%d boot applications, want 3", len(s.BootApplications))
	}
	for i, a := range s.BootApplications {
		if a.Path != b.Apps[i].Path || !bytes.Equal(a.Digests.Get(eventlog.AlgSHA256), b.Apps[i].SHA256) {
			t.Errorf("application %d: %q %x, want %q %x", i, a.Path, a.Digests.Get(eventlog.AlgSHA256), b.Apps[i].Path, b.Apps[i].SHA256)
		}
	}
	if want := `PciRoot(0x0)/Pci(0x3,0x0)/HD(15,GPT,c7e1b6a4-3f2d-4c8e-a1b0-9d8e7f6a5b4c,0x800,0x40000)/\EFI\debian\shimx64.efi`; s.BootApplications[0].DevicePath != want {
		t.Errorf("shim's device path %q, want %q", s.BootApplications[0].DevicePath, want)
	}
	if !slices.Equal(s.KernelCmdlines, []string{DebianCmdline}) || !slices.Equal(s.GrubCommands, b.GrubCommands) || !slices.Equal(s.GrubFiles, b.GrubFiles) {
		t.Errorf("cmdlines %q\ncommands %q\nfiles %q", s.KernelCmdlines, s.GrubCommands, s.GrubFiles)
	}
	var shim []string
	for _, e := range s.ShimEvents {
		shim = append(shim, fmt.Sprintf("%d %s", e.PCR, e.Name))
	}
	if want := []string{"14 MokList", "14 MokListX", "7 SbatLevel", "14 MokListTrusted", "7 Shim"}; !slices.Equal(shim, want) {
		t.Errorf("shim events %q, want %q", shim, want)
	}
	for pcr := uint32(0); pcr < 8; pcr++ {
		if st := s.SeparatorStates()[pcr]; st != eventlog.SeparatorOK {
			t.Errorf("PCR %d separator %q", pcr, st)
		}
	}
	initrd := l.Events[len(l.Events)-3]
	if initrd.PCR != 9 || initrd.Type != eventlog.EvEventTag || hex.EncodeToString(initrd.Data) != "ec223b8f0d0000004c696e757820696e6974726400" {
		t.Errorf("initrd event: PCR %d %s %x", initrd.PCR, initrd.Type, initrd.Data)
	}
	checkReplay(t, b, l)
}

func TestCerts(t *testing.T) {
	a, c := newCerts(), DebianCerts()
	for _, p := range [][2]Identity{{a.PK, c.PK}, {a.KEK, c.KEK}, {a.WindowsPCA, c.WindowsPCA}, {a.UEFICA, c.UEFICA}, {a.Vendor, c.Vendor}} {
		if !bytes.Equal(p[0].Cert.Raw, p[1].Cert.Raw) || !p[0].Key.PublicKey.Equal(p[1].Cert.PublicKey) {
			t.Errorf("%s: not deterministic, or the key is not the certificate's", p[1].Cert.Subject.CommonName)
		}
		if err := p[1].Cert.CheckSignatureFrom(p[1].Cert); err != nil {
			t.Errorf("%s: %v", p[1].Cert.Subject.CommonName, err)
		}
	}
	lists, err := efi.ParseSignatureLists(Debian().DB)
	if err != nil || len(lists) != 2 || !bytes.Equal(lists[1].Signatures[0].Data, c.UEFICA.Cert.Raw) {
		t.Errorf("db: %d lists, %v", len(lists), err)
	}
}

func TestZeroBoot(t *testing.T) {
	var b Boot
	l := parse(t, b)
	if s := l.Summarize(); len(s.Problems) != 0 || s.SecureBoot() == nil || *s.SecureBoot() || len(s.BootApplications) != 0 {
		t.Errorf("problems %v, SecureBoot %v, %d applications", s.Problems, s.SecureBoot(), len(s.BootApplications))
	}
	checkReplay(t, b, l)
}

func TestKernelAfterCmdline(t *testing.T) {
	b := Debian()
	b.KernelAfterCmdline = true
	l := parse(t, b)
	for i, e := range l.Events {
		if e.Type == eventlog.EvIPL && bytes.HasPrefix(e.Data, []byte("kernel_cmdline: ")) {
			if n := l.Events[i+1]; n.Type != eventlog.EvEFIBootServicesApp || l.Events[i-1].Type != eventlog.EvIPL {
				t.Errorf("after kernel_cmdline: %s, before: %s", n.Type, l.Events[i-1].Type)
			}
		}
	}
	checkReplay(t, b, l)
}

type ev struct {
	PCR                uint32
	Type               eventlog.EventType
	SHA1, SHA256, Data string
}

func events(t *testing.T, b Boot) []ev {
	var out []ev
	for _, e := range parse(t, b).Events {
		out = append(out, ev{e.PCR, e.Type, hex.EncodeToString(e.Digest(eventlog.AlgSHA1)), hex.EncodeToString(e.Digest(eventlog.AlgSHA256)), hex.EncodeToString(e.Data)})
	}
	return out
}

func TestLies(t *testing.T) {
	base := Debian()
	baseEvents, basePCRs := events(t, base), base.PCRs()
	// errSep is a separator with the error value; drop and errorSep make
	// the edits of the lies.
	errSep := func(e ev) []ev {
		one := []byte{1, 0, 0, 0}
		d1, d256 := sha1.Sum(one), sha256.Sum256(one)
		return []ev{{e.PCR, e.Type, hex.EncodeToString(d1[:]), hex.EncodeToString(d256[:]), "01000000"}}
	}
	edit := func(match func(ev) bool, lie func(ev) []ev) func(ev) []ev {
		return func(e ev) []ev {
			if match(e) {
				return lie(e)
			}
			return []ev{e}
		}
	}
	drop := func(ev) []ev { return nil }
	separator := func(pcrs ...uint32) func(ev) bool {
		return func(e ev) bool { return e.Type == eventlog.EvSeparator && slices.Contains(pcrs, e.PCR) }
	}
	firmware := func(e ev) bool {
		return e.PCR == 0 && (e.Type == eventlog.EvSCRTMVersion || e.Type == eventlog.EvEFIPlatformFwBlob)
	}
	for _, tc := range []struct {
		name string
		lie  func(*Boot)
		// edit maps an event of the honest log to the lie's.
		edit    func(ev) []ev
		changed []int
		states  map[uint32]eventlog.SeparatorStatus
	}{
		{"omit separator 4", func(b *Boot) { b.OmitSeparators = []int{4} }, edit(separator(4), drop), []int{4}, nil},
		{"omit separators 0 and 7", func(b *Boot) { b.OmitSeparators = []int{7, 0} }, edit(separator(0, 7), drop), []int{0, 7}, nil},
		{"error separator 7", func(b *Boot) { b.ErrorSeparators = []int{7} }, edit(separator(7), errSep), []int{7},
			map[uint32]eventlog.SeparatorStatus{7: eventlog.SeparatorError}},
		{"error separators 0 and 5", func(b *Boot) { b.ErrorSeparators = []int{0, 5} }, edit(separator(0, 5), errSep), []int{0, 5},
			map[uint32]eventlog.SeparatorStatus{0: eventlog.SeparatorError, 5: eventlog.SeparatorError}},
		{"no firmware events", func(b *Boot) { b.NoFirmwareEvents = true }, edit(firmware, drop), []int{0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Debian()
			tc.lie(&b)
			var want []ev
			for _, e := range baseEvents {
				want = append(want, tc.edit(e)...)
			}
			if got := events(t, b); !reflect.DeepEqual(got, want) {
				t.Errorf("events differ beyond the lie:\n%v\nwant\n%v", got, want)
			}
			pcrs := b.PCRs()
			var changed []int
			for i, v := range basePCRs {
				if pcrs[i] != v {
					changed = append(changed, i)
				}
			}
			slices.Sort(changed)
			if !slices.Equal(changed, tc.changed) || !slices.Equal(slices.Sorted(maps.Keys(pcrs)), slices.Sorted(maps.Keys(basePCRs))) {
				t.Errorf("PCRs changed: %v, want %v (PCRs %v)", changed, tc.changed, slices.Sorted(maps.Keys(pcrs)))
			}
			l := parse(t, b)
			s := l.Summarize()
			if len(s.Problems) != 0 {
				t.Errorf("problems: %v", s.Problems)
			}
			for pcr, st := range tc.states {
				if s.SeparatorStates()[pcr] != st {
					t.Errorf("PCR %d separator %q, want %q", pcr, s.SeparatorStates()[pcr], st)
				}
			}
			checkReplay(t, b, l)
		})
	}
}

// TestTPM2Eventlog has tpm2-tools replay the logs: its SHA-256 PCRs must be
// PCRs().
func TestTPM2Eventlog(t *testing.T) {
	bin, err := exec.LookPath("tpm2_eventlog")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tpm2_eventlog (tpm2-tools) is required under CI: %v", err)
		}
		t.Skipf("tpm2_eventlog not installed: %v", err)
	}
	lies := Debian()
	lies.OmitSeparators, lies.ErrorSeparators, lies.NoFirmwareEvents, lies.KernelAfterCmdline = []int{4}, []int{7}, true, true
	for name, b := range map[string]Boot{"debian": Debian(), "lies": lies} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, b.Log(), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, path).Output()
		if err != nil {
			t.Fatalf("%s: tpm2_eventlog: %v", name, err)
		}
		got := map[int][32]byte{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		section := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "pcrs:":
				section = "pcrs"
			case section != "" && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    "):
				section = "pcrs/" + strings.TrimSuffix(strings.TrimSpace(line), ":")
			case section == "pcrs/sha256" && strings.HasPrefix(line, "    "):
				k, v, _ := strings.Cut(line, ":")
				i, err1 := strconv.Atoi(strings.TrimSpace(k))
				d, err2 := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(v), "0x"))
				if err1 != nil || err2 != nil || len(d) != 32 {
					t.Fatalf("%s: bad PCR line %q", name, line)
				}
				got[i] = [32]byte(d)
			}
		}
		if want := b.PCRs(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: tpm2_eventlog replays to\n%x\nPCRs() is\n%x", name, got, want)
		}
	}
}

// TestSwtpm plays the log into a real TPM (swtpm) as the verifier's tests
// do: the TPM's SHA-256 PCRs are PCRs().
func TestSwtpm(t *testing.T) {
	b := Debian()
	sw := testtpm.Start(t)
	e, err := tpm.Open(t.Context(), sw.URI, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testtpm.ExtendEventLog(t, e, b.Log())
	want := b.PCRs()
	got, err := e.PCRRead(t.Context(), "sha256", slices.Sorted(maps.Keys(want)))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range want {
		if !bytes.Equal(got[i], v[:]) {
			t.Errorf("PCR %d: TPM %x, PCRs() %x", i, got[i], v)
		}
	}
}
