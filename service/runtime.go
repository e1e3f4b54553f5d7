package service

import (
	"os"
	"runtime/debug"
)

// The service's garbage-collector settings. An attestation allocates
// about 170 KB that dies at once (decoded evidence, the policy input, the
// EAR), so with Go's default GOGC=100 the collector takes about a third
// of the CPU. GCPercent 400 trades memory for CPU (≈30 % more
// appraisals per core), and MemoryLimit keeps the heap bounded: near it
// the collector runs as often as it must.
const (
	GCPercent   = 400
	MemoryLimit = 256 << 20
)

// TuneRuntime applies GCPercent and MemoryLimit, unless the operator set
// GOGC or GOMEMLIMIT, which win. `vigil server` and `vigil up` call it;
// it returns a function that restores the previous settings.
func TuneRuntime() (restore func()) {
	gc, mem := int(-2), int64(-1)
	if _, ok := os.LookupEnv("GOGC"); !ok {
		gc = debug.SetGCPercent(GCPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		mem = debug.SetMemoryLimit(MemoryLimit)
	}
	return func() {
		if gc != -2 {
			debug.SetGCPercent(gc)
		}
		if mem >= 0 {
			debug.SetMemoryLimit(mem)
		}
	}
}
