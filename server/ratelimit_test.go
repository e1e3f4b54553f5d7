package server

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(2, 3)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("past the burst: %v, wait %v", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another key was limited")
	}
	if ok, _ := l.allow("a", now.Add(499*time.Millisecond)); ok {
		t.Fatal("refilled early")
	}
	if ok, _ := l.allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("not refilled at the rate")
	}
	// A clock going back does not add tokens.
	if ok, _ := l.allow("a", now); ok {
		t.Fatal("a backwards clock refilled")
	}
	// Refilled buckets are forgotten.
	l.sweep(now.Add(time.Hour))
	if n := l.size(); n != 0 {
		t.Fatalf("%d buckets after the sweep", n)
	}
	if ok, _ := newLimiter(-1, 0).allow("a", now); !ok {
		t.Fatal("a disabled limiter refused")
	}
}

// TestLimiterBounded: a flood of distinct keys cannot grow the limiter
// past its bound; the overflow shares one budget per shard.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter(1, 1)
	l.max = 4
	now := time.Unix(1000, 0)
	for i := range 10000 {
		l.allow("k"+strconv.Itoa(i), now)
	}
	if n := l.size(); n > (l.max+1)*limiterShards {
		t.Fatalf("%d buckets, bound %d", n, (l.max+1)*limiterShards)
	}
}
