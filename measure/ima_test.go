package measure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/artifacts"
)

// imaTree writes list as the binary IMA list of a new tree (nil: none).
func imaTree(tb testing.TB, list []byte) string {
	tb.Helper()
	dir := tb.TempDir()
	if list != nil {
		imaWrite(tb, dir, list)
	}
	return dir
}

func imaWrite(tb testing.TB, dir string, list []byte) {
	tb.Helper()
	p := filepath.Join(dir, filepath.FromSlash(imaListPath))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, list, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// imaSharedList is the binary form of one of the real Keylime lists.
func imaSharedList(tb testing.TB, name string) []byte {
	tb.Helper()
	f, err := os.Open(artifacts.SharedData(tb, "ima/"+name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	recs, err := ima.ParseASCII(f, ima.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	if err := ima.EncodeBinary(&b, recs); err != nil {
		tb.Fatal(err)
	}
	return []byte(b.String())
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestIMAClaims checks the exact claims and their JSON names on the real
// Keylime lists; the PCR values are those the ima package's tests check
// against an openssl replay.
func TestIMAClaims(t *testing.T) {
	tests := []struct {
		file string
		want IMA
		json string
	}{
		{"keylime_ima-log-sha256", IMA{
			Section: Section{Status: StatusOK}, Entries: 2,
			PCR10:     IMAPCR{SHA1: "8adcb4304b78ee782bbba3733b191591e75dc83d", SHA256: "8dcd5e7eb63e363377ec19b0d358601ccc19f25a30486f35784c5288dbb91d9d"},
			Templates: map[string]int{"ima-ng": 2}, Offset: 193,
			BootAggregate: "sha256:f4845392eca429a4c941a6a07fc32faf843a88c5c3dfa3b9329ab8f4171d9ce3",
		}, `{"status":"ok","entries":2,"violations":0,"pcr10":{"sha1":"8adcb4304b78ee782bbba3733b191591e75dc83d","sha256":"8dcd5e7eb63e363377ec19b0d358601ccc19f25a30486f35784c5288dbb91d9d"},"template_hash_mismatches":0,"templates":{"ima-ng":2},"offset":193,"boot_aggregate":"sha256:f4845392eca429a4c941a6a07fc32faf843a88c5c3dfa3b9329ab8f4171d9ce3"}`},
		{"keylime_ima-log-sha1", IMA{
			Section: Section{Status: StatusOK}, Entries: 2, Violations: 1,
			PCR10:     IMAPCR{SHA1: "62e5bdf4783228f7deec959f0a89a4739af79ac5", SHA256: "37c153b0a390c91993992d79eb0b9b05b5cb9085c6179528e1b71694ed19896c"},
			Templates: map[string]int{"ima-ng": 2}, Offset: 165,
			BootAggregate: "sha1:0000000000000000000000000000000000000000",
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			list := imaSharedList(t, tt.file)
			src := hostfs.New(imaTree(t, list))
			got := (&imaCollector{}).collect(context.Background(), src)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			if in := src.Inputs()[imaListPath]; in != sha256hex(list) {
				t.Fatalf("input digest %q, want %q", in, sha256hex(list))
			}
			if tt.json != "" {
				b, err := json.Marshal(got)
				if err != nil || string(b) != tt.json {
					t.Fatalf("JSON %s (%v)\nwant %s", b, err, tt.json)
				}
			}
		})
	}
}

// TestIMAStatus checks the section's status for an absent or broken list.
func TestIMAStatus(t *testing.T) {
	good := imatest.List(5)
	huge := append([]byte(nil), good...)
	huge[len(imatest.List(1))+28+6] = 0xff // entry 1's template data length
	huge[len(imatest.List(1))+28+6+3] = 0x7f
	tests := []struct {
		name   string
		list   []byte
		status Status
		err    string
	}{
		{"absent", nil, StatusUnavailable, "no such file"},
		{"empty", []byte{}, StatusOK, ""},
		{"garbage", []byte("this is not an IMA list, it is text"), StatusError, "entry 0 at offset 0"},
		{"truncated", good[:len(good)-5], StatusError, "truncated"},
		{"huge length", huge, StatusError, "entry 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := hostfs.New(imaTree(t, tt.list))
			got := (&imaCollector{}).collect(context.Background(), src)
			if got.Status != tt.status || !strings.Contains(got.Error, tt.err) || got.Templates == nil {
				t.Fatalf("got %+v", got)
			}
			_, recorded := src.Inputs()[imaListPath]
			if recorded != (tt.status == StatusOK) {
				t.Fatalf("input recorded: %v", recorded)
			}
			if tt.status == StatusOK && (got.PCR10.SHA1 != strings.Repeat("0", 40) || got.Entries != 0) {
				t.Fatalf("empty list: %+v", got)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := (&imaCollector{}).collect(ctx, hostfs.New(imaTree(t, good))); got.Status != StatusError || !strings.Contains(got.Error, "canceled") {
		t.Fatalf("cancelled: %+v", got)
	}
}

// countingSource counts the bytes read from the IMA list.
type countingSource struct {
	*hostfs.Dir
	n int64
}

func (s *countingSource) Open(name string) (hostfs.File, error) {
	f, err := s.Dir.Open(name)
	if err != nil || name != imaListPath {
		return f, err
	}
	return &countingFile{f, &s.n}, nil
}

type countingFile struct {
	hostfs.File
	n *int64
}

func (f *countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	*f.n += int64(n)
	return n, err
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	*f.n += int64(n)
	return n, err
}

// TestIMAIncremental grows, replaces and breaks the list between
// measurements by one Measurer: each result equals a fresh Measurer's,
// and a grown list is read from its last entry on, not from the start.
func TestIMAIncremental(t *testing.T) {
	const n = 3000
	all := imatest.List(n)
	var ends []int
	for _, r := range imatest.Records(n) {
		b, _ := ima.AppendBinary(nil, &r)
		prev := 0
		if len(ends) > 0 {
			prev = ends[len(ends)-1]
		}
		ends = append(ends, prev+len(b))
	}
	dir := imaTree(t, all[:ends[999]])
	m := New(Options{})
	measure := func(m *Measurer) (IMA, map[string]string, int64) {
		t.Helper()
		src := &countingSource{Dir: hostfs.New(dir)}
		r, err := m.Measure(context.Background(), src)
		if err != nil {
			t.Fatal(err)
		}
		return r.IMA, r.Inputs, src.n
	}
	check := func(step string, list []byte, maxRead int64) {
		t.Helper()
		got, inputs, read := measure(m)
		fresh, _, _ := measure(New(Options{}))
		if !reflect.DeepEqual(got, fresh) {
			t.Fatalf("%s: incremental %+v\nfresh %+v", step, got, fresh)
		}
		if got.Status == StatusOK && inputs[imaListPath] != sha256hex(list) {
			t.Fatalf("%s: input digest %s, want %s", step, inputs[imaListPath], sha256hex(list))
		}
		if read > maxRead {
			t.Fatalf("%s: read %d bytes, at most %d expected", step, read, maxRead)
		}
	}
	// A warm measurement reads the first entry, the last one it replayed
	// and what follows.
	first := int64(ends[0])
	check("first", all[:ends[999]], int64(ends[999]))
	check("unchanged", all[:ends[999]], first+int64(ends[999]-ends[998]))
	imaWrite(t, dir, all[:ends[1999]])
	check("grown", all[:ends[1999]], first+int64(ends[1999]-ends[998]))
	imaWrite(t, dir, all)
	check("grown again", all, first+int64(len(all)-ends[1998]))

	// Another boot's list whose entries have the same sizes and whose last
	// entry is the same: its boot_aggregate differs.
	other := append(imaList(t, "boot_aggregate"), all[ends[0]:]...)
	if len(other) != len(all) {
		t.Fatal("fixture: the other list should have the same size")
	}
	imaWrite(t, dir, other)
	check("replaced", other, first+int64(len(other)))
	// A shorter list.
	imaWrite(t, dir, all[:ends[10]])
	check("shrunk", all[:ends[10]], first+int64(ends[10]))
	// A partial entry at the end: error, then a fresh start.
	imaWrite(t, dir, all[:ends[20]+9])
	check("partial", all[:ends[20]+9], int64(ends[20]+9))
	imaWrite(t, dir, all[:ends[30]])
	check("repaired", all[:ends[30]], int64(ends[30]))
	// A new boot with the same list: read again from the start.
	bootID := filepath.Join(dir, filepath.FromSlash(bootIDPath))
	if err := os.MkdirAll(filepath.Dir(bootID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bootID, []byte("8f1c5f3e-0000-4000-8000-000000000001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("new boot", all[:ends[30]], int64(ends[30]))
	check("same boot", all[:ends[30]], first+int64(ends[30]-ends[29]))
	// Absent: unavailable, and the state is dropped.
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(imaListPath))); err != nil {
		t.Fatal(err)
	}
	check("absent", nil, 0)
	if m.ima.valid {
		t.Fatal("state kept for an absent list")
	}
}

// imaList encodes one ima-ng entry with a digest other than imatest's.
func imaList(t *testing.T, name string) []byte {
	r := ima.Record{PCR: 10, Template: "ima-ng", DigestAlgo: "sha256", Digest: make([]byte, 32), Name: name}
	r.Digest[0] = 1
	if err := r.SetTemplateHash(); err != nil {
		t.Fatal(err)
	}
	b, err := ima.AppendBinary(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkIMACollector measures the IMA section on a 10,000-entry list:
// cold (a new collector: the whole list read and replayed) and warm (the
// agent's steady state: nothing new since the last measurement).
func BenchmarkIMACollector(b *testing.B) {
	list := imatest.List(10000)
	dir := imaTree(b, list)
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			c := &imaCollector{}
			if warm {
				c.collect(context.Background(), hostfs.New(dir))
			}
			b.ReportAllocs()
			for b.Loop() {
				if !warm {
					c = &imaCollector{}
				}
				if got := c.collect(context.Background(), hostfs.New(dir)); got.Status != StatusOK || got.Entries != 10000 {
					b.Fatalf("%+v", got)
				}
			}
		})
	}
}
