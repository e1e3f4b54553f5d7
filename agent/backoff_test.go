package agent

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// TestBackoff: waits double from min to max, each in the upper half of
// its range; Retry-After lengthens a wait up to max; reset starts over.
func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 5 * time.Minute, rand: rand.New(rand.NewPCG(1, 2))}
	ceil := time.Second
	for i := range 20 {
		d := b.next(errors.New("down"))
		if d < ceil/2 || d > ceil {
			t.Fatalf("wait %d: %v, want in [%v, %v]", i, d, ceil/2, ceil)
		}
		ceil = min(2*ceil, 5*time.Minute)
	}
	b.reset()
	if d := b.next(nil); d > time.Second {
		t.Errorf("after reset: %v", d)
	}
	if d := b.next(&ProblemError{Status: 429, RetryAfter: 40 * time.Second}); d != 40*time.Second {
		t.Errorf("Retry-After 40s: %v", d)
	}
	if d := b.next(&ProblemError{Status: 503, RetryAfter: time.Hour}); d != 5*time.Minute {
		t.Errorf("Retry-After 1h: %v, want capped at 5m", d)
	}
}

// TestIntervalJitter: Interval ± Jitter, spread over the whole range.
func TestIntervalJitter(t *testing.T) {
	a := &Agent{o: Options{Interval: time.Minute, Jitter: DefaultJitter}, rand: rand.New(rand.NewPCG(3, 4))}
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := a.interval()
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 54*time.Second || hi > 66*time.Second || lo > 55*time.Second || hi < 65*time.Second {
		t.Errorf("intervals in [%v, %v], want spread over [54s, 66s]", lo, hi)
	}
}
