package cli

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestExtractionGC: while kernel keys are extracted the collector runs at
// extractionGCPercent; concurrent extractions share the setting and the last
// one restores what was there before; a lower setting is kept; GOGC set by
// the operator is left alone.
func TestExtractionGC(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	defer debug.SetGCPercent(debug.SetGCPercent(300))
	gc := func() int { v := debug.SetGCPercent(-1); debug.SetGCPercent(v); return v }

	a := extractionGC()
	if got := gc(); got != extractionGCPercent {
		t.Fatalf("during an extraction: GOGC %d, want %d", got, extractionGCPercent)
	}
	b := extractionGC()
	a()
	a() // a second call does nothing
	if got := gc(); got != extractionGCPercent {
		t.Fatalf("with one extraction left: GOGC %d", got)
	}
	b()
	if got := gc(); got != 300 {
		t.Fatalf("after the extractions: GOGC %d, want 300", got)
	}

	debug.SetGCPercent(5)
	c := extractionGC()
	if got := gc(); got != 5 {
		t.Fatalf("a lower setting: GOGC %d, want 5 kept", got)
	}
	c()
	if got := gc(); got != 5 {
		t.Fatalf("after: GOGC %d, want 5", got)
	}

	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	d := extractionGC()
	if got := gc(); got != 200 {
		t.Fatalf("GOGC=200 in the environment: GOGC %d during an extraction", got)
	}
	d()
}
