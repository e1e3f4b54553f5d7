package ear

import (
	"errors"
	"fmt"
	"sort"
	"time"

	veraison "github.com/veraison/ear"

	"github.com/vigil-attest/vigil/verdict"
)

// Requirement is what a relying party demands of a verified session
// report beyond its validity: the level, trust-vector claims, age and
// audience. The zero Requirement demands nothing.
type Requirement struct {
	// MinLevel is the lowest level admitted (0–4) [LevelTooLow].
	MinLevel int
	// TrustVector names EAR trust-vector claims (their JSON names:
	// "hardware", "executables", "configuration", …) and the worst tier
	// each may be in: "affirming" (value 2–31) or "warning" (2–95). A
	// claim absent from the report (EAR omits "no claim") fails
	// [TrustVectorClaim].
	TrustVector map[string]string
	// MaxAge, when set, bounds how long ago the report was issued (iat)
	// [TooOld].
	MaxAge time.Duration
	// Audience, when set, must be named by the report's aud [ReportAudience]
	// (a report for no audience fails too).
	Audience string
}

// Require checks a verified report against r at now; the first failing
// check decides: MinLevel, TrustVector (claims in name order), MaxAge,
// Audience. An invalid Requirement (a level out of 0–4, a tier other than
// affirming or warning) is an error without a Code.
func (v *Verified) Require(r Requirement, now time.Time) error {
	if v == nil {
		return errors.New("ear: Require needs a verified report")
	}
	if !verdict.Level(r.MinLevel).Valid() {
		return fmt.Errorf("ear: Require: minimum level %d is not 0–%d", r.MinLevel, int(verdict.MaxLevel))
	}
	c := &v.Claims
	if c.Level < r.MinLevel {
		return fail(LevelTooLow, "level %d (%s), the relying party requires %d (%s)", c.Level, verdict.Level(c.Level), r.MinLevel, verdict.Level(r.MinLevel))
	}
	names := make([]string, 0, len(r.TrustVector))
	for n := range r.TrustVector {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		worst := veraison.TrustTierAffirming
		switch r.TrustVector[n] {
		case verdict.Affirming:
		case verdict.Warning:
			worst = veraison.TrustTierWarning
		default:
			return fmt.Errorf("ear: Require: trust vector %q: tier %q is not affirming or warning", n, r.TrustVector[n])
		}
		val, ok := c.TrustVector[n]
		if !ok {
			return fail(TrustVectorClaim, "the report makes no %s claim; %s is required", n, r.TrustVector[n])
		}
		tier := veraison.TrustClaim(val).GetTier()
		if tier == veraison.TrustTierNone || tier > worst {
			return fail(TrustVectorClaim, "%s is %d (%s); %s or better is required", n, val, veraison.TrustTierToString[tier], r.TrustVector[n])
		}
	}
	if r.MaxAge > 0 && now.Sub(c.IssuedAt) > r.MaxAge+Leeway {
		return fail(TooOld, "issued at %v, more than %v before %v", c.IssuedAt.UTC(), r.MaxAge, now.UTC())
	}
	if r.Audience != "" && !contains(c.Audience, r.Audience) {
		return fail(ReportAudience, "the session report is for %.200q, not %q", c.Audience, r.Audience)
	}
	return nil
}
