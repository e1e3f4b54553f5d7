// Package eventlogtest builds TCG PC Client crypto-agile event logs (the
// binary_bios_measurements format) for tests: the events OVMF/EDK II,
// Debian's shim 15.7, grub 2.06 and the Linux 6.1 EFI stub record when a
// VM boots under Secure Boot, with SHA-1 and SHA-256 banks, the Spec ID
// event first and no StartupLocality event (so that testtpm.ExtendEventLog
// can play them into swtpm), and options that make the log lie.
//
// The order is the real one: PCR 0 firmware events, the Secure Boot
// variables and PCR 7's separator, the boot variables, "Calling EFI
// Application from Boot Option", the separators of PCRs 0 to 6, the GPT,
// the firmware-loaded application (shim), shim's MOK and SBAT
// measurements, the applications shim loads (grub), grub's commands and
// files with the kernel it verifies through shim, the EFI stub's initrd
// event and ExitBootServices. The same Boot always gives the same bytes.
package eventlogtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/eventlog"
)

// App is one EV_EFI_BOOT_SERVICES_APPLICATION event of PCR 4. Apps[0] is
// loaded by the firmware (its event has the full device path of the boot
// disk's ESP); the others with a Path are loaded by shim (shim 15.7 logs
// only the file path node); those without are the images grub has shim
// verify (the kernel: shim logs no device path and the image's address).
type App struct {
	// Path is the file path, `\EFI\debian\shimx64.efi`; "" for an image
	// verified from memory.
	Path string
	// SHA256 is the Authenticode digest (32 bytes).
	SHA256 []byte
	// SHA1 is the SHA-1 digest; nil derives one from SHA256.
	SHA1 []byte
	// Authority is logged in PCR 7 just before the application; nil for
	// none. An authority equal to one already logged is not logged again
	// (EDK II and shim log each once).
	Authority *Authority
}

// Authority is an EV_EFI_VARIABLE_AUTHORITY event of PCR 7.
type Authority struct {
	// Name is the variable name: "db" (EDK II), "Shim" or "MokListRT"
	// (shim).
	Name string
	// GUID is eventlog.GUIDImageSecurityDatabase for db,
	// eventlog.GUIDShimLock for shim's.
	GUID string
	// Data is the VariableData as measured: EDK II logs the db entry that
	// verified the image (EFI_SIGNATURE_DATA: owner GUID then DER), shim
	// 15.7 logs its vendor certificate as plain DER.
	Data []byte
}

// Boot describes a boot. The zero value is OVMF in setup mode with
// Secure Boot off booting nothing: firmware events, the variables (no
// data), the boot variables, the separators and ExitBootServices.
type Boot struct {
	SecureBoot bool
	// PK, KEK, DB and DBX are the variables' data (EFI_SIGNATURE_LIST
	// bytes); nil logs the variable as absent (no data; nil PK is setup
	// mode).
	PK, KEK, DB, DBX []byte
	Apps             []App
	// GrubCommands are grub's PCR 8 "grub_cmd: " events, in order. Each
	// GrubFiles entry is logged right after the first command that reads
	// it (configfile, source, linux, initrd... naming it, with or without
	// its "(hd0,gpt2)" device; load_env reads grubenv); files no command
	// reads are logged before the first command, as grub reads its first
	// grub.cfg before running any.
	GrubCommands []string
	// KernelCmdline is grub's PCR 8 "kernel_cmdline: " event, logged after
	// the first linux command (and its file); "" for none.
	KernelCmdline string
	// KernelAfterCmdline logs the memory-verified Apps after the
	// kernel_cmdline event instead of right after the kernel's file event.
	KernelAfterCmdline bool
	// GrubFiles are grub's PCR 9 file events ("(hd0,gpt2)/grub/grub.cfg");
	// their digests are derived from the path.
	GrubFiles []string
	// Initrd logs the Linux EFI stub's PCR 9 EV_EVENT_TAG "Linux initrd"
	// event.
	Initrd bool
	// MokList and MokListX are the data shim measures into PCR 14 (the
	// digest is of the data, the event text is the name); nil for none.
	MokList, MokListX []byte
	// MokListTrusted logs shim's PCR 14 "MokListTrusted" event (the
	// MokListTrusted variable is absent, so shim measures one byte 0x01).
	MokListTrusted bool
	// SbatLevel is the SbatLevel variable shim 15.7 measures into PCR 7
	// (EV_EFI_VARIABLE_AUTHORITY, UEFI_VARIABLE_DATA); "" for none.
	SbatLevel string

	// OmitSeparators leaves out the EV_SEPARATOR of these PCRs (0 to 7).
	OmitSeparators []int
	// ErrorSeparators makes the EV_SEPARATOR of these PCRs the error
	// value 1.
	ErrorSeparators []int
	// NoFirmwareEvents leaves out PCR 0's events before its separator
	// (the S-CRTM version and the firmware volumes).
	NoFirmwareEvents bool
}

// Log returns the binary event log. It panics when b is not well formed
// (a digest of the wrong size, a separator PCR outside 0 to 7).
func (b Boot) Log() []byte { l, _ := b.build(); return l }

// BootPCRs are the SHA-256 PCRs 0–9 the boot leaves, as
// imatest.Boot takes them to compute an IMA list's boot_aggregate.
func (b Boot) BootPCRs() [10][32]byte {
	var out [10][32]byte
	p := b.PCRs()
	for i := range out {
		out[i] = p[i]
	}
	return out
}

// PCRs returns the SHA-256 PCR values the log replays to (from zero:
// locality 0), for the PCRs it extends.
func (b Boot) PCRs() map[int][32]byte { _, p := b.build(); return p }

// GPT and boot disk of the VM: vda1 root, vda2 /boot, vda15 the ESP.
var (
	diskGUID    = efi.MustParseGUID("4b2a7e05-8b8d-4e4e-9c3a-6f1d2e3c4b5a")
	espGUID     = efi.MustParseGUID("c7e1b6a4-3f2d-4c8e-a1b0-9d8e7f6a5b4c")
	rootGUID    = efi.MustParseGUID("2f4b8c1d-7a3e-4d5f-8b6a-1c2d3e4f5a6b")
	bootGUID    = efi.MustParseGUID("9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d")
	typeLinux   = efi.MustParseGUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
	typeESP     = efi.MustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	uiAppFv     = efi.MustParseGUID("7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1")
	uiAppFile   = efi.MustParseGUID("462caa21-7614-4503-836e-8ab6f4662331")
	diskSectors = uint64(20 << 21) // 20 GiB
)

type logger struct {
	buf  []byte
	pcrs map[int][32]byte
}

// event appends a TCG_PCR_EVENT2 with these digests.
func (l *logger) event(pcr int, typ eventlog.EventType, d1, d256, data []byte) {
	if len(d1) != sha1.Size || len(d256) != sha256.Size {
		panic(fmt.Sprintf("eventlogtest: PCR %d %s: digests of %d and %d bytes", pcr, typ, len(d1), len(d256)))
	}
	l.buf = append(l.buf, le(uint32(pcr), typ, uint32(2), eventlog.AlgSHA1, d1, eventlog.AlgSHA256, d256, uint32(len(data)), data)...)
	v := l.pcrs[pcr]
	l.pcrs[pcr] = sha256.Sum256(append(v[:], d256...))
}

// hashed appends an event whose digests are those of measured.
func (l *logger) hashed(pcr int, typ eventlog.EventType, measured, data []byte) {
	d1, d256 := sha1.Sum(measured), sha256.Sum256(measured)
	l.event(pcr, typ, d1[:], d256[:], data)
}

func (b Boot) build() ([]byte, map[int][32]byte) {
	for _, p := range append(slices.Clone(b.OmitSeparators), b.ErrorSeparators...) {
		if p < 0 || p > 7 {
			panic(fmt.Sprintf("eventlogtest: separator of PCR %d: only PCRs 0 to 7 have firmware separators", p))
		}
	}
	l := &logger{pcrs: map[int][32]byte{}}
	// The Spec ID event (TCG_PCR_EVENT, SHA-1 format): platform class 0,
	// version 2.0 errata 0, UINTN of 64 bits, SHA-1 and SHA-256.
	spec := le([]byte("Spec ID Event03\x00"), uint32(0), []byte{0, 2, 0, 2}, uint32(2),
		eventlog.AlgSHA1, uint16(20), eventlog.AlgSHA256, uint16(32), uint8(0))
	l.buf = le(uint32(0), eventlog.EvNoAction, [20]byte{}, uint32(len(spec)), spec)

	separator := func(pcr int) {
		if slices.Contains(b.OmitSeparators, pcr) {
			return
		}
		v := []byte{0, 0, 0, 0}
		if slices.Contains(b.ErrorSeparators, pcr) {
			v[0] = 1
		}
		l.hashed(pcr, eventlog.EvSeparator, v, v)
	}
	if !b.NoFirmwareEvents {
		// OVMF: an empty firmware version string, then PEIFV and DXEFV
		// (UEFI_PLATFORM_FIRMWARE_BLOB: base and length).
		l.hashed(0, eventlog.EvSCRTMVersion, []byte{0, 0}, []byte{0, 0})
		for _, fv := range [][2]uint64{{0x820000, 0xe0000}, {0x900000, 0xc00000}} {
			blob := le(fv[0], fv[1])
			l.hashed(0, eventlog.EvEFIPlatformFwBlob, append([]byte("firmware volume "), blob...), blob)
		}
	}
	// Tcg2Dxe's MeasureSecureBootPolicy: the digest is of the whole
	// UEFI_VARIABLE_DATA.
	sb := []byte{0}
	if b.SecureBoot {
		sb[0] = 1
	}
	for _, v := range []struct {
		guid efi.GUID
		name string
		data []byte
	}{{efi.GlobalVariable, "SecureBoot", sb}, {efi.GlobalVariable, "PK", b.PK}, {efi.GlobalVariable, "KEK", b.KEK},
		{efi.ImageSecurityDatabase, "db", b.DB}, {efi.ImageSecurityDatabase, "dbx", b.DBX}} {
		d := variable(v.guid, v.name, v.data)
		l.hashed(7, eventlog.EvEFIVariableDriverCfg, d, d)
	}
	separator(7)
	// Boot variables at ReadyToBoot: the digest is of VariableData.
	shimFile := ""
	if len(b.Apps) > 0 {
		shimFile = b.Apps[0].Path
	}
	hd := hdNode()
	boot := map[string][]byte{
		"BootOrder": {1, 0, 0, 0},
		"Boot0001":  loadOption(1, "debian", slices.Concat(hd, filePath(shimFile), endNode)),
		"Boot0000":  loadOption(0x109, "UiApp", slices.Concat(node(4, 7, uiAppFv[:]), node(4, 6, uiAppFile[:]), endNode)),
	}
	for _, n := range []string{"BootOrder", "Boot0001", "Boot0000"} {
		l.hashed(1, eventlog.EvEFIVariableBoot, boot[n], variable(efi.GlobalVariable, n, boot[n]))
	}
	action := func(pcr int, s string) { l.hashed(pcr, eventlog.EvEFIAction, []byte(s), []byte(s)) }
	action(4, "Calling EFI Application from Boot Option")
	for pcr := 0; pcr < 7; pcr++ {
		separator(pcr)
	}

	logged := map[string]bool{}
	app := func(i int, a App) {
		if len(a.SHA256) != sha256.Size {
			panic(fmt.Sprintf("eventlogtest: app %d (%q): SHA256 is %d bytes", i, a.Path, len(a.SHA256)))
		}
		if a.Authority != nil {
			g, err := efi.ParseGUID(a.Authority.GUID)
			if err != nil {
				panic(fmt.Sprintf("eventlogtest: authority of app %d: %v", i, err))
			}
			d := variable(g, a.Authority.Name, a.Authority.Data)
			if !logged[string(d)] {
				logged[string(d)] = true
				l.hashed(7, eventlog.EvEFIVariableAuthority, d, d)
			}
		}
		if i == 0 {
			l.hashed(5, eventlog.EvEFIGPTEvent, gpt(), gpt())
		}
		// UEFI_IMAGE_LOAD_EVENT: location, length, link-time address,
		// device path length and device path.
		loc := 0x7e000018 - uint64(i)*0x1000000
		size := 0xe0000 + uint64(binary.BigEndian.Uint16(a.SHA256))*16
		var link uint64
		var dp []byte
		switch {
		case i == 0 && a.Path != "":
			dp = slices.Concat(node(2, 1, []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}), node(1, 1, []byte{0, 3}), hd, filePath(a.Path), endNode)
		case a.Path != "":
			dp, link = slices.Concat(filePath(a.Path), endNode), loc+0x1000
		}
		d := le(loc, size, link, uint64(len(dp)), dp)
		d1 := a.SHA1
		if d1 == nil {
			s := sha1.Sum(a.SHA256)
			d1 = s[:]
		}
		l.event(4, eventlog.EvEFIBootServicesApp, d1, a.SHA256, d)
	}
	var fromMemory []int
	for i, a := range b.Apps {
		if i > 0 && a.Path == "" {
			fromMemory = append(fromMemory, i)
		} else if i == 0 {
			app(0, a)
		}
	}
	// shim 15.7's import_mok_state: MokList, MokListX, SbatLevel,
	// MokListTrusted, in its table's order.
	ipl := func(pcr int, text string, measured []byte) {
		l.hashed(pcr, eventlog.EvIPL, measured, append([]byte(text), 0))
	}
	if b.MokList != nil {
		ipl(14, "MokList", b.MokList)
	}
	if b.MokListX != nil {
		ipl(14, "MokListX", b.MokListX)
	}
	if b.SbatLevel != "" {
		d := variable(efi.ShimLock, "SbatLevel", []byte(b.SbatLevel))
		l.hashed(7, eventlog.EvEFIVariableAuthority, d, d)
	}
	if b.MokListTrusted {
		ipl(14, "MokListTrusted", []byte{1})
	}
	for i, a := range b.Apps {
		if i > 0 && a.Path != "" {
			app(i, a)
		}
	}

	// grub 2.06: the digest of a string is of the text after the prefix;
	// a file's is of its contents.
	file := func(p string) { ipl(9, p, []byte("eventlogtest file "+p)) }
	kernel, cmdline := func() {
		for _, i := range fromMemory {
			app(i, b.Apps[i])
		}
	}, func() {
		if b.KernelCmdline != "" {
			l.hashed(8, eventlog.EvIPL, []byte(b.KernelCmdline), []byte("kernel_cmdline: "+b.KernelCmdline+"\x00"))
		}
	}
	readBy := make([]int, len(b.GrubFiles))
	for f, p := range b.GrubFiles {
		readBy[f] = slices.IndexFunc(b.GrubCommands, func(c string) bool { return reads(c, p) })
		if readBy[f] < 0 {
			file(p)
		}
	}
	linuxDone := false
	for c, cmd := range b.GrubCommands {
		l.hashed(8, eventlog.EvIPL, []byte(cmd), []byte("grub_cmd: "+cmd+"\x00"))
		for f, p := range b.GrubFiles {
			if readBy[f] == c {
				file(p)
			}
		}
		if verb, _, _ := strings.Cut(cmd, " "); (verb == "linux" || verb == "linuxefi") && !linuxDone {
			linuxDone = true
			if !b.KernelAfterCmdline {
				kernel()
			}
			cmdline()
			if b.KernelAfterCmdline {
				kernel()
			}
		}
	}
	if !linuxDone {
		kernel()
		cmdline()
	}
	if b.Initrd {
		// The EFI stub's TCG_PCClientTaggedEvent: INITRD_EVENT_TAG_ID,
		// the size of "Linux initrd" with its NUL, the text; the digest
		// is of the initrd.
		l.hashed(9, eventlog.EvEventTag, []byte("eventlogtest initrd"), le(uint32(0x8f3b22ec), uint32(13), []byte("Linux initrd\x00")))
	}
	action(5, "Exit Boot Services Invocation")
	action(5, "Exit Boot Services Returned with Success")
	return l.buf, l.pcrs
}

// reads reports whether grub's command cmd reads the file p.
func reads(cmd, p string) bool {
	verb, _, _ := strings.Cut(cmd, " ")
	switch verb {
	case "load_env":
		return strings.HasSuffix(p, "/grubenv")
	case "configfile", "source", "linux", "linuxefi", "initrd", "initrdefi", "chainloader":
		short := p
		if i := strings.IndexByte(p, ')'); strings.HasPrefix(p, "(") && i > 0 {
			short = p[i+1:]
		}
		return strings.Contains(cmd, p) || strings.Contains(cmd, " "+short)
	}
	return false
}

// variable returns UEFI_VARIABLE_DATA: the GUID, the name's length in
// CHAR16, the data's length, the UTF-16 name (no NUL) and the data.
func variable(g efi.GUID, name string, data []byte) []byte {
	u := utf16.Encode([]rune(name))
	return le(g, uint64(len(u)), uint64(len(data)), u, data)
}

// utf16z is s in UTF-16LE with a NUL.
func utf16z(s string) []byte { return le(utf16.Encode([]rune(s + "\x00"))) }

// le encodes fixed-size values and slices of them, little endian.
func le(vs ...any) []byte {
	var b []byte
	for _, v := range vs {
		var err error
		if b, err = binary.Append(b, binary.LittleEndian, v); err != nil {
			panic(err)
		}
	}
	return b
}

// node returns a device path node.
func node(typ, sub byte, d []byte) []byte {
	return append([]byte{typ, sub, byte(len(d) + 4), byte((len(d) + 4) >> 8)}, d...)
}

var endNode = []byte{0x7f, 0xff, 4, 0}

func filePath(p string) []byte { return node(4, 4, utf16z(p)) }

// The ESP: partition 15, LBA 2048 to 264191.
const espStart, espSize = 2048, 262144

func hdNode() []byte {
	return node(4, 1, le(uint32(15), uint64(espStart), uint64(espSize), espGUID, []byte{2, 2})) // GPT, GUID signature
}

// loadOption returns an EFI_LOAD_OPTION.
func loadOption(attrs uint32, desc string, dp []byte) []byte {
	return le(attrs, uint16(len(dp)), utf16z(desc), dp)
}

// gpt returns UEFI_GPT_DATA as EDK II's Tcg2MeasureGptTable logs it: the
// 92-byte primary header, the number of partitions (UINTN) and the used
// 128-byte entries in table order.
func gpt() []byte {
	entries := make([]byte, 128*128)
	parts := []struct {
		index      int
		typ, id    efi.GUID
		start, end uint64
	}{
		{0, typeLinux, rootGUID, 1312768, diskSectors - 34},
		{1, typeLinux, bootGUID, espStart + espSize, 1312767},
		{14, typeESP, espGUID, espStart, espStart + espSize - 1},
	}
	var used []byte
	for _, p := range parts {
		e := entries[128*p.index : 128*(p.index+1)]
		copy(e, p.typ[:])
		copy(e[16:], p.id[:])
		binary.LittleEndian.PutUint64(e[32:], p.start)
		binary.LittleEndian.PutUint64(e[40:], p.end)
		used = append(used, e...)
	}
	// Signature, revision 1.0, header size, header CRC (set below),
	// reserved, LBAs (this, alternate, first and last usable), disk GUID,
	// entries' LBA, count and size, entries' CRC.
	h := le([]byte("EFI PART"), uint32(0x00010000), uint32(92), uint32(0), uint32(0),
		[]uint64{1, diskSectors - 1, 34, diskSectors - 34}, diskGUID, uint64(2), uint32(128), uint32(128), crc32.ChecksumIEEE(entries))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
	return le(h, uint64(len(parts)), used)
}

// signatureList returns EFI_SIGNATURE_LIST bytes.
func signatureList(lists ...efi.SignatureList) []byte {
	b, err := efi.AppendSignatureLists(nil, lists...)
	if err != nil {
		panic(err)
	}
	return b
}

func digest(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

// Owner GUIDs of the signature lists.
var (
	microsoftOwner = efi.MustParseGUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
	oemOwner       = efi.MustParseGUID("3c9a1f52-8e0b-4d6a-b7c4-5e2f1a0d9c83")
)

// Kernel command line of Debian().
const DebianCmdline = `/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro ima_policy=tcb|critical_data module.sig_enforce=1 lockdown=integrity`

// Debian returns a Debian 12 VM booting under Secure Boot on OVMF: PK,
// KEK, db (Windows PCA and UEFI CA) and a dbx of three SHA-256 entries
// from DebianCerts; shim (db authority, the UEFI CA entry), grub (the
// "Shim" authority: the vendor certificate) and the kernel (verified by
// the same certificate, so no new authority); shim's MokList (the vendor
// certificate), MokListX (shim's placeholder list), MokListTrusted and
// SbatLevel; grub's commands and files; the initrd. Each call returns
// fresh slices.
func Debian() Boot {
	c := DebianCerts()
	boot := "8d5e1f3a-6b2c-4e7d-9f10-3a4b5c6d7e8f"
	return Boot{
		SecureBoot: true,
		PK:         signatureList(efi.X509List(oemOwner, c.PK.Cert.Raw)),
		KEK:        signatureList(efi.X509List(microsoftOwner, c.KEK.Cert.Raw)),
		DB:         signatureList(efi.X509List(microsoftOwner, c.WindowsPCA.Cert.Raw), efi.X509List(microsoftOwner, c.UEFICA.Cert.Raw)),
		DBX:        signatureList(efi.HashList(efi.CertSHA256, microsoftOwner, digest("revoked 1"), digest("revoked 2"), digest("revoked 3"))),
		Apps: []App{
			{Path: `\EFI\debian\shimx64.efi`, SHA256: digest("shimx64.efi 15.7-1~deb12u1"),
				Authority: &Authority{Name: "db", GUID: eventlog.GUIDImageSecurityDatabase, Data: slices.Concat(microsoftOwner[:], c.UEFICA.Cert.Raw)}},
			{Path: `\EFI\debian\grubx64.efi`, SHA256: digest("grubx64.efi 2.06-13+deb12u1"),
				Authority: &Authority{Name: "Shim", GUID: eventlog.GUIDShimLock, Data: bytes.Clone(c.Vendor.Cert.Raw)}},
			{SHA256: digest("vmlinuz-6.1.0-28-amd64")},
		},
		GrubCommands: []string{
			"search.fs_uuid " + boot + " root hd0,gpt2",
			"set prefix=(hd0,gpt2)/grub",
			"configfile (hd0,gpt2)/grub/grub.cfg",
			"[ -s (hd0,gpt2)/grub/grubenv ]",
			"set have_grubenv=true",
			"load_env",
			"[  = 2 ]", "[  = 1 ]", "[  ]",
			"set default=0",
			"[ xy = xy ]",
			"menuentry_id_option=--id",
			"export menuentry_id_option",
			"terminal_input console", "terminal_output console",
			"set timeout_style=menu", "set timeout=5",
			"menuentry Debian GNU/Linux --class debian --class gnu-linux --class gnu --class os --id gnulinux-simple-" + boot +
				" {\n\tload_video\n\tinsmod gzio\n\tinsmod part_gpt\n\tinsmod ext2\n\tsearch --no-floppy --fs-uuid --set=root " + boot +
				"\n\techo\t'Loading Linux 6.1.0-28-amd64 ...'\n\tlinux\t/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro \"ima_policy=tcb|critical_data\" module.sig_enforce=1 lockdown=integrity" +
				"\n\techo\t'Loading initial ramdisk ...'\n\tinitrd\t/initrd.img-6.1.0-28-amd64\n}",
			"setparams Debian GNU/Linux",
			"load_video", "insmod all_video", "insmod gzio", "insmod part_gpt", "insmod ext2",
			"search --no-floppy --fs-uuid --set=root " + boot,
			"echo Loading Linux 6.1.0-28-amd64 ...",
			"linux /vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro ima_policy=tcb|critical_data module.sig_enforce=1 lockdown=integrity",
			"echo Loading initial ramdisk ...",
			"initrd /initrd.img-6.1.0-28-amd64",
		},
		KernelCmdline: DebianCmdline,
		GrubFiles: []string{
			"(hd0,gpt15)/EFI/debian/grub.cfg",
			"(hd0,gpt2)/grub/grub.cfg",
			"(hd0,gpt2)/grub/grubenv",
			"(hd0,gpt2)/vmlinuz-6.1.0-28-amd64",
			"(hd0,gpt2)/initrd.img-6.1.0-28-amd64",
		},
		Initrd:         true,
		MokList:        signatureList(efi.X509List(efi.ShimLock, c.Vendor.Cert.Raw)),
		MokListX:       signatureList(efi.HashList(efi.CertSHA256, efi.ShimLock, make([]byte, 32))),
		MokListTrusted: true,
		SbatLevel:      "sbat,1,2022052400\ngrub,2\n",
	}
}
