package eventlog_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/internal/artifacts"
)

// The real logs in ../shared/data/eventlogs (see its README): captured
// on real machines, none written here.
var realLogs = []string{
	"coreos_36_shielded_vm_no_secure_boot_eventlog",
	"crypto_agile_eventlog",
	"ebs_event_missing_eventlog",
	"keylime_binary_bios_measurements",
	"option_rom_eventlog",
	"sb_cert_eventlog",
	"ubuntu_2104_shielded_vm_no_secure_boot_eventlog",
}

// logDir returns the shared event log directory; the test fails when it
// is missing or does not hold exactly the logs above.
func logDir(tb testing.TB) string {
	tb.Helper()
	dir := artifacts.SharedData(tb, "eventlogs")
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if len(names) != len(realLogs) {
		tb.Fatalf("%s holds %v, want %v", dir, names, realLogs)
	}
	for i := range names {
		if names[i] != realLogs[i] {
			tb.Fatalf("%s holds %v, want %v", dir, names, realLogs)
		}
	}
	return dir
}

func readLog(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(logDir(tb), name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustParse(tb testing.TB, b []byte) *eventlog.Log {
	tb.Helper()
	l, err := eventlog.Parse(b)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return l
}

// builder writes synthetic logs.
type builder struct {
	buf  bytes.Buffer
	algs []eventlog.AlgSize
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// tcg12 appends a TCG_PCR_EVENT.
func (b *builder) tcg12(pcr uint32, typ eventlog.EventType, digest []byte, data []byte) *builder {
	b.buf.Write(le32(pcr))
	b.buf.Write(le32(uint32(typ)))
	d := make([]byte, 20)
	copy(d, digest)
	b.buf.Write(d)
	b.buf.Write(le32(uint32(len(data))))
	b.buf.Write(data)
	return b
}

// specID returns a TCG_EfiSpecIDEventStruct for algs.
func specID(algs []eventlog.AlgSize) []byte {
	var s bytes.Buffer
	s.WriteString("Spec ID Event03\x00")
	s.Write(le32(0))                 // platform class
	s.Write([]byte{0, 2, 0, 2})      // minor, major, errata, uintn
	s.Write(le32(uint32(len(algs)))) // numberOfAlgorithms
	for _, a := range algs {
		s.Write(binary.LittleEndian.AppendUint16(nil, uint16(a.Alg)))
		s.Write(binary.LittleEndian.AppendUint16(nil, a.Size))
	}
	s.WriteByte(0) // vendorInfoSize
	return s.Bytes()
}

// agile starts a crypto-agile log with these algorithms.
func agile(algs ...eventlog.AlgSize) *builder {
	b := &builder{algs: algs}
	b.tcg12(0, eventlog.EvNoAction, nil, specID(algs))
	return b
}

// event appends a TCG_PCR_EVENT2 whose digests are data hashed with each
// algorithm (or, for an unknown one, bytes of 0xab).
func (b *builder) event(pcr uint32, typ eventlog.EventType, data []byte) *builder {
	b.buf.Write(le32(pcr))
	b.buf.Write(le32(uint32(typ)))
	b.buf.Write(le32(uint32(len(b.algs))))
	for _, a := range b.algs {
		b.buf.Write(binary.LittleEndian.AppendUint16(nil, uint16(a.Alg)))
		b.buf.Write(digestOf(a, data))
	}
	b.buf.Write(le32(uint32(len(data))))
	b.buf.Write(data)
	return b
}

func digestOf(a eventlog.AlgSize, data []byte) []byte {
	if typ := a.Alg; typ.New() != nil {
		h := typ.New()
		h.Write(data)
		return h.Sum(nil)
	}
	return bytes.Repeat([]byte{0xab}, int(a.Size))
}

func (b *builder) bytes() []byte { return bytes.Clone(b.buf.Bytes()) }

var (
	sha1Alg   = eventlog.AlgSize{Alg: eventlog.AlgSHA1, Size: 20}
	sha256Alg = eventlog.AlgSize{Alg: eventlog.AlgSHA256, Size: 32}
)
