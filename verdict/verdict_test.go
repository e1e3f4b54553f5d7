package verdict_test

import (
	"testing"

	"github.com/vigil-attest/vigil/verdict"
)

func TestLevels(t *testing.T) {
	for _, c := range []struct {
		l            verdict.Level
		name, status string
		valid        bool
	}{
		{-1, "level--1", verdict.Contraindicated, false},
		{verdict.Untrusted, "untrusted", verdict.Contraindicated, true},
		{verdict.Software, "software-rooted", verdict.Warning, true},
		{verdict.Hardware, "hardware-rooted", verdict.Affirming, true},
		{verdict.Measured, "measured-and-enforced", verdict.Affirming, true},
		{verdict.Hardened, "hardened", verdict.Affirming, true},
		{verdict.MaxLevel + 1, "level-5", verdict.Affirming, false},
	} {
		if got := c.l.String(); got != c.name {
			t.Errorf("Level(%d).String() = %q, want %q", int(c.l), got, c.name)
		}
		if got := verdict.StatusOf(c.l); got != c.status {
			t.Errorf("StatusOf(%d) = %q, want %q", int(c.l), got, c.status)
		}
		if got := c.l.Valid(); got != c.valid {
			t.Errorf("Level(%d).Valid() = %v, want %v", int(c.l), got, c.valid)
		}
	}
}
