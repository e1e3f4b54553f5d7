package eventlog

import (
	"github.com/vigil-attest/vigil/efi"

	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf16"
)

// MaxDevicePathText bounds the text of one decoded device path; a longer
// one is cut and ends with "…".
const MaxDevicePathText = 4096

// DevicePath is a decoded EFI_DEVICE_PATH_PROTOCOL (UEFI 2.10, chapter
// 10).
type DevicePath struct {
	// Text is the path in the UEFI text form ("PciRoot(0x0)/Pci(0x3,0x0)/
	// …/\EFI\BOOT\BOOTX64.EFI"); nodes this package does not know are
	// written Path(type,subtype,hex) as UEFI does.
	Text string
	// File joins the media file path nodes (type 4, subtype 4):
	// "\EFI\debian\shimx64.efi", or "" when there are none.
	File string
}

// ParseDevicePath decodes a device path. It stops at the end-of-path node
// and fails on a node whose length is short or runs past b.
func ParseDevicePath(b []byte) (DevicePath, error) {
	var text, file strings.Builder
	sep := ""
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return DevicePath{}, fmt.Errorf("device path node at offset %d: %d bytes left, header needs 4", off, len(b)-off)
		}
		typ, sub := b[off], b[off+1]
		n := int(binary.LittleEndian.Uint16(b[off+2:]))
		if n < 4 || n > len(b)-off {
			return DevicePath{}, fmt.Errorf("device path node at offset %d: length %d, %d bytes left", off, n, len(b)-off)
		}
		d := b[off+4 : off+n]
		off += n
		if typ == 0x7f {
			if sub == 0xff {
				break
			}
			sep = ","
			continue
		}
		if text.Len() < MaxDevicePathText {
			text.WriteString(sep)
			text.WriteString(nodeText(typ, sub, d))
		}
		sep = "/"
		if typ == 4 && sub == 4 {
			p := utf16String(d)
			if file.Len() > 0 && !strings.HasSuffix(file.String(), `\`) && !strings.HasPrefix(p, `\`) {
				file.WriteByte('\\')
			}
			if file.Len() < MaxDevicePathText {
				file.WriteString(p)
			}
		}
	}
	return DevicePath{Text: truncate(text.String(), MaxDevicePathText), File: truncate(file.String(), MaxDevicePathText)}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// utf16String decodes UTF-16LE up to the first NUL.
func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// GUID formats the EFI_GUID at the start of b (efi.GUID's text form).
func GUID(b []byte) string {
	var g efi.GUID
	if len(b) < len(g) {
		return ""
	}
	copy(g[:], b)
	return g.String()
}

func nodeText(typ, sub byte, d []byte) string {
	u16 := func(i int) uint16 { return binary.LittleEndian.Uint16(d[i:]) }
	u32 := func(i int) uint32 { return binary.LittleEndian.Uint32(d[i:]) }
	u64 := func(i int) uint64 { return binary.LittleEndian.Uint64(d[i:]) }
	switch {
	case typ == 1 && sub == 1 && len(d) == 2: // PCI
		return fmt.Sprintf("Pci(0x%x,0x%x)", d[1], d[0])
	case typ == 1 && sub == 4 && len(d) >= 16: // vendor hardware
		return vendorText("VenHw", d)
	case typ == 2 && sub == 1 && len(d) == 8: // ACPI
		hid, uid := u32(0), u32(4)
		switch hid {
		case 0x0a0341d0:
			return fmt.Sprintf("PciRoot(0x%x)", uid)
		case 0x0a0841d0:
			return fmt.Sprintf("PcieRoot(0x%x)", uid)
		}
		return fmt.Sprintf("Acpi(%s,0x%x)", eisaID(hid), uid)
	case typ == 3 && sub == 2 && len(d) == 4: // SCSI
		return fmt.Sprintf("Scsi(0x%x,0x%x)", u16(0), u16(2))
	case typ == 3 && sub == 5 && len(d) == 2: // USB
		return fmt.Sprintf("USB(0x%x,0x%x)", d[0], d[1])
	case typ == 3 && sub == 10 && len(d) >= 16: // vendor messaging
		return vendorText("VenMsg", d)
	case typ == 3 && sub == 11 && len(d) == 33: // MAC
		n := 6
		if d[32] != 0 && d[32] != 1 {
			n = 32
		}
		return fmt.Sprintf("MAC(%x,0x%x)", d[:n], d[32])
	case typ == 3 && sub == 12 && len(d) >= 8: // IPv4
		return fmt.Sprintf("IPv4(%s)", netip.AddrFrom4([4]byte(d[4:8])))
	case typ == 3 && sub == 13 && len(d) >= 32: // IPv6
		return fmt.Sprintf("IPv6(%s)", netip.AddrFrom16([16]byte(d[16:32])))
	case typ == 3 && sub == 18 && len(d) == 6: // SATA
		return fmt.Sprintf("Sata(0x%x,0x%x,0x%x)", u16(0), u16(2), u16(4))
	case typ == 3 && sub == 23 && len(d) == 12: // NVMe namespace
		e := d[4:12]
		return fmt.Sprintf("NVMe(0x%x,%02X-%02X-%02X-%02X-%02X-%02X-%02X-%02X)", u32(0), e[7], e[6], e[5], e[4], e[3], e[2], e[1], e[0])
	case typ == 3 && sub == 24: // URI
		return fmt.Sprintf("Uri(%s)", strings.ToValidUTF8(string(d), "\uFFFD"))
	case typ == 4 && sub == 1 && len(d) == 38: // hard drive
		sig := d[20:36]
		switch d[37] {
		case 1:
			return fmt.Sprintf("HD(%d,MBR,0x%08x,0x%x,0x%x)", u32(0), binary.LittleEndian.Uint32(sig), u64(4), u64(12))
		case 2:
			return fmt.Sprintf("HD(%d,GPT,%s,0x%x,0x%x)", u32(0), GUID(sig), u64(4), u64(12))
		}
		return fmt.Sprintf("HD(%d,%d,0,0x%x,0x%x)", u32(0), d[37], u64(4), u64(12))
	case typ == 4 && sub == 2 && len(d) == 20: // CD-ROM
		return fmt.Sprintf("CDROM(0x%x,0x%x,0x%x)", u32(0), u64(4), u64(12))
	case typ == 4 && sub == 3 && len(d) >= 16: // vendor media
		return vendorText("VenMedia", d)
	case typ == 4 && sub == 4: // file path
		return utf16String(d)
	case typ == 4 && sub == 6 && len(d) == 16: // PIWG firmware file
		return fmt.Sprintf("FvFile(%s)", GUID(d))
	case typ == 4 && sub == 7 && len(d) == 16: // PIWG firmware volume
		return fmt.Sprintf("Fv(%s)", GUID(d))
	case typ == 4 && sub == 8 && len(d) == 20: // relative offset range
		return fmt.Sprintf("Offset(0x%x,0x%x)", u64(4), u64(12))
	}
	return fmt.Sprintf("Path(%d,%d,%s)", typ, sub, hex.EncodeToString(d[:min(len(d), MaxDevicePathText/2)]))
}

func vendorText(name string, d []byte) string {
	if len(d) == 16 {
		return fmt.Sprintf("%s(%s)", name, GUID(d))
	}
	return fmt.Sprintf("%s(%s,%s)", name, GUID(d), hex.EncodeToString(d[16:min(len(d), MaxDevicePathText/2)]))
}

// eisaID formats a compressed EISA identifier ("PNP0A03").
func eisaID(id uint32) string {
	v := uint16(id)
	return fmt.Sprintf("%c%c%c%04X", 'A'-1+byte(v>>10&0x1f), 'A'-1+byte(v>>5&0x1f), 'A'-1+byte(v&0x1f), id>>16)
}
