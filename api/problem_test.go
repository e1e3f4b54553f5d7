package api

import "testing"

// TestProblemCodes: every problem code of api.go has a title and the
// status its comment there states (codeStatuses, shared with the OpenAPI
// test).
func TestProblemCodes(t *testing.T) {
	want := codeStatuses(t)
	for code, st := range want {
		if ProblemStatus[code] != st || ProblemTitles[code] == "" {
			t.Errorf("%s: status %d title %q, api.go says %d", code, ProblemStatus[code], ProblemTitles[code], st)
		}
	}
	if n := len(want); n != len(ProblemStatus) || n != len(ProblemTitles) {
		t.Errorf("%d codes in api.go, %d statuses, %d titles", n, len(ProblemStatus), len(ProblemTitles))
	}
}
