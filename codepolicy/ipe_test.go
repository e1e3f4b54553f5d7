package codepolicy

import (
	"bufio"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// ipeRule is one parsed IPE statement.
type ipeRule struct {
	def    bool   // a DEFAULT statement
	op     string // "" for a global DEFAULT
	props  map[string]string
	action string
}

// parseIPE is a strict parser of the IPE policy grammar
// (Documentation/admin-guide/LSM/ipe.rst, security/ipe/policy_parser.c):
// the first statement is "policy_name=NAME policy_version=A.B.C"; then
// "DEFAULT [op=OP] action=ALLOW|DENY", or "op=OP [property=value ...]
// action=ALLOW|DENY" (op first, action last); '#' starts a comment. Every
// operation has a default (globally or its own), as the kernel requires.
func parseIPE(text string) (name, version string, rules []ipeRule, err error) {
	ops := map[string]bool{}
	for _, o := range ipeOps {
		ops[o] = true
	}
	hexv := regexp.MustCompile(`^[0-9a-f]+$`)
	digest := func(v string, names map[string]int) error {
		n, h, ok := strings.Cut(v, ":")
		size, known := names[n]
		if !ok || !known || !hexv.MatchString(h) || len(h) != 2*size {
			return fmt.Errorf("digest %q", v)
		}
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	first := true
	defaults := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if first {
			first = false
			if len(f) != 2 || !strings.HasPrefix(f[0], "policy_name=") || !strings.HasPrefix(f[1], "policy_version=") {
				return "", "", nil, fmt.Errorf("line %d: want policy_name= policy_version=", n)
			}
			name, version = strings.TrimPrefix(f[0], "policy_name="), strings.TrimPrefix(f[1], "policy_version=")
			if name == "" || !regexp.MustCompile(`^\d{1,5}\.\d{1,5}\.\d{1,5}$`).MatchString(version) {
				return "", "", nil, fmt.Errorf("line %d: name %q version %q", n, name, version)
			}
			continue
		}
		r := ipeRule{props: map[string]string{}}
		if f[0] == "DEFAULT" {
			r.def, f = true, f[1:]
		}
		last := f[len(f)-1]
		if !strings.HasPrefix(last, "action=") {
			return "", "", nil, fmt.Errorf("line %d: does not end with action=", n)
		}
		r.action = strings.TrimPrefix(last, "action=")
		if r.action != "ALLOW" && r.action != "DENY" {
			return "", "", nil, fmt.Errorf("line %d: action %q", n, r.action)
		}
		f = f[:len(f)-1]
		if len(f) > 0 && strings.HasPrefix(f[0], "op=") {
			r.op, f = strings.TrimPrefix(f[0], "op="), f[1:]
			if !ops[r.op] {
				return "", "", nil, fmt.Errorf("line %d: op %q", n, r.op)
			}
		} else if !r.def {
			return "", "", nil, fmt.Errorf("line %d: a rule must start with op=", n)
		}
		if r.def && len(f) > 0 {
			return "", "", nil, fmt.Errorf("line %d: DEFAULT takes only op and action", n)
		}
		for _, kv := range f {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return "", "", nil, fmt.Errorf("line %d: %q is not key=value", n, kv)
			}
			if _, dup := r.props[k]; dup {
				return "", "", nil, fmt.Errorf("line %d: %s twice", n, k)
			}
			switch k {
			case "dmverity_roothash":
				err = digest(v, dmDigests)
			case "fsverity_digest":
				err = digest(v, fsDigests)
			case "boot_verified", "dmverity_signature", "fsverity_signature":
				if v != "TRUE" && v != "FALSE" {
					err = fmt.Errorf("%s=%q", k, v)
				}
			default:
				err = fmt.Errorf("unknown property %q", k)
			}
			if err != nil {
				return "", "", nil, fmt.Errorf("line %d: %w", n, err)
			}
			r.props[k] = v
		}
		if r.def {
			if defaults[r.op] {
				return "", "", nil, fmt.Errorf("line %d: a second default for %q", n, r.op)
			}
			defaults[r.op] = true
		}
		rules = append(rules, r)
	}
	if first {
		return "", "", nil, errors.New("empty policy")
	}
	for _, o := range ipeOps {
		if !defaults[""] && !defaults[o] {
			return "", "", nil, fmt.Errorf("no default for %s", o)
		}
	}
	return name, version, rules, nil
}

// TestExportIPE: the IPE policy admits exactly the policy's dm-verity
// volumes and fs-verity files, for every operation, and denies everything
// else; it never trusts signatures in general (dmverity_signature,
// fsverity_signature) or the initramfs. A policy with nothing IPE can
// admit is refused (nothing-to-export), never written permissive.
func TestExportIPE(t *testing.T) {
	dm := "sha256:" + strings.Repeat("ab", 32)
	fs := "sha512:" + strings.Repeat("cd", 64)
	p, err := Parse([]byte(fmt.Sprintf("name: web-fleet\nversion: \"3.1\"\nverity:\n  dm_roothash: [%q, %q]\n  fs_digest: [%q]\ndeny:\n  sha256: [%s]\n",
		strings.ToUpper(dm), dm, fs, strings.Repeat("11", 32))), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, st, err := ExportIPE(p)
	if err != nil {
		t.Fatal(err)
	}
	name, version, rules, err := parseIPE(string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if name != "web-fleet" || version != "3.1.0" {
		t.Fatalf("name %q version %q", name, version)
	}
	allowed := map[string]int{}
	for _, r := range rules {
		switch {
		case r.def:
			if r.op != "" || r.action != "DENY" {
				t.Fatalf("default %+v", r)
			}
		case r.action == "ALLOW":
			if len(r.props) != 1 {
				t.Fatalf("allow rule %+v", r)
			}
			for k, v := range r.props {
				if k != "dmverity_roothash" && k != "fsverity_digest" {
					t.Fatalf("allow by %s", k)
				}
				allowed[r.op+" "+k+"="+v]++
			}
		default:
			t.Fatalf("rule %+v", r)
		}
	}
	for _, op := range ipeOps {
		if allowed[op+" dmverity_roothash="+dm] != 1 || allowed[op+" fsverity_digest="+fs] != 1 {
			t.Errorf("%s: %v", op, allowed)
		}
	}
	if len(allowed) != 2*len(ipeOps) || st.Written["dmverity_roothash"] != 1 || st.Written["fsverity_digest"] != 1 || len(st.Warnings) != 1 {
		t.Errorf("allowed %v, stats %+v", allowed, st)
	}

	for _, c := range []struct{ name, yaml string }{
		{"no verity entries, only anchors' worth of rules", "deny:\n  sha256: [" + strings.Repeat("11", 32) + "]\n"},
		{"an empty policy", ""},
	} {
		p, err := Parse([]byte(c.yaml), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if out, _, err := ExportIPE(p); !errors.Is(err, ErrNothingToExport) || out != nil {
			t.Errorf("%s: %v, %q", c.name, err, out)
		}
	}
	for _, y := range []string{
		"verity:\n  dm_roothash: [\"md5:" + strings.Repeat("ab", 16) + "\"]\n",
		"verity:\n  fs_digest: [\"sha384:" + strings.Repeat("ab", 48) + "\"]\n",
		"verity:\n  dm_roothash: [\"sha256:" + strings.Repeat("ab", 31) + "\"]\n",
	} {
		if _, err := Parse([]byte(y), t.TempDir()); err == nil {
			t.Errorf("accepted %q", y)
		}
	}
	for _, y := range []string{"name: \"two words\"\n", "version: \"2026.08.1.4\"\n", "version: \"70000\"\n"} {
		p, err := Parse([]byte(y+"verity:\n  fs_digest: [\""+fs+"\"]\n"), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ExportIPE(p); err == nil {
			t.Errorf("exported with %q", y)
		}
	}
	// The parser itself refuses what the kernel refuses.
	for _, bad := range []string{
		"policy_name=a policy_version=0.0.0\nop=EXECUTE action=ALLOW\n",                      // no default
		"policy_name=a policy_version=0.0.0\nDEFAULT action=DENY\naction=ALLOW op=EXECUTE\n", // order
		"policy_name=a policy_version=0.0.0\nDEFAULT action=DENY\nop=EXECUTE foo=1 action=ALLOW\n",
		"DEFAULT action=DENY\n",
	} {
		if _, _, _, err := parseIPE(bad); err == nil {
			t.Errorf("parseIPE accepted %q", bad)
		}
	}
}
