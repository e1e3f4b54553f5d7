package measure

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/reason"
)

// recheckDelay is how long the cross-view waits before re-reading the
// views that disagreed, so that a module loading or unloading during the
// measurement is not reported as hidden.
var recheckDelay = 100 * time.Millisecond

func (m *Measurer) collectModules(ctx context.Context, src hostfs.Source, release string) Modules {
	out := Modules{Loaded: []LoadedModule{}, Hidden: []HiddenModule{}, Views: []string{},
		Allocations: ModuleAllocations{Section: Section{Status: StatusUnavailable}, UnlistedSizes: []int64{}}}
	raw, err := src.ReadFile("/proc/modules")
	if err != nil {
		out.Section = statusOf(err)
		// The other views can still show modules hidden from this one.
		out.Hidden, out.Views = crossView(ctx, src, nil)
		return out
	}
	mods, err := parseProcModules(raw)
	if err != nil {
		out.Section = Section{Status: StatusError, Error: err.Error()}
		return out
	}
	out.Section = Section{Status: StatusOK}
	paths, depErr := moduleFiles(src, release)
	eng := m.moduleEngine(src)
	for _, pm := range mods {
		lm := LoadedModule{Name: pm.Name, Size: pm.Size, Taint: pm.Taint, Signature: SignatureUnknown, Reasons: []reason.Code{}}
		if rel, ok := paths[normModuleName(pm.Name)]; ok {
			lm.Path = path.Join("/lib/modules", release, rel)
		}
		m.judgeModule(ctx, eng, src, &lm, depErr)
		out.Loaded = append(out.Loaded, lm)
	}
	sort.Slice(out.Loaded, func(i, j int) bool { return out.Loaded[i].Name < out.Loaded[j].Name })
	out.Hidden, out.Views = crossView(ctx, src, mods)
	out.Allocations = allocationsView(ctx, src, mods)
	return out
}

// allocationsView counts the module loader's regions in vmallocinfo
// against /proc/modules, and re-reads both when they disagree: modules are
// reported unlisted only if both readings have as many or more.
func allocationsView(ctx context.Context, src hostfs.Source, mods []procModule) ModuleAllocations {
	read := func(mods []procModule) (ModuleAllocations, bool) {
		out := ModuleAllocations{UnlistedSizes: []int64{}}
		raw, err := src.ReadFile("/proc/vmallocinfo")
		if err != nil {
			out.Section = Section{Status: StatusUnavailable, Error: err.Error()}
			return out, false
		}
		allocs, err := parseVmallocModules(raw)
		if err != nil {
			out.Section = Section{Status: StatusError, Error: err.Error()}
			return out, false
		}
		if mods == nil {
			raw, err := src.ReadFile("/proc/modules")
			if err != nil {
				out.Section = statusOf(err)
				return out, false
			}
			if mods, err = parseProcModules(raw); err != nil {
				out.Section = Section{Status: StatusError, Error: err.Error()}
				return out, false
			}
		}
		sizes := make([]int64, len(mods))
		for i, m := range mods {
			sizes[i] = m.Size
		}
		out.Section = Section{Status: StatusOK}
		out.Count, out.Listed = len(allocs), len(mods)
		out.UnlistedSizes = unlistedAllocations(allocs, sizes)
		out.Unlisted = len(out.UnlistedSizes)
		return out, true
	}
	first, ok := read(mods)
	if !ok || first.Unlisted == 0 {
		return first
	}
	select {
	case <-ctx.Done():
		first.Unlisted, first.UnlistedSizes = 0, []int64{}
		return first
	case <-time.After(recheckDelay):
	}
	second, ok := read(nil)
	if !ok || second.Unlisted < first.Unlisted {
		// Fewer the second time: some were modules in transit.
		return second
	}
	return first
}

// moduleFiles maps module names to files for the release.
func moduleFiles(src hostfs.Source, release string) (map[string]string, error) {
	if release == "" {
		return nil, errors.New("kernel release unknown")
	}
	b, err := src.ReadFile(path.Join("/lib/modules", release, "modules.dep"))
	if err != nil {
		return nil, err
	}
	return parseModulesDep(b)
}

// judgeModule runs the code-integrity engine on the module's file. A
// module whose file is not found or cannot be read stays unknown
// (Judged false, Signature "unknown"), with not-found or unreadable: the
// file of an unjudged module is never taken as unsigned.
func (m *Measurer) judgeModule(ctx context.Context, eng *integrity.Engine, src hostfs.Source, lm *LoadedModule, depErr error) {
	if eng == nil {
		return
	}
	if lm.Path == "" {
		// A loaded module with no file for this release was loaded from
		// elsewhere (or its file was removed): nothing vouches for it.
		lm.Reasons = append(lm.Reasons, reason.NotFound)
		if depErr != nil {
			m.log.Debug("module file unknown", "module", lm.Name, "err", depErr)
		}
		return
	}
	v, err := eng.VerifyFile(ctx, src.HostPath(lm.Path))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			lm.Reasons = append(lm.Reasons, reason.NotFound)
		} else {
			lm.Reasons = append(lm.Reasons, reason.Unreadable)
		}
		m.log.Debug("module file not judged", "module", lm.Name, "path", lm.Path, "err", err)
		return
	}
	lm.Judged = true
	if v.SHA256 != "" {
		src.Record(lm.Path, v.SHA256)
	}
	lm.SHA256 = v.SHA256
	lm.Allowed = v.Allowed
	lm.Reasons = append(lm.Reasons, v.Reasons...)
	lm.Signed = len(v.Signatures) > 0
	lm.Signature = SignatureUnsigned
	if lm.Signed {
		lm.Signature = SignatureSigned
	}
	for _, s := range v.Signatures {
		if s.Signer != nil && (lm.Signer == "" || s.Valid) {
			lm.Signer = commonName(s.Signer.Subject)
			if s.Valid {
				break
			}
		}
	}
}

// moduleViews reads the views once: name → views listing it.
func moduleViews(src hostfs.Source, procMods []procModule) (map[string][]string, []string) {
	seen := map[string][]string{}
	views := []string{}
	add := func(view, name string) { seen[name] = append(seen[name], view) }
	if procMods == nil {
		if raw, err := src.ReadFile("/proc/modules"); err == nil {
			procMods, _ = parseProcModules(raw)
			if procMods == nil {
				procMods = []procModule{}
			}
		}
	}
	if procMods != nil {
		views = append(views, ViewProcModules)
		for _, pm := range procMods {
			// A module still loading or already unloading is in transit,
			// not hidden; the other views may not have it yet.
			if pm.State == "Live" {
				add(ViewProcModules, pm.Name)
			} else {
				seen[pm.Name] = append(seen[pm.Name], "transit")
			}
		}
	}
	if es, err := src.ReadDir("/sys/module"); err == nil {
		views = append(views, ViewSysfs)
		for _, e := range es {
			// Only loadable modules have initstate; built-in code with
			// parameters has a directory too.
			st, err := readLine(src, "/sys/module/"+e.Name()+"/initstate")
			if err != nil {
				continue
			}
			if st == "live" {
				add(ViewSysfs, e.Name())
			} else {
				seen[e.Name()] = append(seen[e.Name()], "transit")
			}
		}
	}
	if raw, err := src.ReadFile("/proc/kallsyms"); err == nil {
		if names, err := parseKallsymsModules(raw); err == nil {
			views = append(views, ViewKallsyms)
			for n := range names {
				add(ViewKallsyms, n)
			}
		}
	}
	if names, ok := readFtraceModules(src); ok {
		views = append(views, ViewFtrace)
		for n := range names {
			add(ViewFtrace, n)
		}
	}
	if es, err := src.ReadDir("/sys/kernel/btf"); err == nil {
		views = append(views, ViewBTF)
		for _, e := range es {
			// vmlinux is the core kernel's; a module's file is its name.
			if n := e.Name(); n != "vmlinux" && validModuleName(n) {
				add(ViewBTF, n)
			}
		}
	}
	return seen, views
}

// witnessViews only testify to a module: a module they show is hidden
// from every list that lacks it, but a listed module they lack is not
// hidden (a module may have no traceable function, or no BTF: an
// out-of-tree module built without the kernel's vmlinux has none).
var witnessViews = []string{ViewFtrace, ViewBTF}

// discrepancies returns the modules not listed by every view.
func discrepancies(seen map[string][]string, views []string) map[string]HiddenModule {
	out := map[string]HiddenModule{}
	for name, in := range seen {
		if slices.Contains(in, "transit") {
			continue
		}
		var missing []string
		for _, v := range views {
			if !slices.Contains(in, v) && !slices.Contains(witnessViews, v) {
				missing = append(missing, v)
			}
		}
		if len(missing) > 0 {
			s := slices.Clone(in)
			sort.Strings(s)
			out[name] = HiddenModule{Name: name, SeenIn: s, MissingFrom: missing}
		}
	}
	return out
}

// crossView compares the views, and re-reads them when they disagree: a
// module is reported only if it is hidden in both readings, the same way.
func crossView(ctx context.Context, src hostfs.Source, procMods []procModule) ([]HiddenModule, []string) {
	seen, views := moduleViews(src, procMods)
	first := discrepancies(seen, views)
	hidden := []HiddenModule{}
	if len(first) == 0 {
		return hidden, views
	}
	select {
	case <-ctx.Done():
		return hidden, views
	case <-time.After(recheckDelay):
	}
	seen2, views2 := moduleViews(src, nil)
	second := discrepancies(seen2, views2)
	for name, h := range first {
		h2, ok := second[name]
		if ok && slices.Equal(h.SeenIn, h2.SeenIn) && slices.Equal(h.MissingFrom, h2.MissingFrom) {
			hidden = append(hidden, h)
		}
	}
	sort.Slice(hidden, func(i, j int) bool { return hidden[i].Name < hidden[j].Name })
	return hidden, views
}
