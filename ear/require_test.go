package ear_test

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/ear"
)

func TestRequire(t *testing.T) {
	s := newService(t)
	tok, err := s.iss.Issue(context.Background(), &ear.Claims{AgentID: "web-01", Level: 3, Status: "affirming", Audience: []string{"rp"},
		TrustVector: map[string]int{"hardware": 2, "executables": 33, "configuration": 96}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := ear.Verify(tok, s.roots, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    ear.Requirement
		now  time.Time
		code ear.Code
	}{
		{"nothing", ear.Requirement{}, epoch, ""},
		{"all held", ear.Requirement{MinLevel: 3, TrustVector: map[string]string{"hardware": "affirming", "executables": "warning"}, MaxAge: time.Minute, Audience: "rp"}, epoch.Add(time.Minute), ""},
		{"level 4", ear.Requirement{MinLevel: 4}, epoch, ear.LevelTooLow},
		{"executables affirming", ear.Requirement{TrustVector: map[string]string{"executables": "affirming"}}, epoch, ear.TrustVectorClaim},
		{"configuration contraindicated", ear.Requirement{TrustVector: map[string]string{"configuration": "warning"}}, epoch, ear.TrustVectorClaim},
		{"no storage-opaque claim", ear.Requirement{TrustVector: map[string]string{"storage-opaque": "warning"}}, epoch, ear.TrustVectorClaim},
		{"too old", ear.Requirement{MaxAge: time.Minute}, epoch.Add(2 * time.Minute), ear.TooOld},
		{"another audience", ear.Requirement{Audience: "shop"}, epoch, ear.ReportAudience},
	} {
		if err := v.Require(tc.r, tc.now); ear.Of(err) != tc.code || (tc.code == "") != (err == nil) {
			t.Errorf("%s: %v (code %q), want %q", tc.name, err, ear.Of(err), tc.code)
		}
	}
	if err := v.Require(ear.Requirement{MinLevel: 5}, epoch); err == nil || ear.Of(err) != "" {
		t.Errorf("an invalid requirement: %v", err)
	}
	if err := v.Require(ear.Requirement{TrustVector: map[string]string{"hardware": "contraindicated"}}, epoch); err == nil || ear.Of(err) != "" {
		t.Errorf("an invalid tier: %v", err)
	}
}
