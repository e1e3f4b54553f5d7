package measure_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/measure"
)

// mbTree returns a host tree whose event log holds b (no log when b is
// nil).
func mbTree(t *testing.T, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	if b != nil {
		p := filepath.Join(dir, filepath.FromSlash(measure.EventLogPath))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func measureMB(t *testing.T, dir string) (*measure.Report, measure.MeasuredBoot) {
	t.Helper()
	r, err := measure.New(measure.Options{}).Measure(context.Background(), hostfs.New(dir))
	if err != nil {
		t.Fatal(err)
	}
	return r, r.MeasuredBoot
}

func realEventLog(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(artifacts.SharedData(t, filepath.Join("eventlogs", name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mbKeys are the section's claim names; every one is always present, and
// no list or map is null.
var mbKeys = []string{"status", "format", "events", "pcrs", "secure_boot_variables", "boot_applications",
	"kernel_cmdline", "kernel_cmdlines", "grub_commands", "grub_command_count", "shim_events",
	"separators", "actions", "problems"}

func checkMBJSON(t *testing.T, mb measure.MeasuredBoot) {
	t.Helper()
	b, err := json.Marshal(mb)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("measured_boot has a null: %s", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range mbKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("claim %q missing", k)
		}
	}
}

// TestMeasuredBootUbuntu asserts every claim measured from the Ubuntu
// shielded VM's log. The PCR values are tpm2_eventlog's (and
// go-attestation agrees, see the eventlog tests).
func TestMeasuredBootUbuntu(t *testing.T) {
	b := realEventLog(t, "ubuntu_2104_shielded_vm_no_secure_boot_eventlog")
	r, mb := measureMB(t, mbTree(t, b))
	checkMBJSON(t, mb)
	sum := sha256.Sum256(b)
	if got := r.Inputs[measure.EventLogPath]; got != hex.EncodeToString(sum[:]) {
		t.Errorf("inputs[%s] = %q, want the log's sha256", measure.EventLogPath, got)
	}
	f := false
	cmdline := "/boot/vmlinuz-5.11.0-1006-gcp root=PARTUUID=6443a6ae-e5e9-4df7-9a06-d1329e50f33c ro console=ttyS0 panic=-1"
	variable := func(name, guid, sha1, sha256, sha384 string) measure.LoggedVariable {
		return measure.LoggedVariable{Name: name, GUID: guid, Digest: sha256, Digests: map[string]string{"sha1": sha1, "sha256": sha256, "sha384": sha384}, Verified: true}
	}
	const global, secdb = "8be4df61-93ca-11d2-aa0d-00e098032b8c", "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
	sb := variable("SecureBoot", global, "57cd4dc19442475aa82743484f3b1caa88e142b8", "115aa827dbccfb44d216ad9ecfda56bdea620b860a94bed5b7a27bba1c4d02d8", "cfa4e2c606f572627bf06d5669cc2ab1128358d27b45bc63ee9ea56ec109cfafb7194006f847a6a74b5eaed6b73332ec")
	sb.Enabled = &f
	want := measure.MeasuredBoot{
		Section: measure.Section{Status: measure.StatusOK},
		Format:  "crypto-agile",
		Events:  106,
		PCRs: map[string]map[string]string{
			"sha1": {
				"0": "0f2d3a2a1adaa479aeeca8f5df76aadc41b862ea", "1": "f5310dfcfcec5571cbf730064d526906c9cea2f0",
				"2": "b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236", "3": "b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236",
				"4": "e53d909941dcbc699b273fc4c0d817a41c6ab975", "5": "9e2af4bac1432830594b1ae90c68c52a20a9700e",
				"6": "b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236", "7": "ede7204673f41ac2592b0d3b4cd429b43f39dc61",
				"8": "bda59abe1c7d18e0b85edfcb4381f10d4dcc88f7", "9": "39fd49224476f4d7eea26a53e264c9c33e47649c",
				"14": "cd3734d2bdfcfba9e443ac02c03c812ffcceb255",
			},
			"sha256": {
				"0": "24af52a4f429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f", "1": "45ed8540f34db53220ef197e5fb8a3835b2095454349e445f397f13d91c509a5",
				"2": "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969", "3": "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
				"4": "ebc7ae25d0347868250995c9a8fff16bf79e048453262d0ef2756e213c76181c", "5": "47715f9f2c10769da6ee23be5633fd88e247caf162f4eeb0b6f8482ccfeadfb5",
				"6": "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969", "7": "0d8847bc5eca06452df10e2f214363845c7ac11d47525a5474e225e72ce25dfe",
				"8": "b9a324947de94ec2fd4b04483ecfcb37dfdd520a7c0ecf73c77bf2595549c84f", "9": "adb87be3efd96cc3a2f66b8aa7564f9727563ef494a95d571a3f38ff4afb25dd",
				"14": "8351c65483c5419079e8c96758dd2130bee075d71fea226f68ec4eb5bfc71983",
			},
			"sha384": {
				"0":  "8be2d39fecef6e883d467379c57847437cfa03a6f7f7f78dcb2a05a479db4b4749ececedd105b760bc8313abccf1dfb6",
				"1":  "6b088ab036df8ef6e5ecbc719f37836ce616360d74c36b9cd23b9545ec0795e66776856c53a08f89720c77832c4b1ff2",
				"2":  "518923b0f955d08da077c96aaba522b9decede61c599cea6c41889cfbea4ae4d50529d96fe4d1afdafb65e7f95bf23c4",
				"3":  "518923b0f955d08da077c96aaba522b9decede61c599cea6c41889cfbea4ae4d50529d96fe4d1afdafb65e7f95bf23c4",
				"4":  "3ebf3c452bc17e7eb3fdfd04a0f4f6fc9b67032cdc9442ec31480555ba6b0e16d40801d07fa8809804e337d420eb4e74",
				"5":  "ea0b89e9481c7ab394490a49c77a35a80cc8300f38dc1c7b07071dd97eb4a9f5055f8778bd6b33139f6422e12f4fba62",
				"6":  "518923b0f955d08da077c96aaba522b9decede61c599cea6c41889cfbea4ae4d50529d96fe4d1afdafb65e7f95bf23c4",
				"7":  "ad480f162711e25255a35cfa46f700820f39f8411fcf1b10787d35a33970a9207cdf544eeb760512c083c8f1a6c0cad0",
				"8":  "96317e24c0f3c783bc90ecb0e4e0e47cffc1e239d99c181d892dc6bc32e6b32f8b538d4492816bcd46e96909e02d8455",
				"9":  "fc8578079fa8425b2e84059be723073bb28c49d0fe47587727a64256dc6ef79493cb94557a849c909370422a71544700",
				"14": "b8b567350264af771620c027a7b166896385885029f5e5b2feb9a0c62b7ffdfc276b702373b26b3aa589ab675ee8654d",
			},
		},
		SecureBootVariables: []measure.LoggedVariable{
			sb,
			variable("PK", global, "5abd9412abf33e34a79b3d1a93d350e742d8ecd8", "0bdbbbe39766588565c5cc98a2aeb6e44a9178c9f1935bd241f38372448418bb", "a763553c9606770cd3a5e607f8e0c1ef01cdf2555af753fa3a1f6afe43eb7b2a0af4a6f80fd8e4dd10459668f3b011e0"),
			variable("KEK", global, "f0501c79b607cc42e9142ee85a74d9c27669c0e2", "622647d8138f5b8a64087d2d2e6682c162097b6c1315a6b7225a6657c256b582", "c000a71b17a6054093ed791ece8b1556973ddef6da91bf0aeb5792b3c842423742b52943a58bdf2328a434937e327888"),
			variable("db", secdb, "0915a210049c2781fba26180600fb32217c7c972", "62ba0f38c3848a9462f98774c586e9d954e72921b3a5254124b63632ccaf8f5a", "3509cd62ba8fbef6fae05bee7c3c1ae528f328120879d37f778c3611f9bbf1eaf362423ad89bc8a69283ad2821c5fc37"),
			variable("dbx", secdb, "5ef71a8780668451ae0612df9ba57cfb5e9ce5b4", "84a36b5691b9738d407b09a009221eb9ac5ecc5181d1fae45ff43ae540c9bc9b", "4285252d954a0241a9788ee5c54ea6e0f1e0df7ff39c7c1ea81888cfd2d37a4b7888f38a2c0e0b6336df972ed6cbadd9"),
		},
		BootApplications: []measure.LoggedImage{
			{Path: `\EFI\ubuntu\shimx64.efi`, DevicePath: `PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/HD(15,GPT,9cef6107-0e4e-444c-8839-cf71b1250d5c,0x2800,0x35000)/\EFI\ubuntu\shimx64.efi`,
				Digests: map[string]string{"sha1": "22df40d6e32d4721f1b2406b2b4a3bb0ca10ead5", "sha256": "6265b732b005b3f330bcd1843374e5ec6ec5aef27cdb97a23daeb8580abbf526", "sha384": "4f491210da8f59f09cd16523b44db22e83d8b611c3b14656d3b078dd451347ab195177fc78cf8d5578376f1f5f9bb821"}},
			{Path: `\EFI\ubuntu\grubx64.efi`, DevicePath: `\EFI\ubuntu\grubx64.efi`,
				Digests: map[string]string{"sha1": "4f9604e61091095594c206c8a404afe187a92586", "sha256": "b0a836fec2faf4a9bea0e1a5f1945bc86ddc03ac98ce0ae172ed9b1e536d7595", "sha384": "bbcdda8a6d872385b10802434eb8de1ac7b92dbaddf18bc1d7ea24fcc71b45291db5cc7b930a29c93405d6aecdb70683"}},
		},
		KernelCmdline:    cmdline,
		KernelCmdlines:   []string{cmdline},
		GrubCommands:     mb.GrubCommands, // checked below
		GrubCommandCount: 66,
		ShimEvents:       mb.ShimEvents, // checked below
		Separators:       map[string]string{"0": "ok", "1": "ok", "2": "ok", "3": "ok", "4": "ok", "5": "ok", "6": "ok", "7": "ok"},
		Actions:          []string{"Calling EFI Application from Boot Option", "Exit Boot Services Invocation", "Exit Boot Services Returned with Success"},
		Problems:         []string{},
	}
	if !reflect.DeepEqual(mb, want) {
		got, _ := json.MarshalIndent(mb, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("measured_boot:\n%s\nwant:\n%s", got, exp)
	}
	if n := len(mb.GrubCommands); n != 66 || mb.GrubCommands[0] != "search.fs_uuid fadc363a-fae5-4b46-9bf5-303a0043410b root" ||
		mb.GrubCommands[65] != "save_env initrdfail" || mb.GrubCommands[64] != "[ -n  ]" ||
		mb.GrubCommands[58] != "linux /boot/vmlinuz-5.11.0-1006-gcp root=PARTUUID=6443a6ae-e5e9-4df7-9a06-d1329e50f33c ro console=ttyS0 panic=-1" {
		t.Errorf("grub commands (%d): %q", n, mb.GrubCommands)
	}
	var shim []string
	for _, e := range mb.ShimEvents {
		shim = append(shim, fmt.Sprintf("%d %s %s %d", e.PCR, e.Type, e.Name, len(e.Digests)))
	}
	if want := []string{"14 EV_IPL MokList 3", "14 EV_IPL MokListX 3", "7 EV_EFI_VARIABLE_AUTHORITY SbatLevel 3"}; !reflect.DeepEqual(shim, want) {
		t.Errorf("shim events %q, want %q", shim, want)
	}
	// The same tree measures to the same bytes.
	_, again := measureMB(t, mbTree(t, b))
	j1, _ := json.Marshal(mb)
	j2, _ := json.Marshal(again)
	if !bytes.Equal(j1, j2) {
		t.Error("measured_boot is not deterministic")
	}
}

// TestMeasuredBootRealLogs measures every real log.
func TestMeasuredBootRealLogs(t *testing.T) {
	tests := []struct {
		name, format string
		events       int
		banks        int
		secureBoot   bool
		apps         int
		pcr7         string // sha256 (sha1 for a TPM 1.2 log) PCR 7
		cmdline      bool
		actions      int
	}{
		{"coreos_36_shielded_vm_no_secure_boot_eventlog", "crypto-agile", 76, 3, false, 2, "9340551428472c4820d41f51368427f5d1620b3e7d2081cf8859e7e220554bcd", true, 3},
		{"crypto_agile_eventlog", "crypto-agile", 27, 1, false, 2, "3d6207f9a2c3fa1db729f06e71b09d2e7ca7c0c198f6c1410c2186bbe2cc1826", false, 0},
		{"ebs_event_missing_eventlog", "tcg1.2-sha1", 38, 1, false, 1, "c6b89634b1d11a0083298c17acec8fd9ab266db6", false, 1},
		{"keylime_binary_bios_measurements", "crypto-agile", 121, 2, false, 3, "741fd028c51b4d2fbdcc7f28014cc758d17ccc1fe2ea7ca17b0e8009480a557c", true, 1},
		{"option_rom_eventlog", "tcg1.2-sha1", 61, 1, true, 1, "20de7dfba6bcdfccadad7e3eb099c91d4d97c5ad", false, 3},
		{"sb_cert_eventlog", "crypto-agile", 15, 3, true, 3, "51b30488c9e6255d822bdc1b20d9a92c32bde6c3e7bc02bcdd32825eb5ef069a", false, 0},
		{"ubuntu_2104_shielded_vm_no_secure_boot_eventlog", "crypto-agile", 106, 3, false, 2, "0d8847bc5eca06452df10e2f214363845c7ac11d47525a5474e225e72ce25dfe", true, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, mb := measureMB(t, mbTree(t, realEventLog(t, tc.name)))
			checkMBJSON(t, mb)
			if mb.Status != measure.StatusOK || mb.Format != tc.format || mb.Events != tc.events || len(mb.PCRs) != tc.banks {
				t.Fatalf("status %s (%s), format %s, %d events, %d banks", mb.Status, mb.Error, mb.Format, mb.Events, len(mb.PCRs))
			}
			bank := "sha256"
			if tc.format == "tcg1.2-sha1" {
				bank = "sha1"
			}
			if got := mb.PCRs[bank]["7"]; got != tc.pcr7 {
				t.Errorf("%s PCR 7 %s, want %s", bank, got, tc.pcr7)
			}
			var enabled *bool
			for _, v := range mb.SecureBootVariables {
				if v.Name == "SecureBoot" {
					enabled = v.Enabled
				} else if v.Enabled != nil {
					t.Errorf("%s has enabled", v.Name)
				}
			}
			if enabled == nil || *enabled != tc.secureBoot {
				t.Errorf("SecureBoot enabled %v, want %v", enabled, tc.secureBoot)
			}
			if len(mb.BootApplications) != tc.apps || (mb.KernelCmdline != "") != tc.cmdline || len(mb.Actions) != tc.actions {
				t.Errorf("%d boot applications, cmdline %q, %d actions", len(mb.BootApplications), mb.KernelCmdline, len(mb.Actions))
			}
			if len(mb.Problems) != 0 {
				t.Errorf("problems %q", mb.Problems)
			}
		})
	}
}

func TestMeasuredBootUnavailableAndErrors(t *testing.T) {
	good := realEventLog(t, "sb_cert_eventlog")
	tests := []struct {
		name    string
		log     []byte
		status  measure.Status
		errPart string
	}{
		{"absent", nil, measure.StatusUnavailable, "no such file"},
		{"empty", []byte{}, measure.StatusError, "empty"},
		{"garbage", []byte("this is not an event log, just some text that goes on"), measure.StatusError, "exceeds a limit"},
		{"short garbage", []byte("abc"), measure.StatusError, "truncated"},
		{"truncated", good[:len(good)-10], measure.StatusError, "truncated"},
		{"bad spec id", bytes.Replace(good, []byte("Spec ID Event03"), []byte("Spec ID Event09"), 1), measure.StatusError, "Spec ID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, mb := measureMB(t, mbTree(t, tc.log))
			checkMBJSON(t, mb)
			if mb.Status != tc.status || !strings.Contains(mb.Error, tc.errPart) {
				t.Fatalf("status %q error %q, want %q containing %q", mb.Status, mb.Error, tc.status, tc.errPart)
			}
			if mb.Format != "" || mb.Events != 0 || len(mb.PCRs) != 0 {
				t.Errorf("claims set for a failed section: %+v", mb)
			}
			_, recorded := r.Inputs[measure.EventLogPath]
			if recorded != (tc.log != nil) {
				t.Errorf("inputs recorded %v", recorded)
			}
		})
	}
}

func TestMeasuredBootTooLarge(t *testing.T) {
	dir := mbTree(t, []byte{})
	// A sparse file one byte over the limit.
	if err := os.Truncate(filepath.Join(dir, filepath.FromSlash(measure.EventLogPath)), 64<<20+1); err != nil {
		t.Fatal(err)
	}
	r, mb := measureMB(t, dir)
	if mb.Status != measure.StatusError || !strings.Contains(mb.Error, "limit") {
		t.Fatalf("status %q error %q", mb.Status, mb.Error)
	}
	if _, ok := r.Inputs[measure.EventLogPath]; ok {
		t.Error("a log not read whole is recorded")
	}
}

// agileLog writes a SHA-256 crypto-agile log with the given events.
func agileLog(events ...struct {
	pcr  uint32
	typ  uint32
	data []byte
}) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	spec := append([]byte("Spec ID Event03\x00"), 0, 0, 0, 0, 0, 2, 0, 2, 1, 0, 0, 0, 0x0b, 0, 32, 0, 0)
	b.Write(make([]byte, 4))
	b.Write(le.AppendUint32(nil, 3))
	b.Write(make([]byte, 20))
	b.Write(le.AppendUint32(nil, uint32(len(spec))))
	b.Write(spec)
	for _, e := range events {
		b.Write(le.AppendUint32(nil, e.pcr))
		b.Write(le.AppendUint32(nil, e.typ))
		b.Write(le.AppendUint32(nil, 1))
		b.Write([]byte{0x0b, 0})
		d := sha256.Sum256(e.data)
		b.Write(d[:])
		b.Write(le.AppendUint32(nil, uint32(len(e.data))))
		b.Write(e.data)
	}
	return b.Bytes()
}

// TestMeasuredBootBounds: a log with more entries than the section lists
// is cut, and says so.
func TestMeasuredBootBounds(t *testing.T) {
	type ev = struct {
		pcr  uint32
		typ  uint32
		data []byte
	}
	events := []ev{{5, 0x80000007, []byte(strings.Repeat("é", 10000))}}
	for i := 0; i < 300; i++ {
		events = append(events, ev{5, 0x80000007, []byte(fmt.Sprintf("action %d", i))})
	}
	_, mb := measureMB(t, mbTree(t, agileLog(events...)))
	checkMBJSON(t, mb)
	if mb.Status != measure.StatusOK || len(mb.Actions) != 256 || mb.Actions[255] != "action 254" {
		t.Fatalf("status %s, %d actions", mb.Status, len(mb.Actions))
	}
	if a := mb.Actions[0]; len(a) > 8<<10+len("…") || !strings.HasSuffix(a, "é…") {
		t.Errorf("long action: %d bytes, ends %q", len(a), a[len(a)-8:])
	}
	if len(mb.Problems) != 1 || !strings.Contains(mb.Problems[0], "actions: 301 entries, the first 256 listed") {
		t.Errorf("problems %q", mb.Problems)
	}
	// A forged action string (its data no longer hashes to its digest) is
	// reported as a problem.
	b := agileLog(ev{4, 0x80000007, []byte("Calling EFI Application from Boot Option")})
	b[len(b)-1] = 'X'
	_, mb = measureMB(t, mbTree(t, b))
	if len(mb.Problems) != 1 || !strings.Contains(mb.Problems[0], "does not match its digests") {
		t.Errorf("problems %q", mb.Problems)
	}
}
