package eventlog_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/vigil-attest/vigil/eventlog"
)

// FuzzParse runs everything the package does on arbitrary bytes, seeded
// with every real log: no panic, every error in a category, and what
// parses is consistent.
func FuzzParse(f *testing.F) {
	for _, name := range realLogs {
		f.Add(readLog(f, name))
	}
	loc := append([]byte("StartupLocality\x00"), 3)
	f.Add(agile(sha1Alg, sha256Alg).event(0, eventlog.EvNoAction, loc).event(0, eventlog.EvSeparator, make([]byte, 4)).bytes())
	f.Add(agile(eventlog.AlgSize{Alg: 0x0099, Size: 5}, sha256Alg).event(7, eventlog.EvEFIVariableDriverCfg, variable(eventlog.GUIDGlobalVariable, "SecureBoot", []byte{1})).bytes())
	f.Add(new(builder).tcg12(4, eventlog.EvEFIBootServicesApp, nil, make([]byte, 40)).bytes())
	f.Add(agile(sha256Alg).event(8, eventlog.EvIPL, []byte("grub_cmd: linux /vmlinuz\x00")).
		event(8, eventlog.EvIPL, []byte("kernel_cmdline: /vmlinuz ro\x00")).event(14, eventlog.EvIPL, []byte("MokList\x00")).
		event(4, eventlog.EvSeparator, make([]byte, 4)).event(5, eventlog.EvEFIAction, []byte("Exit Boot Services Invocation")).bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := eventlog.Parse(b)
		if err != nil {
			if eventlog.Code(err) == "" {
				t.Fatalf("error without a category: %v", err)
			}
			return
		}
		if len(l.Events) == 0 || len(l.Events) > eventlog.MaxEvents {
			t.Fatalf("%d events", len(l.Events))
		}
		banks := l.Banks()
		prev := -1
		for i, e := range l.Events {
			if e.Num != i || e.Offset <= prev || e.Offset >= len(b) {
				t.Fatalf("event %d: num %d offset %d after %d", i, e.Num, e.Offset, prev)
			}
			prev = e.Offset
			if l.SpecID != nil && i > 0 && len(e.Digests) != len(banks) {
				t.Fatalf("event %d: %d digests for %d banks", i, len(e.Digests), len(banks))
			}
			for _, d := range e.Digests {
				if n := d.Alg.Size(); n != 0 && len(d.Value) != n {
					t.Fatalf("event %d: %s digest of %d bytes", i, d.Alg, len(d.Value))
				}
			}
		}
		if l.Padding < 0 || !allZero(b[len(b)-l.Padding:]) {
			t.Fatalf("padding %d is not zeros", l.Padding)
		}
		r := l.Replay()
		for alg, pcrs := range r {
			for i, v := range pcrs {
				if len(v) != alg.Size() {
					t.Fatalf("%s PCR %d: %d bytes", alg, i, len(v))
				}
			}
		}
		_ = r.Hex()
		s := l.Summarize()
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("summary does not marshal: %v", err)
		}
		_ = s.SeparatorStates()
		_ = s.SecureBoot()
		// Parsing is a pure function of the input.
		l2, err := eventlog.Parse(bytes.Clone(b))
		if err != nil || len(l2.Events) != len(l.Events) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}
