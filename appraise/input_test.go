package appraise

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
)

// TestEvidenceValue: input.evidence is evidence.Result's JSON encoding
// plus the reuse flags, member for member.
func TestEvidenceValue(t *testing.T) {
	for _, res := range []*evidence.Result{
		{Valid: true, Enclave: enclave.TPM, Reasons: []evidence.Reason{}, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			Clock:            &evidence.Clock{Clock: 1 << 40, ResetCount: 3, RestartCount: 1, Safe: true, FirmwareVersion: 1<<63 + 5},
			PCRs:             map[string]map[int]string{"sha256": {0: "aa", 10: "bb"}, "sha1": {7: "cc"}},
			EventLogVerified: true, IMAVerified: true},
		{Enclave: enclave.Software, Reasons: []evidence.Reason{evidence.NonceMismatch, evidence.BadReportSignature},
			Messages: []string{"nonce-mismatch: x", "bad-report-signature: y"}, Time: time.Now()},
	} {
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		m["event_log_reused"], m["ima_reused"] = true, false
		// The attested facts are input.attested, not input.evidence.
		delete(m, "attested")
		m["event_log_detail"], m["ima_restarted"] = "", ""
		want, err := ast.InterfaceToValue(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := evidenceValue(res, reuse{eventLog: true}); got.Compare(want) != 0 {
			t.Errorf("evidence value\n got %v\nwant %v", got, want)
		}
	}
}

// TestStateRoundTrip: the compact state encoding loses nothing.
func TestStateRoundTrip(t *testing.T) {
	var st replayState
	st.V = stateVersion
	is := &imaState{Offset: 123, Entries: 4, PCRMask: 1 << 10, SHA256: map[string]string{"10": "0102030405060708091011121314151617181920212223242526272829303132"},
		SHA1: map[string]string{"10": "0102030405060708091011121314151617181920"}, FirstSum: hex32(1), LastSum: hex32(2)}
	st.IMA = is
	b, _ := json.Marshal(&st)
	_, got, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	back := fromIMA(got)
	b2, _ := json.Marshal(&replayState{V: stateVersion, IMA: back})
	if !bytes.Equal(b, b2) {
		t.Errorf("state changed:\n%s\n%s", b, b2)
	}
	for _, bad := range []string{`{"v":3}`, `{"v":1}`, `{"v":2,"ima":{"first_sum":"zz"}}`, `{"v":2,"ima":{"first_sum":"` + hex32(1) + `","last_sum":"` + hex32(1) + `","sha256":{"99":"00"}}}`, `[`} {
		if _, _, err := decodeState([]byte(bad)); err == nil {
			t.Errorf("state %s decodes", bad)
		}
	}
	if IMAOffset(b) != 123 || IMAOffset(nil) != 0 || IMAOffset([]byte("garbage")) != 0 {
		t.Error("IMAOffset")
	}
}

func hex32(b byte) string {
	return string(bytes.Repeat([]byte{'0', '0' + b}, 32))
}

// FuzzDecodeState: a stored replay state never panics the appraiser, and
// one that decodes encodes back to a state that decodes the same.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":2,"boot":{"log_sha256":"00","pcrs":{"0":"aa"}},"clock":{"reset_count":1,"restart_count":0}}` + "\n" + `{"secure_boot":true}`))
	f.Add([]byte(`{"v":2}` + "\n" + `{}`))
	is := &imaState{Offset: 9, Entries: 1, PCRMask: 1 << 10, SHA256: map[string]string{"10": hex32(3)}, FirstSum: hex32(1), LastSum: hex32(2)}
	b, _ := json.Marshal(&replayState{V: stateVersion, IMA: is})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		st, ist, err := decodeState(b)
		if err != nil {
			return
		}
		again := &replayState{V: stateVersion, Boot: st.Boot}
		if ist != nil {
			again.IMA = fromIMA(ist)
		}
		b2, err := encodeState(again)
		if err != nil {
			t.Fatal(err)
		}
		st2, ist2, err := decodeState(b2)
		if err != nil {
			t.Fatalf("re-encoded state %s: %v", b2, err)
		}
		if st.Boot != nil && !bytes.Equal(st.Boot.Facts, st2.Boot.Facts) {
			t.Fatalf("boot facts changed through a round trip: %q", b2)
		}
		if (ist == nil) != (ist2 == nil) || (ist != nil && (ist.Offset != ist2.Offset || ist.SHA256 != ist2.SHA256 || ist.SHA1 != ist2.SHA1)) {
			t.Fatalf("state changed through a round trip: %s", b2)
		}
		_ = IMAOffset(b)
	})
}
