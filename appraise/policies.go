package appraise

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/vigil-attest/vigil/evidence"
)

// Query is the rule a policy must define: an object {level, failures,
// trust_vector} (docs/attestation-policy.md).
const Query = "data.vigil.appraisal.result"

// DefaultID is the embedded default policy's ID.
const DefaultID = "default"

// DataFile is the policy directory's data file: {"version", "reference"}.
const DataFile = "data.json"

// Bounds on a policy directory.
const (
	maxPolicyFiles = 256
	maxPolicyFile  = 4 << 20
	maxPolicyTotal = 16 << 20
)

//go:embed policy/default/*.rego policy/default/data.json
var defaultFS embed.FS

// Policy is one compiled policy version: its Rego query prepared once,
// and its reference values converted once.
type Policy struct {
	// ID is the policy directory's name, or DefaultID.
	ID string
	// Digest is "sha256:" and the hex SHA-256 over the sorted file names
	// and contents (see Digest).
	Digest string
	// ContentVersion is data.json's "version", or Digest when it has none.
	ContentVersion string
	// Files are the policy's file names, sorted.
	Files []string
	// LoadedAt is when this version was compiled.
	LoadedAt time.Time

	query     rego.PreparedEvalQuery
	reference ast.Value
	// quote is the required PCR selection (data.json's "quote").
	quote evidence.QuotePolicy
}

// Policies holds the current policy and swaps it atomically on Reload:
// appraisals in flight finish under the version they started with.
type Policies struct {
	// Logger receives Watch's reload messages; nil means slog.Default().
	// Set it before calling Watch.
	Logger *slog.Logger

	dir string // "" for the embedded default
	cur atomic.Pointer[Policy]
	mu  sync.Mutex // serializes Reload
}

// Default returns the policies holding the embedded default policy
// (appraise/policy/default), which implements the brief's levels.
func Default(ctx context.Context) (*Policies, error) {
	sub, err := fs.Sub(defaultFS, "policy/default")
	if err != nil {
		return nil, fmt.Errorf("default policy: %w", err)
	}
	files, err := readPolicyFS(sub)
	if err != nil {
		return nil, fmt.Errorf("default policy: %w", err)
	}
	pol, err := Compile(ctx, DefaultID, files)
	if err != nil {
		return nil, fmt.Errorf("default policy: %w", err)
	}
	p := &Policies{}
	p.cur.Store(pol)
	return p, nil
}

// LoadDir compiles the policy in dir: its *.rego files and an optional
// data.json (other files and subdirectories are ignored). Reload and
// Watch read dir again.
func LoadDir(ctx context.Context, dir string) (*Policies, error) {
	p := &Policies{dir: dir}
	files, err := readPolicyFS(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", dir, err)
	}
	pol, err := Compile(ctx, policyID(dir), files)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", dir, err)
	}
	p.cur.Store(pol)
	return p, nil
}

func policyID(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return filepath.Base(abs)
}

// Current returns the policy in force.
func (p *Policies) Current() *Policy { return p.cur.Load() }

// Dir is the directory the policy loads from ("" for the default).
func (p *Policies) Dir() string { return p.dir }

// Reload reads the directory again and, when its digest changed,
// compiles it and makes it current. A policy that does not compile, or
// whose smoke evaluation fails, is an error and the old one stays in
// force. changed reports a new version. The embedded default never
// changes.
func (p *Policies) Reload(ctx context.Context) (changed bool, err error) {
	if p.dir == "" {
		return false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	files, err := readPolicyFS(os.DirFS(p.dir))
	if err != nil {
		return false, fmt.Errorf("policy %s: %w", p.dir, err)
	}
	if cur := p.cur.Load(); cur != nil && cur.Digest == Digest(files) {
		return false, nil
	}
	pol, err := Compile(ctx, policyID(p.dir), files)
	if err != nil {
		return false, fmt.Errorf("policy %s: %w", p.dir, err)
	}
	p.cur.Store(pol)
	return true, nil
}

// Watch polls the directory every interval and reloads it when its
// content digest changes, until ctx ends. A broken new policy is logged
// and the old one stays in force; the next change is tried again.
func (p *Policies) Watch(ctx context.Context, interval time.Duration) {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	if p.dir == "" || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := p.Reload(ctx)
		switch {
		case err != nil:
			// Log a broken policy once, not at every tick.
			if err.Error() != lastErr {
				cur := p.Current()
				log.Error("policy reload failed; the previous policy stays in force",
					"dir", p.dir, "err", err, "policy_digest", cur.Digest)
				lastErr = err.Error()
			}
		case changed:
			lastErr = ""
			cur := p.Current()
			log.Info("policy reloaded", "dir", p.dir, "policy_id", cur.ID,
				"policy_digest", cur.Digest, "content_version", cur.ContentVersion)
		}
	}
}

// readPolicyFS reads the policy files at the top of fsys: *.rego and
// data.json, bounded in number and size.
func readPolicyFS(fsys fs.FS) (map[string][]byte, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	total := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || (!strings.HasSuffix(name, ".rego") && name != DataFile) {
			continue
		}
		if len(files) == maxPolicyFiles {
			return nil, fmt.Errorf("more than %d policy files", maxPolicyFiles)
		}
		b, err := readBounded(fsys, name)
		if err != nil {
			return nil, err
		}
		total += len(b)
		if total > maxPolicyTotal {
			return nil, fmt.Errorf("policy files exceed %d bytes", maxPolicyTotal)
		}
		files[name] = b
	}
	return files, nil
}

func readBounded(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxPolicyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPolicyFile)
	}
	return b, nil
}

// Digest is a policy's digest: "sha256:" and the hex SHA-256 over its
// files in name order, each as the name, a NUL byte, the content's length
// (8 bytes, big endian) and the content.
func Digest(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		h.Write([]byte(name))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(n[:], uint64(len(files[name])))
		h.Write(n[:])
		h.Write(files[name])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// policyData is data.json.
type policyData struct {
	// Version names the content version (the policy set's release).
	Version string `json:"version"`
	// Reference values, given to the policy as input.reference.
	Reference map[string]any `json:"reference"`
	// Quote is the PCR selection TPM evidence must quote; absent means
	// evidence.DefaultQuotePolicy.
	Quote *evidence.QuotePolicy `json:"quote"`
}

// Compile compiles a policy from its files (name → content): the *.rego
// modules, prepared for Query, and data.json. It evaluates the policy on
// two built-in inputs (invalid evidence, and valid software evidence of an
// empty host) and fails unless both give a well-formed result.
func Compile(ctx context.Context, id string, files map[string][]byte) (*Policy, error) {
	pol := &Policy{ID: id, Digest: Digest(files), LoadedAt: time.Now()}
	var data policyData
	modules := 0
	opts := []func(*rego.Rego){
		rego.Query(Query),
		rego.StrictBuiltinErrors(true),
		rego.Capabilities(capabilities()),
		rego.SetRegoVersion(ast.RegoV1),
	}
	for name, b := range files {
		pol.Files = append(pol.Files, name)
		if name == DataFile {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			dec.UseNumber()
			if err := dec.Decode(&data); err != nil {
				return nil, fmt.Errorf("%s: %w", DataFile, err)
			}
			if dec.More() {
				return nil, fmt.Errorf("%s: data after the object", DataFile)
			}
			continue
		}
		m, err := ast.ParseModuleWithOpts(name, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, err
		}
		opts = append(opts, rego.ParsedModule(m))
		modules++
	}
	sort.Strings(pol.Files)
	if modules == 0 {
		return nil, errors.New("no .rego file")
	}
	ref := data.Reference
	if ref == nil {
		ref = map[string]any{}
	}
	v, err := ast.InterfaceToValue(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: reference: %w", DataFile, err)
	}
	pol.reference = v
	pol.quote = evidence.DefaultQuotePolicy
	if data.Quote != nil {
		if err := checkQuotePolicy(*data.Quote); err != nil {
			return nil, fmt.Errorf("%s: quote: %w", DataFile, err)
		}
		pol.quote = *data.Quote
	}
	pol.ContentVersion = data.Version
	if pol.ContentVersion == "" {
		pol.ContentVersion = pol.Digest
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	pol.query = pq
	for _, s := range smokeInputs() {
		in, err := s.input(pol.reference)
		if err != nil {
			return nil, fmt.Errorf("smoke input %s: %w", s.name, err)
		}
		if _, err := pol.eval(ctx, in); err != nil {
			return nil, fmt.Errorf("evaluating the policy on %s: %w", s.name, err)
		}
	}
	return pol, nil
}

// capabilities are OPA's built-ins without those that reach outside the
// process (http.send, net.lookup_ip_addr) or read its environment
// (opa.runtime): an appraisal depends on its input and the policy only.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	denied := map[string]bool{"http.send": true, "net.lookup_ip_addr": true, "opa.runtime": true}
	out := c.Builtins[:0:0]
	for _, b := range c.Builtins {
		if !denied[b.Name] {
			out = append(out, b)
		}
	}
	c.Builtins = out
	return c
}

// checkQuotePolicy refuses a required selection that is not PCR indexes
// 0–23, or that leaves out a boot PCR: a policy may require more than the
// default, never less of the boot (a boot PCR left out would let a log
// verify while that PCR holds what the log does not explain).
func checkQuotePolicy(q evidence.QuotePolicy) error {
	for _, l := range [][]int{q.Boot, q.IMA, q.MOK} {
		for _, i := range l {
			if i < 0 || i > 23 {
				return fmt.Errorf("PCR %d is not 0–23", i)
			}
		}
	}
	for i := 0; i <= evidence.BootPCRs; i++ {
		found := false
		for _, j := range q.Boot {
			found = found || i == j
		}
		if !found {
			return fmt.Errorf("boot leaves out PCR %d: every quote must select the boot PCRs 0–%d", i, evidence.BootPCRs)
		}
	}
	return nil
}
