package layers

import "testing"

// TestGatekeeperIsLight: the relying parties' middleware (package
// gatekeeper) links what package ear links and ear itself, nothing of the
// service: a relying party that imports it pays for the verifier only.
func TestGatekeeperIsLight(t *testing.T) {
	pkg := module + "/gatekeeper"
	ds := deps(t, pkg)
	t.Logf("%s links %d non-standard packages", pkg, len(ds))
	if !contains(ds, module+"/ear") {
		t.Fatalf("%s does not link %s/ear: the listing is wrong", pkg, module)
	}
	for _, d := range ds {
		if isHeavy(d) || (d != module+"/ear" && !earAllowed(d)) {
			t.Errorf("%s links %s: it may link only package ear and what ear may", pkg, d)
		}
	}
}
