package eventlog_test

import "testing"

// BenchmarkParseReplay parses and replays the largest real log (72 KB,
// option_rom_eventlog) and the largest crypto-agile one (49 KB, two
// banks).
func BenchmarkParseReplay(b *testing.B) {
	for _, name := range []string{"option_rom_eventlog", "keylime_binary_bios_measurements"} {
		data := readLog(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				l := mustParse(b, data)
				_ = l.Replay()
			}
		})
	}
}

func BenchmarkSummarize(b *testing.B) {
	l := mustParse(b, readLog(b, "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"))
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Summarize()
	}
}
