package eventlog_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/vigil-attest/vigil/eventlog"
)

func utf16le(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

func mustGUID(s string) []byte {
	h, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	// The first three fields are little endian.
	h[0], h[1], h[2], h[3] = h[3], h[2], h[1], h[0]
	h[4], h[5] = h[5], h[4]
	h[6], h[7] = h[7], h[6]
	return h
}

// variable builds UEFI_VARIABLE_DATA.
func variable(guid, name string, data []byte) []byte {
	n := utf16le(name)
	b := mustGUID(guid)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(n)/2))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	b = append(b, n...)
	return append(b, data...)
}

func TestGUID(t *testing.T) {
	for _, g := range []string{eventlog.GUIDGlobalVariable, eventlog.GUIDImageSecurityDatabase, eventlog.GUIDShimLock} {
		if got := eventlog.GUID(mustGUID(g)); got != g {
			t.Errorf("GUID round trip %s: %s", g, got)
		}
	}
	if eventlog.GUID([]byte{1}) != "" {
		t.Error("short GUID")
	}
}

func TestSecureBootVariable(t *testing.T) {
	tests := []struct {
		name    string
		guid    string
		data    []byte
		tamper  bool
		want    *bool
		problem bool
	}{
		{"enabled", eventlog.GUIDGlobalVariable, []byte{1}, false, ptr(true), false},
		{"disabled", eventlog.GUIDGlobalVariable, []byte{0}, false, ptr(false), false},
		{"absent", eventlog.GUIDGlobalVariable, nil, false, ptr(false), false},
		{"odd value", eventlog.GUIDGlobalVariable, []byte{2}, false, nil, true},
		{"two bytes", eventlog.GUIDGlobalVariable, []byte{1, 0}, false, nil, true},
		{"other GUID", eventlog.GUIDShimLock, []byte{1}, false, nil, false},
		// Data changed after hashing: the log says 1, the PCRs say 0.
		{"tampered", eventlog.GUIDGlobalVariable, []byte{0}, true, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := agile(sha1Alg, sha256Alg).event(7, eventlog.EvEFIVariableDriverCfg, variable(tc.guid, "SecureBoot", tc.data)).bytes()
			if tc.tamper {
				b[len(b)-1] = 1
			}
			s := mustParse(t, b).Summarize()
			if len(s.SecureBootVariables) != 1 {
				t.Fatalf("variables: %+v", s.SecureBootVariables)
			}
			v := s.SecureBootVariables[0]
			if v.Name != "SecureBoot" || v.GUID != tc.guid || v.Verified == tc.tamper || v.DataSize != len(tc.data) {
				t.Errorf("variable %+v", v)
			}
			if (v.Enabled == nil) != (tc.want == nil) || (v.Enabled != nil && *v.Enabled != *tc.want) {
				t.Errorf("Enabled %v, want %v", v.Enabled, tc.want)
			}
			if (len(s.Problems) > 0) != tc.problem {
				t.Errorf("problems %v", s.Problems)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMalformedVariable(t *testing.T) {
	v := variable(eventlog.GUIDGlobalVariable, "PK", []byte("certs"))
	for name, data := range map[string][]byte{
		"short":          v[:20],
		"name too long":  binary.LittleEndian.AppendUint64(append(bytes.Clone(v[:16]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 0),
		"data too long":  append(append(bytes.Clone(v[:24]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), v[32:]...),
		"trailing bytes": append(bytes.Clone(v), 0),
	} {
		s := mustParse(t, agile(sha256Alg).event(7, eventlog.EvEFIVariableDriverCfg, data).bytes()).Summarize()
		if len(s.Problems) != 1 {
			t.Errorf("%s: problems %v", name, s.Problems)
		}
	}
}

func TestSeparators(t *testing.T) {
	sep := func(v uint32) []byte { return le32(v) }
	b := agile(sha256Alg).
		event(0, eventlog.EvSeparator, sep(0)).
		event(1, eventlog.EvSeparator, sep(1)).
		event(2, eventlog.EvSeparator, sep(0xffffffff)).
		event(3, eventlog.EvSeparator, sep(7)).
		event(4, eventlog.EvSeparator, []byte{0, 0}).
		event(5, eventlog.EvSeparator, sep(0)).
		event(5, eventlog.EvSeparator, sep(1)).
		event(12, eventlog.EvSeparator, []byte("WBCL")).
		bytes()
	// PCR 6's separator data says 0 but its digest is of 1.
	b = append(b, agile(sha256Alg).event(6, eventlog.EvSeparator, sep(1)).bytes()[len(agile(sha256Alg).bytes()):]...)
	b[len(b)-4] = 0
	s := mustParse(t, b).Summarize()
	want := map[uint32]eventlog.SeparatorStatus{0: "ok", 1: "error", 2: "error", 3: "invalid", 4: "invalid", 5: "error", 6: "invalid", 12: "ok"}
	if got := s.SeparatorStates(); !maps.Equal(got, want) {
		t.Errorf("separators %v, want %v", got, want)
	}
	if len(s.Problems) != 3 {
		t.Errorf("problems %v", s.Problems)
	}
}

func TestGrubStrings(t *testing.T) {
	b := agile(sha256Alg)
	add := func(pcr uint32, data, hashed []byte) {
		b.buf.Write(le32(pcr))
		b.buf.Write(le32(uint32(eventlog.EvIPL)))
		b.buf.Write(le32(1))
		b.buf.Write([]byte{0x0b, 0})
		b.buf.Write(digestOf(sha256Alg, hashed))
		b.buf.Write(le32(uint32(len(data))))
		b.buf.Write(data)
	}
	// grub hashes the text after its prefix, without the NUL.
	grub := func(prefix, text string) { add(8, []byte(prefix+text+"\x00"), []byte(text)) }
	grub("grub_cmd: ", "linux /vmlinuz root=/dev/sda1")
	grub("kernel_cmdline: ", "/vmlinuz root=/dev/sda1")
	grub("kernel_cmdline: ", "/vmlinuz root=/dev/sda2")
	d := []byte("kernel_cmdline: /vmlinuz init=/bin/sh\x00")
	add(8, d, []byte("/vmlinuz quiet")) // forged text
	add(8, []byte("grub_cmd: echo \xff\xfe\xff\xfe\x00"), []byte("echo \xff\xfe\xff\xfe"))
	add(9, []byte("(hd0,gpt1)/vmlinuz\x00"), []byte("file"))
	add(14, []byte("MokList\x00"), []byte("list"))
	add(8, []byte("module_cmdline: x\x00"), []byte("x"))
	s := mustParse(t, b.bytes()).Summarize()
	if !slices.Equal(s.GrubCommands, []string{"linux /vmlinuz root=/dev/sda1", "echo \ufffd"}) {
		t.Errorf("grub commands %q", s.GrubCommands)
	}
	if !slices.Equal(s.KernelCmdlines, []string{"/vmlinuz root=/dev/sda1", "/vmlinuz root=/dev/sda2", "/vmlinuz init=/bin/sh"}) {
		t.Errorf("cmdlines %q", s.KernelCmdlines)
	}
	if !slices.Equal(s.GrubFiles, []string{"(hd0,gpt1)/vmlinuz"}) || len(s.ShimEvents) != 1 || s.ShimEvents[0].Name != "MokList" {
		t.Errorf("files %q, shim %+v", s.GrubFiles, s.ShimEvents)
	}
	if len(s.Problems) != 1 || s.Problems[0].Event != 4 || !strings.Contains(s.Problems[0].String(), "event 4 (EV_IPL, PCR 8)") {
		t.Errorf("problems %v", s.Problems)
	}
}

func TestParseDevicePath(t *testing.T) {
	node := func(typ, sub byte, d []byte) []byte {
		return append([]byte{typ, sub, byte(len(d) + 4), byte((len(d) + 4) >> 8)}, d...)
	}
	end := node(0x7f, 0xff, nil)
	hd := append(le32(15), binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0x2800), 0x35000)...)
	hd = append(append(hd, mustGUID("27872a8b-87fc-49c2-bf27-3afc4cf84586")...), 2, 2)
	tests := []struct {
		name, text, file string
		in               []byte
	}{
		{"disk", `PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/HD(15,GPT,27872a8b-87fc-49c2-bf27-3afc4cf84586,0x2800,0x35000)/\EFI\BOOT\BOOTX64.EFI`, `\EFI\BOOT\BOOTX64.EFI`,
			bytes.Join([][]byte{node(2, 1, append(le32(0x0a0341d0), le32(0)...)), node(1, 1, []byte{0, 3}), node(3, 2, []byte{1, 0, 0, 0}), node(4, 1, hd), node(4, 4, utf16le(`\EFI\BOOT\BOOTX64.EFI`+"\x00")), end}, nil)},
		{"split file path", `\EFI\centos/grubx64.efi`, `\EFI\centos\grubx64.efi`,
			bytes.Join([][]byte{node(4, 4, utf16le(`\EFI\centos`+"\x00")), node(4, 4, utf16le("grubx64.efi\x00")), end}, nil)},
		{"firmware volume", "Fv(8fc151ae-c96f-4bc9-8c33-107992c7735b)/FvFile(821aca26-29ea-4993-839f-597fc021708d)", "",
			bytes.Join([][]byte{node(4, 7, mustGUID("8fc151ae-c96f-4bc9-8c33-107992c7735b")), node(4, 6, mustGUID("821aca26-29ea-4993-839f-597fc021708d")), end}, nil)},
		{"unknown node", "Path(5,1,0102)/Acpi(PNP0501,0x1)/PcieRoot(0x2)", "", bytes.Join([][]byte{node(5, 1, []byte{1, 2}), node(2, 1, append(le32(0x050141d0), le32(1)...)), node(2, 1, append(le32(0x0a0841d0), le32(2)...)), end}, nil)},
		{"instances", "Sata(0x1,0x8000,0x0),NVMe(0x1,50-37-D1-21-B2-38-25-00)", "",
			bytes.Join([][]byte{node(3, 18, []byte{1, 0, 0, 0x80, 0, 0}), node(0x7f, 1, nil), node(3, 23, append(le32(1), 0, 0x25, 0x38, 0xb2, 0x21, 0xd1, 0x37, 0x50)), end}, nil)},
		{"no end", "Pci(0x1,0x2)", "", node(1, 1, []byte{2, 1})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := eventlog.ParseDevicePath(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Text != tc.text || p.File != tc.file {
				t.Errorf("got %q, %q\nwant %q, %q", p.Text, p.File, tc.text, tc.file)
			}
		})
	}
	for name, in := range map[string][]byte{"short header": {4, 4, 10}, "short length": {4, 4, 2, 0}, "long length": {4, 4, 9, 0, 0}} {
		if _, err := eventlog.ParseDevicePath(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	long := bytes.Repeat(node(5, 1, make([]byte, 200)), 50)
	if p, err := eventlog.ParseDevicePath(long); err != nil || len(p.Text) > eventlog.MaxDevicePathText+len("…") {
		t.Errorf("long path: %d bytes, %v", len(p.Text), err)
	}
}

// TestSM3 checks the SM3 bank's hash against the standard's vectors
// (GB/T 32905-2016, appendix A) and, when it is there, OpenSSL.
func TestSM3(t *testing.T) {
	vectors := map[string]string{
		"abc":                      "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
		strings.Repeat("abcd", 16): "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
	}
	for in, want := range vectors {
		h := eventlog.AlgSM3_256.New()
		h.Write([]byte(in))
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("SM3(%q) = %s, want %s", in, got, want)
		}
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		return
	}
	for _, n := range []int{0, 1, 55, 56, 63, 64, 65, 119, 120, 1000} {
		in := bytes.Repeat([]byte{byte(n)}, n)
		cmd := exec.Command("openssl", "dgst", "-sm3", "-r")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Logf("openssl has no SM3: %v", err)
			return
		}
		h := eventlog.AlgSM3_256.New()
		// Write in two pieces to exercise buffering.
		h.Write(in[:n/3])
		h.Write(in[n/3:])
		if got, want := hex.EncodeToString(h.Sum(nil)), strings.Fields(string(out))[0]; got != want {
			t.Errorf("SM3 of %d bytes = %s, openssl %s", n, got, want)
		}
	}
}

func TestNames(t *testing.T) {
	if eventlog.EvEFIVariableAuthority.String() != "EV_EFI_VARIABLE_AUTHORITY" || eventlog.EventType(0x1234).String() != "EV_0x00001234" {
		t.Error("EventType.String")
	}
	for a, n := range map[eventlog.Alg]string{eventlog.AlgSHA1: "sha1", eventlog.AlgSHA256: "sha256", eventlog.AlgSHA384: "sha384", eventlog.AlgSHA512: "sha512", eventlog.AlgSM3_256: "sm3_256", eventlog.AlgSHA3_256: "sha3_256"} {
		if a.String() != n || a.New() == nil || a.New().Size() != a.Size() {
			t.Errorf("%s: %q, size %d", n, a.String(), a.Size())
		}
	}
}
