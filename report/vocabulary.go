package report

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/vigil-attest/vigil/reason"
)

// Vocabulary is the closed set of values one claim of the report may
// take. ParseReport refuses any other value, and the published JSON
// Schema carries the same set (as "enum", or "pattern" for Pattern), so a
// policy that compares a claim with a value it knows never meets one it
// does not.
type Vocabulary struct {
	// Path names the claim: member names joined by ".", "[]" for the
	// items of a list and "{}" for the values of a map
	// ("modules.loaded[].reasons[]", "measured_boot.separators{}").
	Path string
	// Values are the accepted values, sorted; nil when Pattern is set.
	Values []string
	// Pattern is the regular expression (the same in RE2 and ECMA-262)
	// a value must match, for a claim whose values are too many to list.
	Pattern string
}

// The views that list loaded processes (HiddenProcess.SeenIn and
// MissingFrom).
const (
	ViewProbe   = "probe"   // stat of /proc/PID
	ViewReaddir = "readdir" // the listing of /proc
)

// The states of a loaded module's signature (LoadedModule.Signature).
const (
	// SignatureSigned: the module's file was judged and carries a module
	// signature (whether it verifies and is trusted is Allowed and
	// Reasons).
	SignatureSigned = "signed"
	// SignatureUnsigned: the file was judged and carries none.
	SignatureUnsigned = "unsigned"
	// SignatureUnknown: the file was not judged (no engine, no file for
	// the running release, or a file that could not be read), so nothing
	// is known of the loaded code's signature. Never read it as unsigned.
	SignatureUnknown = "unknown"
)

// Lockdown modes (Enforcement.Lockdown): the kernel's three
// (security/lockdown/lockdown.c), and LockdownUnknown when securityfs
// cannot be read or shows a mode this version does not know.
const (
	LockdownNone            = "none"
	LockdownIntegrity       = "integrity"
	LockdownConfidentiality = "confidentiality"
	LockdownUnknown         = "unknown"
)

// vocab is one claim's accepted values.
type vocab struct {
	values  []string // sorted
	pattern string
	match   func(string) bool
	// unset is the value of a claim no collector set (its section failed
	// before it), when "" is not in the vocabulary: fillEmpty writes it.
	unset string
}

// unsetAs returns v with the value an unset claim takes.
func (v *vocab) unsetAs(s string) *vocab {
	v.unset = s
	return v
}

func (v *vocab) accepts(s string) bool {
	if v.match != nil {
		return v.match(s)
	}
	_, ok := slices.BinarySearch(v.values, s)
	return ok
}

func (v *vocab) describe() string {
	if v.match != nil {
		return "does not match " + v.pattern
	}
	if len(v.values) > 12 {
		return fmt.Sprintf("is not one of the %d values of the schema", len(v.values))
	}
	q := make([]string, len(v.values))
	for i, s := range v.values {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "is not one of " + strings.Join(q, ", ")
}

func enum[S ~string](values ...S) *vocab {
	v := &vocab{}
	for _, s := range values {
		v.values = append(v.values, string(s))
	}
	slices.Sort(v.values)
	v.values = slices.Compact(v.values)
	return v
}

// moduleTaintLetters are the letters a module carries in /proc/modules,
// in the order the kernel prints them (bit order).
var moduleTaintLetters = func() string {
	var b strings.Builder
	for _, f := range taintFlags {
		if f.module {
			b.WriteString(f.letter)
		}
	}
	return b.String()
}()

// moduleTaint accepts what the kernel prints for one module: distinct
// module-taint letters in bit order.
var moduleTaint = func() *vocab {
	var p strings.Builder
	p.WriteString("^")
	for _, c := range moduleTaintLetters {
		p.WriteRune(c)
		p.WriteString("?")
	}
	p.WriteString("$")
	return &vocab{pattern: p.String(), match: func(s string) bool {
		j := 0
		for i := 0; i < len(s); i++ {
			k := strings.IndexByte(moduleTaintLetters[j:], s[i])
			if k < 0 {
				return false
			}
			j += k + 1
		}
		return true
	}}
}()

// taintFlagNames are every value TaintLetters writes.
func taintFlagNames() []string {
	var out []string
	for bit := 0; bit < 64; bit++ {
		out = append(out, TaintLetters(1<<bit)...)
	}
	return out
}

func moduleTaintNames() []string {
	return strings.Split(moduleTaintLetters, "")
}

// vocabularies are the closed claims, by the struct that holds them and
// the member's JSON name. For a list or a map the values are its items'.
var vocabularies = map[reflect.Type]map[string]*vocab{
	reflect.TypeFor[Report]():  {"version": enum(Version).unsetAs(Version)},
	reflect.TypeFor[Section](): {"status": enum(StatusOK, StatusUnavailable, StatusError).unsetAs(string(StatusError))},
	reflect.TypeFor[Modules](): {"views": enum(ViewProcModules, ViewSysfs, ViewKallsyms, ViewFtrace, ViewBTF)},
	reflect.TypeFor[LoadedModule](): {
		"reasons":   enum(reason.All()...),
		"signature": enum(SignatureSigned, SignatureUnsigned, SignatureUnknown).unsetAs(SignatureUnknown),
		"taint":     moduleTaint,
	},
	reflect.TypeFor[HiddenModule](): {
		"seen_in":      enum(ViewProcModules, ViewSysfs, ViewKallsyms, ViewFtrace, ViewBTF),
		"missing_from": enum(ViewProcModules, ViewSysfs, ViewKallsyms),
	},
	reflect.TypeFor[Taint](): {
		"flags":       enum(taintFlagNames()...),
		"unexplained": enum(moduleTaintNames()...),
	},
	reflect.TypeFor[Enforcement](): {
		"sig_enforce_source": enum("", "sysfs", "cmdline"),
		"lockdown":           enum(LockdownNone, LockdownIntegrity, LockdownConfidentiality, LockdownUnknown).unsetAs(LockdownUnknown),
		"selinux":            enum("enforcing", "permissive", "disabled", "unknown").unsetAs("unknown"),
		"apparmor":           enum("enabled", "disabled", "unknown").unsetAs("unknown"),
	},
	reflect.TypeFor[Debug]():    {"relaxed_signing": enum("lockdown=none", "module.sig_enforce=0", "efi=debug")},
	reflect.TypeFor[BootFile](): {"reasons": enum(reason.All()...)},
	reflect.TypeFor[MeasuredBoot](): {
		"format":     enum("", "tcg1.2-sha1", "crypto-agile"),
		"separators": enum("ok", "error", "invalid"),
	},
	reflect.TypeFor[CriticalState](): {"problems": enum(ProblemNotRunning, ProblemExeMismatch, ProblemExeDeleted,
		ProblemPtraced, ProblemLDPreload, ProblemSignerMismatch, ProblemUnreadable)},
	reflect.TypeFor[HiddenProcess](): {"seen_in": enum(ViewProbe), "missing_from": enum(ViewReaddir)},
	reflect.TypeFor[Keyrings](): {
		"membership": enum("", MembershipKeyctl, MembershipProcKeys),
		"missing":    keyringNames,
		"blacklist":  blacklistHash,
	},
	reflect.TypeFor[KeyringKey](): {"keyring": keyringNames},
	reflect.TypeFor[HostRevocation](): {
		"kind":    enum(RevocationKinds...),
		"value":   hexDigest,
		"targets": revocationStores,
		"at":      revocationStores,
	},
}

// vocabOf is the vocabulary of member name of struct t, if any.
func vocabOf(t reflect.Type, name string) *vocab {
	return vocabularies[t][name]
}

// Vocabularies returns every closed claim of the report, sorted by path:
// the sets ParseReport enforces and the published schema lists.
func Vocabularies() []Vocabulary {
	return allVocabularies()
}

var allVocabularies = sync.OnceValue(func() []Vocabulary {
	var out []Vocabulary
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		switch t.Kind() {
		case reflect.Pointer:
			walk(t.Elem(), path)
		case reflect.Slice:
			walk(t.Elem(), path+"[]")
		case reflect.Map:
			walk(t.Elem(), path+"{}")
		case reflect.Struct:
			if seen[t] {
				panic("measure: recursive report type " + t.String())
			}
			seen[t] = true
			defer delete(seen, t)
			for _, f := range fieldsOf(t) {
				p := f.name
				if path != "" {
					p = path + "." + f.name
				}
				ft := t.FieldByIndex(f.index).Type
				if f.vocab != nil {
					if ft.Kind() == reflect.Slice {
						p += "[]"
					} else if ft.Kind() == reflect.Map {
						p += "{}"
					}
					out = append(out, Vocabulary{Path: p, Values: slices.Clone(f.vocab.values), Pattern: f.vocab.pattern})
					continue
				}
				walk(ft, p)
			}
		}
	}
	walk(reflect.TypeFor[Report](), "")
	slices.SortFunc(out, func(a, b Vocabulary) int { return strings.Compare(a.Path, b.Path) })
	return out
})
