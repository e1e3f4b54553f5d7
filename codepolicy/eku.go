package codepolicy

import (
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
)

// ekuName is one named extended key usage.
type ekuName struct {
	name string
	oid  string
}

// ekuNames lists the EKU names require_eku accepts, canonical spelling first.
// The Microsoft OIDs are the szOID_* values of wincrypt.h.
var ekuNames = []ekuName{
	{"serverAuth", "1.3.6.1.5.5.7.3.1"},
	{"clientAuth", "1.3.6.1.5.5.7.3.2"},
	{"codeSigning", "1.3.6.1.5.5.7.3.3"},
	{"emailProtection", "1.3.6.1.5.5.7.3.4"},
	{"timeStamping", "1.3.6.1.5.5.7.3.8"},
	{"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
	// Linux: the "module signing only" EKU that shim refuses for boot images.
	{"linuxModuleSigning", "1.3.6.1.4.1.2312.16.1.2"},
	// Windows.
	{"kernelModeCodeSigning", "1.3.6.1.4.1.311.61.1.1"},             // szOID_KP_KERNEL_MODE_CODE_SIGNING
	{"earlyLaunchAntimalware", "1.3.6.1.4.1.311.61.4.1"},            // szOID_KP_KERNEL_MODE_TRUSTED_BOOT_SIGNING
	{"halExtension", "1.3.6.1.4.1.311.61.5.1"},                      // szOID_KP_KERNEL_MODE_HAL_EXTENSION_SIGNING
	{"whqlCrypto", "1.3.6.1.4.1.311.10.3.5"},                        // szOID_WHQL_CRYPTO, "Windows Hardware Driver Verification"
	{"windowsHardwareDriverVerification", "1.3.6.1.4.1.311.10.3.5"}, // alias of whqlCrypto
	{"windowsHardwareDriverAttestedVerification", "1.3.6.1.4.1.311.10.3.5.1"},
	{"windowsHardwareDriverExtendedVerification", "1.3.6.1.4.1.311.10.3.39"},
	{"windowsSystemComponent", "1.3.6.1.4.1.311.10.3.6"},         // szOID_NT5_CRYPTO
	{"oemWindowsSystemComponent", "1.3.6.1.4.1.311.10.3.7"},      // szOID_OEM_WHQL_CRYPTO
	{"embeddedWindowsSystemComponent", "1.3.6.1.4.1.311.10.3.8"}, // szOID_EMBEDDED_NT_CRYPTO
	{"lifetimeSigning", "1.3.6.1.4.1.311.10.3.13"},               // szOID_KP_LIFETIME_SIGNING
	{"windowsKitsComponent", "1.3.6.1.4.1.311.10.3.20"},          // szOID_WINDOWS_KITS_SIGNER
	{"windowsRTVerification", "1.3.6.1.4.1.311.10.3.21"},         // szOID_WINDOWS_RT_SIGNER
	{"protectedProcessLight", "1.3.6.1.4.1.311.10.3.22"},         // szOID_PROTECTED_PROCESS_LIGHT_SIGNER
	{"windowsTCBComponent", "1.3.6.1.4.1.311.10.3.23"},           // szOID_WINDOWS_TCB_SIGNER
	{"protectedProcess", "1.3.6.1.4.1.311.10.3.24"},              // szOID_PROTECTED_PROCESS_SIGNER
	{"windowsThirdPartyComponent", "1.3.6.1.4.1.311.10.3.25"},    // szOID_WINDOWS_THIRD_PARTY_COMPONENT_SIGNER
	{"windowsSoftwareExtension", "1.3.6.1.4.1.311.10.3.26"},      // szOID_WINDOWS_SOFTWARE_EXTENSION_SIGNER
}

// ekuAny is the require_eku value that means "no EKU requirement".
const ekuAny = "any"

func mustOID(s string) asn1.ObjectIdentifier {
	o, err := parseOID(s)
	if err != nil {
		panic(err)
	}
	return o
}

// parseOID parses a dotted object identifier such as "1.3.6.1.5.5.7.3.3".
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1<<31-1 {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("%q is not a valid OID", s)
	}
	return oid, nil
}

// resolveEKU maps a require_eku entry (a name, case-insensitive, or a dotted
// OID) to its canonical spelling and OID. "any" returns a nil OID.
func resolveEKU(s string) (canonical string, oid asn1.ObjectIdentifier, err error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, ekuAny) {
		return ekuAny, nil, nil
	}
	if t != "" && t[0] >= '0' && t[0] <= '9' {
		oid, err := parseOID(t)
		if err != nil {
			return "", nil, err
		}
		// Prefer the name when the OID has one.
		for _, e := range ekuNames {
			if e.oid == oid.String() {
				return e.name, oid, nil
			}
		}
		return oid.String(), oid, nil
	}
	for _, e := range ekuNames {
		if strings.EqualFold(e.name, t) {
			// Aliases resolve to the first name with the same OID.
			for _, c := range ekuNames {
				if c.oid == e.oid {
					return c.name, mustOID(c.oid), nil
				}
			}
		}
	}
	return "", nil, fmt.Errorf("unknown EKU name %q (use a dotted OID or one of: %s)", s, ekuNameList())
}

func ekuNameList() string {
	names := []string{ekuAny}
	for _, e := range ekuNames {
		names = append(names, e.name)
	}
	return strings.Join(names, ", ")
}

// EKUNames returns the EKU names require_eku accepts, mapped to their OIDs.
// "any" (no requirement) is not in the map.
func EKUNames() map[string]string {
	m := make(map[string]string, len(ekuNames))
	for _, e := range ekuNames {
		m[e.name] = e.oid
	}
	return m
}
