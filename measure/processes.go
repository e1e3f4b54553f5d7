package measure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/vigil-attest/vigil/hostfs"
)

// CriticalProcess is a process the host must run untampered. Set Exe, and
// SHA256 or Signer (a detached CMS signature, Exe + ".p7s" unless
// Signature is set, judged by the code-integrity engine, whose signer's
// subject must contain Signer).
type CriticalProcess struct {
	Name      string `yaml:"name" json:"name"`
	Exe       string `yaml:"exe" json:"exe"`
	SHA256    string `yaml:"sha256" json:"sha256,omitempty"`
	Signer    string `yaml:"signer" json:"signer,omitempty"`
	Signature string `yaml:"signature" json:"signature,omitempty"`
}

// listPIDs returns the PIDs of /proc's listing.
func listPIDs(src hostfs.Source) (map[int]bool, error) {
	es, err := src.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]bool, len(es))
	for _, e := range es {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out[pid] = true
		}
	}
	return out, nil
}

func (m *Measurer) collectProcesses(ctx context.Context, src hostfs.Source) Processes {
	p := Processes{Critical: []CriticalState{}, Hidden: []HiddenProcess{}}
	pids, err := listPIDs(src)
	if err != nil {
		p.Section = statusOf(err)
		return p
	}
	if len(pids) == 0 {
		p.Section = Section{Status: StatusUnavailable, Error: "/proc lists no processes"}
		return p
	}
	p.Section = Section{Status: StatusOK}
	p.Count = len(pids)
	// A system-wide preload applies to every process: read it once.
	preload := false
	if len(m.opts.Config.CriticalProcesses) > 0 {
		if b, err := src.ReadFile("/etc/ld.so.preload"); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			preload = true
		}
	}
	var table *procTable
	if len(m.opts.Config.CriticalProcesses) > 0 {
		table = newProcTable(src, pids)
	}
	for _, c := range m.opts.Config.CriticalProcesses {
		p.Critical = append(p.Critical, m.critical(ctx, src, table, c, preload))
	}
	p.Hidden, p.Probed = m.hiddenProcesses(ctx, src, pids)
	return p
}

// exeOf returns /proc/PID/exe's target without " (deleted)", and whether
// the kernel marked it deleted.
func exeOf(src hostfs.Source, pid int) (string, bool, error) {
	t, err := src.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", false, err
	}
	if s, ok := strings.CutSuffix(t, " (deleted)"); ok {
		return s, true, nil
	}
	return t, false, nil
}

// procEntry is a listed process as the critical checks see it.
type procEntry struct {
	pid     int
	exe     string
	deleted bool
	exeErr  error
	comm    *string // read on first need
}

// procTable holds the listed processes' exe links, read once for all
// critical entries; comm is read only when a name must be compared.
type procTable struct {
	src   hostfs.Source
	procs []procEntry
}

func newProcTable(src hostfs.Source, pids map[int]bool) *procTable {
	t := &procTable{src: src}
	for _, pid := range sortedPIDs(pids) {
		e := procEntry{pid: pid}
		e.exe, e.deleted, e.exeErr = exeOf(src, pid)
		t.procs = append(t.procs, e)
	}
	return t
}

func (t *procTable) comm(e *procEntry) string {
	if e.comm == nil {
		c, _ := readLine(t.src, fmt.Sprintf("/proc/%d/comm", e.pid))
		e.comm = &c
	}
	return *e.comm
}

func (m *Measurer) critical(ctx context.Context, src hostfs.Source, table *procTable, c CriticalProcess, preload bool) CriticalState {
	st := CriticalState{Name: c.Name, Exe: c.Exe, PIDs: []int{}, TracerPIDs: []int{}, Problems: []string{}}
	problem := func(code string) {
		for _, p := range st.Problems {
			if p == code {
				return
			}
		}
		st.Problems = append(st.Problems, code)
	}
	for i := range table.procs {
		pe := &table.procs[i]
		pid, exe, deleted, err := pe.pid, pe.exe, pe.deleted, pe.exeErr
		match := err == nil && c.Exe != "" && path.Clean(exe) == path.Clean(c.Exe)
		if !match && c.Name != "" && table.comm(pe) == c.Name {
			match = true
		}
		if !match {
			continue
		}
		st.PIDs = append(st.PIDs, pid)
		if deleted {
			st.ExeDeleted = true
			problem(ProblemExeDeleted)
		}
		if err == nil && c.Exe != "" && path.Clean(exe) != path.Clean(c.Exe) {
			// Found by name, running another binary.
			problem(ProblemExeMismatch)
		}
		if b, err := src.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			if s, err := parseProcStatus(b); err == nil && s.TracerPid != 0 {
				st.Ptraced = true
				st.TracerPIDs = append(st.TracerPIDs, s.TracerPid)
				problem(ProblemPtraced)
			}
		} else {
			problem(ProblemUnreadable)
		}
		if env, err := src.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
			if environHas(env, "LD_PRELOAD") {
				st.LDPreload = true
				problem(ProblemLDPreload)
			}
		} else {
			problem(ProblemUnreadable)
		}
	}
	st.Running = len(st.PIDs) > 0
	if !st.Running {
		problem(ProblemNotRunning)
	} else {
		// The image the first process runs: /proc/PID/exe opens the
		// mapped file even when its name was deleted or replaced.
		sum, err := digestOf(src, fmt.Sprintf("/proc/%d/exe", st.PIDs[0]))
		if err != nil {
			problem(ProblemUnreadable)
		}
		st.ExeSHA256 = sum
		if c.SHA256 != "" {
			st.DigestMatch = sum != "" && strings.EqualFold(sum, c.SHA256)
			if !st.DigestMatch {
				problem(ProblemExeMismatch)
			}
		}
		if c.Signer != "" && !m.signerMatches(ctx, src, c) {
			problem(ProblemSignerMismatch)
		}
	}
	if preload {
		st.LDPreload = true
		problem(ProblemLDPreload)
	}
	sort.Strings(st.Problems)
	st.OK = len(st.Problems) == 0
	return st
}

// signerMatches judges the exe's detached signature with the engine.
func (m *Measurer) signerMatches(ctx context.Context, src hostfs.Source, c CriticalProcess) bool {
	if m.opts.Engine == nil {
		return false
	}
	sig := c.Signature
	if sig == "" {
		sig = c.Exe + ".p7s"
	}
	v, err := m.opts.Engine.VerifyFileWith(ctx, src.HostPath(c.Exe), src.HostPath(sig))
	if err != nil || !v.Allowed {
		return false
	}
	for _, s := range v.Signatures {
		if s.Valid && s.Signer != nil && strings.Contains(s.Signer.Subject, c.Signer) {
			return true
		}
	}
	return false
}

// digestOf streams a file's SHA-256 and records it as an input.
func digestOf(src hostfs.Source, name string) (string, error) {
	f, err := src.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 1<<32)); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	src.Record(name, sum)
	return sum, nil
}

func sortedPIDs(pids map[int]bool) []int {
	out := make([]int, 0, len(pids))
	for p := range pids {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// hiddenProcesses probes PIDs by stat, which a rootkit that filters
// /proc's directory listing (getdents) does not hide, and reports thread
// groups that answer but are not listed. Threads answer probes too, so a
// PID whose Tgid differs is attributed to its thread group. The listing
// is read again after probing, so that a process started meanwhile is not
// reported.
func (m *Measurer) hiddenProcesses(ctx context.Context, src hostfs.Source, listed map[int]bool) ([]HiddenProcess, int) {
	hidden := []HiddenProcess{}
	maxPID := 0
	for p := range listed {
		maxPID = max(maxPID, p)
	}
	if last := readInt(src, "/proc/sys/kernel/ns_last_pid"); last != nil {
		maxPID = max(maxPID, int(*last))
	}
	margin := m.opts.Config.ProbePIDs
	if margin <= 0 {
		margin = DefaultProbePIDs
	}
	limit := maxPID + margin
	if pm := readInt(src, "/proc/sys/kernel/pid_max"); pm != nil && int(*pm) < limit {
		limit = int(*pm)
	}
	exists := func(dir, name string) bool {
		_, err := src.Lstat(dir + "/" + name)
		return err == nil
	}
	if p, ok := src.(hostfs.Prober); ok {
		exists = p.Exists
	}
	candidates := map[int]bool{}
	for pid := 1; pid <= limit; pid++ {
		if pid%4096 == 0 && ctx.Err() != nil {
			return hidden, pid
		}
		if listed[pid] {
			continue
		}
		if !exists("/proc", strconv.Itoa(pid)) {
			continue
		}
		tgid := pid
		if b, err := src.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			if s, err := parseProcStatus(b); err == nil && s.Tgid > 0 {
				tgid = s.Tgid
			}
		}
		if !listed[tgid] {
			candidates[tgid] = true
		}
	}
	if len(candidates) == 0 {
		return hidden, limit
	}
	again, err := listPIDs(src)
	if err != nil {
		again = map[int]bool{}
	}
	for _, pid := range sortedPIDs(candidates) {
		if again[pid] {
			continue
		}
		if _, err := src.Lstat("/proc/" + strconv.Itoa(pid)); err != nil {
			continue // exited meanwhile
		}
		h := HiddenProcess{PID: pid, SeenIn: []string{ViewProbe}, MissingFrom: []string{ViewReaddir}}
		h.Name, _ = readLine(src, fmt.Sprintf("/proc/%d/comm", pid))
		h.Exe, _, _ = exeOf(src, pid)
		hidden = append(hidden, h)
	}
	return hidden, limit
}
