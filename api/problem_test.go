package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestProblemCodes: every problem code of api.go has a title and the
// status its comment there states.
func TestProblemCodes(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Code") || vs.Comment == nil {
				continue
			}
			code, _ := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			want, err := strconv.Atoi(strings.TrimSpace(vs.Comment.Text())[:3])
			if err != nil {
				t.Fatalf("%s: comment without a status", vs.Names[0].Name)
			}
			n++
			if ProblemStatus[code] != want || ProblemTitles[code] == "" {
				t.Errorf("%s: status %d title %q, api.go says %d", code, ProblemStatus[code], ProblemTitles[code], want)
			}
		}
	}
	if n != len(ProblemStatus) || n != len(ProblemTitles) {
		t.Errorf("%d codes in api.go, %d statuses, %d titles", n, len(ProblemStatus), len(ProblemTitles))
	}
}
