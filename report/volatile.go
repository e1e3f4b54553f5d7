package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// VolatileField is a report field whose value may change between two
// reads of the same host with nothing changed on it: a capture measured
// later (`vigil agent measure --root`) or a second measure differs there,
// and only there.
type VolatileField struct {
	// Path is a pattern over Compare's field paths (kernel.uptime_s,
	// inputs["/proc/uptime"], processes.list[3].pid): '*' matches any run
	// of characters.
	Path string
	// Why the value changes.
	Why string
}

// Volatile lists the volatile fields (docs/runtime-report.md, "Volatile
// fields"): values that change by themselves, and what a capture cannot
// hold (the answers of system calls rather than files). Anything else
// that differs between a capture and the report taken with it is a bug in
// the capture or the collectors.
var Volatile = []VolatileField{
	{`kernel.uptime_s`, "the uptime ticks between the report and the copy of /proc/uptime the capture makes after it"},
	{`inputs["/proc/uptime"]`, "the uptime ticks"},
	{`keyrings.membership`, keyctlWhy},
	{`keyrings.trusted*`, keyctlWhy},
	{`keyrings.revoked*`, keyctlWhy},
	{`keyrings.missing*`, keyctlWhy},
	{`keyrings.not_trusted*`, keyctlWhy},
}

const keyctlWhy = "keyring members are read with keyctl(2) from the running kernel, which a capture cannot hold: measured from a capture, membership is proc_keys and the trust keyrings are unknown"

// Diff is one field where two reports differ.
type Diff struct {
	Path string
	// A and B are the field's JSON values ("" when absent).
	A, B string
	// Volatile is the reason from Volatile when the field is volatile,
	// else "".
	Volatile string
}

// Compare decodes two reports (JSON) and lists every leaf field where
// they differ, sorted by path, each marked with its Volatile reason when
// it has one.
func Compare(a, b []byte) ([]Diff, error) {
	fa, err := flattenJSON(a)
	if err != nil {
		return nil, fmt.Errorf("compare reports: the first: %w", err)
	}
	fb, err := flattenJSON(b)
	if err != nil {
		return nil, fmt.Errorf("compare reports: the second: %w", err)
	}
	paths := map[string]bool{}
	for p := range fa {
		paths[p] = true
	}
	for p := range fb {
		paths[p] = true
	}
	var out []Diff
	for p := range paths {
		if fa[p] == fb[p] {
			continue
		}
		d := Diff{Path: p, A: fa[p], B: fb[p]}
		for _, v := range Volatile {
			if globMatch(v.Path, p) {
				d.Volatile = v.Why
				break
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// flattenJSON maps each leaf of a JSON document to its JSON value.
func flattenJSON(b []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out[path] = "{}"
			}
			for k, e := range x {
				if validIdent(k) {
					walk(joinPath(path, k), e)
				} else {
					walk(path+"["+strconv.Quote(k)+"]", e)
				}
			}
		case []any:
			if len(x) == 0 {
				out[path] = "[]"
			}
			for i, e := range x {
				walk(path+"["+strconv.Itoa(i)+"]", e)
			}
		default:
			j, _ := json.Marshal(x)
			out[path] = string(j)
		}
	}
	walk("", v)
	return out, nil
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func validIdent(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// globMatch matches s against pattern, where '*' matches any run of
// characters (including none) and everything else itself.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
