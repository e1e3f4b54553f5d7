package ear_test

import (
	"os"
	"strings"
	"testing"

	"github.com/vigil-attest/vigil/api"
	"github.com/vigil-attest/vigil/ear"
	"github.com/vigil-attest/vigil/enclave"
)

// TestCodesDocumented: docs/session-report.md's table names every code,
// and All lists each once, sorted.
func TestCodesDocumented(t *testing.T) {
	md, err := os.ReadFile("../docs/session-report.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(md[strings.Index(string(md), "### Every code"):])
	all := ear.All()
	for i, c := range all {
		if i > 0 && all[i-1] >= c {
			t.Errorf("All is not sorted and unique at %q", c)
		}
		if !strings.Contains(table, "`"+string(c)+"`") {
			t.Errorf("docs/session-report.md's code table does not list %q", c)
		}
	}
	if ear.Of(nil) != "" || ear.Of(os.ErrNotExist) != "" {
		t.Error("Of of an error without a code")
	}
	if api.MaxAudiences != ear.MaxAudiences {
		t.Errorf("api.MaxAudiences %d, ear.MaxAudiences %d", api.MaxAudiences, ear.MaxAudiences)
	}
	if enclave.ProofType != ear.ProofType {
		t.Errorf("enclave.ProofType %q, ear.ProofType %q", enclave.ProofType, ear.ProofType)
	}
}
