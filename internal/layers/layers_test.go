package layers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/vigil-attest/vigil"

// heavy are the packages a light package must never link, by import path
// prefix (a prefix ending in "/" names a tree; otherwise the package and
// its subpackages).
var heavy = []string{
	"github.com/open-policy-agent/", // the policy engine (75 packages)
	module + "/appraise",            // the appraiser (OPA)
	module + "/store/",              // the store's implementations (SQLite, PostgreSQL, sealing)
	module + "/measure",             // the host collectors
	module + "/hostfs",              // the collectors' file access
	module + "/integrity",           // the code-integrity engine
	module + "/codepolicy",          // its policy
}

// light are the packages others link, each with what it may link of the
// service. storeRoot: the store's interface package (types only, standard
// library only) — token's Issuer keeps its signing keys through
// store.SigningKey until issuing and verifying are split.
var light = []struct {
	pkg       string
	storeRoot bool
	// stdOnly: the package links only the standard library and these.
	stdOnly []string
	// earOnly: the package links only the standard library, veraison/ear,
	// jwx v2 and their dependencies, and verdict.
	earOnly bool
}{
	{pkg: module + "/verdict", stdOnly: []string{}},
	{pkg: module + "/report", stdOnly: []string{module + "/reason", "github.com/gowebpki/jcs"}},
	{pkg: module + "/evidence"},
	{pkg: module + "/api"},
	{pkg: module + "/token", storeRoot: true},
	// ear: what a relying party imports. The standard library, the JOSE
	// library veraison/ear uses (jwx v2) and its dependencies, ear itself
	// and the leaf vocabulary: nothing of the service.
	{pkg: module + "/ear", earOnly: true},
	{pkg: module + "/store", stdOnly: []string{}},
}

type listed struct {
	ImportPath string
	Standard   bool
}

// deps is the transitive closure of pkg's imports, as `go list -deps`
// gives it, without the standard library.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	cmd := exec.Command(gobin, "list", "-deps", "-json=ImportPath,Standard", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	var ds []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list -deps %s: decode: %v", pkg, err)
		}
		if !p.Standard && p.ImportPath != pkg {
			ds = append(ds, p.ImportPath)
		}
	}
	if len(ds) == 0 && pkg != module+"/verdict" && pkg != module+"/store" {
		t.Fatalf("go list -deps %s listed no non-standard package: the listing is wrong", pkg)
	}
	return ds
}

func isHeavy(p string) bool {
	for _, h := range heavy {
		if strings.HasSuffix(h, "/") && strings.HasPrefix(p, h) {
			return true
		}
		if p == h || strings.HasPrefix(p, h+"/") {
			return true
		}
	}
	return false
}

func TestLightPackagesLinkNoEngine(t *testing.T) {
	for _, l := range light {
		t.Run(strings.TrimPrefix(l.pkg, module+"/"), func(t *testing.T) {
			ds := deps(t, l.pkg)
			t.Logf("%s links %d non-standard packages", l.pkg, len(ds))
			for _, d := range ds {
				if isHeavy(d) {
					t.Errorf("%s links %s", l.pkg, d)
				}
				if d == module+"/store" && !l.storeRoot {
					t.Errorf("%s links %s", l.pkg, d)
				}
				if l.earOnly && !earAllowed(d) {
					t.Errorf("%s links %s: it may link only the standard library, veraison/ear, jwx v2 and %s/verdict", l.pkg, d, module)
				}
				if l.stdOnly != nil && !contains(l.stdOnly, d) {
					t.Errorf("%s links %s: it may link only the standard library and %v", l.pkg, d, l.stdOnly)
				}
			}
		})
	}
}

// TestHeavyIsHeavy holds the rule's premise: the packages named heavy
// exist and are what they are said to be, so that a rename does not let
// the test above pass by matching nothing.
func TestHeavyIsHeavy(t *testing.T) {
	ds := deps(t, module+"/appraise")
	for _, want := range []string{"github.com/open-policy-agent/opa/v1/rego", module + "/measure", module + "/integrity", module + "/codepolicy", module + "/hostfs"} {
		if !contains(ds, want) {
			t.Errorf("appraise does not link %s: update the heavy list", want)
		}
	}
	t.Logf("appraise links %d non-standard packages", len(ds))
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// earAllowed is what a relying party's package may link: veraison/ear,
// the one JOSE library (jwx v2, never v3) and the modules they need, and
// Vigil's leaf vocabulary.
func earAllowed(p string) bool {
	if p == module+"/verdict" {
		return true
	}
	for _, prefix := range []string{
		"github.com/veraison/ear",
		"github.com/lestrrat-go/jwx/v2/",
		"github.com/lestrrat-go/blackmagic",
		"github.com/lestrrat-go/httpcc",
		"github.com/lestrrat-go/httprc",
		"github.com/lestrrat-go/iter/",
		"github.com/lestrrat-go/option",
		"github.com/huandu/xstrings",
		"golang.org/x/crypto/",
	} {
		if p == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}
