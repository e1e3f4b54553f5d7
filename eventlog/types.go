package eventlog

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"
)

// Alg is a TPM_ALG_ID (TPM 2.0 Part 2, table 9).
type Alg uint16

// The digest algorithms of PCR banks.
const (
	AlgSHA1     Alg = 0x0004
	AlgSHA256   Alg = 0x000B
	AlgSHA384   Alg = 0x000C
	AlgSHA512   Alg = 0x000D
	AlgSM3_256  Alg = 0x0012
	AlgSHA3_256 Alg = 0x0027
	AlgSHA3_384 Alg = 0x0028
	AlgSHA3_512 Alg = 0x0029
)

var algInfo = map[Alg]struct {
	name string
	size int
	new  func() hash.Hash
}{
	AlgSHA1:     {"sha1", 20, sha1.New},
	AlgSHA256:   {"sha256", 32, sha256.New},
	AlgSHA384:   {"sha384", 48, sha512.New384},
	AlgSHA512:   {"sha512", 64, sha512.New},
	AlgSM3_256:  {"sm3_256", 32, newSM3},
	AlgSHA3_256: {"sha3_256", 32, func() hash.Hash { return sha3.New256() }},
	AlgSHA3_384: {"sha3_384", 48, func() hash.Hash { return sha3.New384() }},
	AlgSHA3_512: {"sha3_512", 64, func() hash.Hash { return sha3.New512() }},
}

// String is the bank name as tpm2-tools prints it ("sha256"), or
// "alg_0x0010" for an algorithm this package does not know.
func (a Alg) String() string {
	if i, ok := algInfo[a]; ok {
		return i.name
	}
	return fmt.Sprintf("alg_0x%04x", uint16(a))
}

// Size is the digest size of a known algorithm, 0 otherwise.
func (a Alg) Size() int { return algInfo[a].size }

// New returns a hash for the algorithm, or nil when it is not known (its
// bank can be parsed, with the size from the Spec ID event, but not
// replayed).
func (a Alg) New() hash.Hash {
	if i, ok := algInfo[a]; ok {
		return i.new()
	}
	return nil
}

// EventType is a TCG event type (PC Client Platform Firmware Profile,
// section 10.4.1).
type EventType uint32

// Event types.
const (
	EvPrebootCert           EventType = 0x00000000
	EvPostCode              EventType = 0x00000001
	EvUnused                EventType = 0x00000002
	EvNoAction              EventType = 0x00000003
	EvSeparator             EventType = 0x00000004
	EvAction                EventType = 0x00000005
	EvEventTag              EventType = 0x00000006
	EvSCRTMContents         EventType = 0x00000007
	EvSCRTMVersion          EventType = 0x00000008
	EvCPUMicrocode          EventType = 0x00000009
	EvPlatformConfigFlags   EventType = 0x0000000A
	EvTableOfDevices        EventType = 0x0000000B
	EvCompactHash           EventType = 0x0000000C
	EvIPL                   EventType = 0x0000000D
	EvIPLPartitionData      EventType = 0x0000000E
	EvNonhostCode           EventType = 0x0000000F
	EvNonhostConfig         EventType = 0x00000010
	EvNonhostInfo           EventType = 0x00000011
	EvOmitBootDeviceEvents  EventType = 0x00000012
	EvEFIEventBase          EventType = 0x80000000
	EvEFIVariableDriverCfg  EventType = 0x80000001
	EvEFIVariableBoot       EventType = 0x80000002
	EvEFIBootServicesApp    EventType = 0x80000003
	EvEFIBootServicesDriver EventType = 0x80000004
	EvEFIRuntimeServicesDrv EventType = 0x80000005
	EvEFIGPTEvent           EventType = 0x80000006
	EvEFIAction             EventType = 0x80000007
	EvEFIPlatformFwBlob     EventType = 0x80000008
	EvEFIHandoffTables      EventType = 0x80000009
	EvEFIPlatformFwBlob2    EventType = 0x8000000A
	EvEFIHandoffTables2     EventType = 0x8000000B
	EvEFIVariableBoot2      EventType = 0x8000000C
	EvEFIGPTEvent2          EventType = 0x8000000D
	EvEFIHCRTMEvent         EventType = 0x80000010
	EvEFIVariableAuthority  EventType = 0x800000E0
	EvEFISPDMFirmwareBlob   EventType = 0x800000E1
	EvEFISPDMFirmwareConfig EventType = 0x800000E2
	EvEFISPDMDevicePolicy   EventType = 0x800000E3
	EvEFISPDMDeviceAuth     EventType = 0x800000E4
)

var eventTypeNames = map[EventType]string{
	EvPrebootCert:           "EV_PREBOOT_CERT",
	EvPostCode:              "EV_POST_CODE",
	EvUnused:                "EV_UNUSED",
	EvNoAction:              "EV_NO_ACTION",
	EvSeparator:             "EV_SEPARATOR",
	EvAction:                "EV_ACTION",
	EvEventTag:              "EV_EVENT_TAG",
	EvSCRTMContents:         "EV_S_CRTM_CONTENTS",
	EvSCRTMVersion:          "EV_S_CRTM_VERSION",
	EvCPUMicrocode:          "EV_CPU_MICROCODE",
	EvPlatformConfigFlags:   "EV_PLATFORM_CONFIG_FLAGS",
	EvTableOfDevices:        "EV_TABLE_OF_DEVICES",
	EvCompactHash:           "EV_COMPACT_HASH",
	EvIPL:                   "EV_IPL",
	EvIPLPartitionData:      "EV_IPL_PARTITION_DATA",
	EvNonhostCode:           "EV_NONHOST_CODE",
	EvNonhostConfig:         "EV_NONHOST_CONFIG",
	EvNonhostInfo:           "EV_NONHOST_INFO",
	EvOmitBootDeviceEvents:  "EV_OMIT_BOOT_DEVICE_EVENTS",
	EvEFIEventBase:          "EV_EFI_EVENT_BASE",
	EvEFIVariableDriverCfg:  "EV_EFI_VARIABLE_DRIVER_CONFIG",
	EvEFIVariableBoot:       "EV_EFI_VARIABLE_BOOT",
	EvEFIBootServicesApp:    "EV_EFI_BOOT_SERVICES_APPLICATION",
	EvEFIBootServicesDriver: "EV_EFI_BOOT_SERVICES_DRIVER",
	EvEFIRuntimeServicesDrv: "EV_EFI_RUNTIME_SERVICES_DRIVER",
	EvEFIGPTEvent:           "EV_EFI_GPT_EVENT",
	EvEFIAction:             "EV_EFI_ACTION",
	EvEFIPlatformFwBlob:     "EV_EFI_PLATFORM_FIRMWARE_BLOB",
	EvEFIHandoffTables:      "EV_EFI_HANDOFF_TABLES",
	EvEFIPlatformFwBlob2:    "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
	EvEFIHandoffTables2:     "EV_EFI_HANDOFF_TABLES2",
	EvEFIVariableBoot2:      "EV_EFI_VARIABLE_BOOT2",
	EvEFIGPTEvent2:          "EV_EFI_GPT_EVENT2",
	EvEFIHCRTMEvent:         "EV_EFI_HCRTM_EVENT",
	EvEFIVariableAuthority:  "EV_EFI_VARIABLE_AUTHORITY",
	EvEFISPDMFirmwareBlob:   "EV_EFI_SPDM_FIRMWARE_BLOB",
	EvEFISPDMFirmwareConfig: "EV_EFI_SPDM_FIRMWARE_CONFIG",
	EvEFISPDMDevicePolicy:   "EV_EFI_SPDM_DEVICE_POLICY",
	EvEFISPDMDeviceAuth:     "EV_EFI_SPDM_DEVICE_AUTHORITY",
}

// String is the TCG name ("EV_SEPARATOR"), or "EV_0x%08x" for a type the
// specification does not define.
func (t EventType) String() string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("EV_0x%08x", uint32(t))
}
