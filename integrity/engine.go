package integrity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/kmodsig"
	"github.com/vigil-attest/vigil/kmodsig/decompress"
	"github.com/vigil-attest/vigil/reason"
)

// Options configures an Engine.
type Options struct {
	// Policy is the signing policy; nil means codepolicy.Default().
	Policy *codepolicy.Policy
	// Keyring holds certificates used to find signers that a signature does
	// not carry: Linux module signatures carry no certificates, so the
	// kernel's built-in keys go here. Policy anchors are always included.
	Keyring []*x509.Certificate
	// Now returns the current time (tests set it).
	Now func() time.Time
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Cache enables the verdict cache, keyed by the file's identity and
	// content version: path, device, inode, size, mtime and ctime. A
	// rewrite in place changes ctime even when size and mtime are put
	// back (utimes sets ctime to now), so it is judged again.
	Cache bool
	// Detail adds the certificates of each signature to the verdict.
	Detail bool
	// Mode judges every file under one platform's rules; empty picks the
	// mode from each file's kind (ModeFor). A file the mode does not fit
	// (a PE image in kernel mode, a non-EFI PE in uefi mode) is denied
	// unsupported.
	Mode Mode
}

// Engine verifies files. It is safe for concurrent use.
type Engine struct {
	policy  *codepolicy.Policy
	keyring []*x509.Certificate
	now     func() time.Time
	log     *slog.Logger

	detail  bool
	mode    Mode
	digest  string // the policy's, computed once
	anchors []*x509.Certificate
	ekus    []asn1.ObjectIdentifier
	mu      sync.Mutex
	cache   map[cacheKey]*Verdict
}

// racyWindow is how recently changed a file may be for its verdict to be
// cached (a variable for tests).
var racyWindow = time.Second

type cacheKey struct {
	path               string
	size, mtime, ctime int64
	ino, dev           uint64
}

// New returns an engine for the policy.
func New(o Options) *Engine {
	e := &Engine{policy: o.Policy, now: o.Now, log: o.Logger, detail: o.Detail, mode: o.Mode}
	if e.policy == nil {
		e.policy = codepolicy.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	// The policy is fixed for the engine's life: copy what every file needs.
	e.anchors, e.ekus = e.policy.Anchors(), e.policy.RequiredEKUs()
	e.keyring = append(append([]*x509.Certificate(nil), o.Keyring...), e.anchors...)
	e.digest = e.policy.Digest()
	if o.Cache {
		e.cache = map[cacheKey]*Verdict{}
	}
	return e
}

// Policy returns the engine's policy.
func (e *Engine) Policy() *codepolicy.Policy { return e.policy }

// WithTrusted returns an engine that also trusts certs, as anchors and as
// signer keys: what a platform adds to what the policy trusts, such as
// the kernel's .machine keyring (the MOK certificates, when shim sets
// MokListTrustedRT) for modules. Policy, clock, mode and options are e's;
// the verdict cache is its own.
func (e *Engine) WithTrusted(certs ...*x509.Certificate) *Engine {
	d := &Engine{policy: e.policy, now: e.now, log: e.log, detail: e.detail, mode: e.mode, digest: e.digest, ekus: e.ekus}
	d.anchors = append(append([]*x509.Certificate(nil), e.anchors...), certs...)
	d.keyring = append(append([]*x509.Certificate(nil), e.keyring...), certs...)
	if e.cache != nil {
		d.cache = map[cacheKey]*Verdict{}
	}
	return d
}

// WithPolicy returns an engine that judges under p instead of e's policy:
// its anchors, rules and digest are p's; e's keyring (the certificates
// that find signers) stays, and p's anchors join it. Clock, mode and
// options are e's; the verdict cache is its own. The agent judges
// modules with e's policy as the running kernel applies it (the keys its
// keyrings hold, its .blacklist: codepolicy.Policy.WithAnchors).
func (e *Engine) WithPolicy(p *codepolicy.Policy) *Engine {
	d := &Engine{policy: p, now: e.now, log: e.log, detail: e.detail, mode: e.mode, digest: p.Digest(), ekus: p.RequiredEKUs()}
	d.anchors = p.Anchors()
	d.keyring = append(append([]*x509.Certificate(nil), e.keyring...), d.anchors...)
	if e.cache != nil {
		d.cache = map[cacheKey]*Verdict{}
	}
	return d
}

// VerifyFile decides whether the file at path may load. A detached
// signature is looked for at path+".p7s" when the file is neither a PE image
// nor a kernel module. I/O errors give a verdict with Error set and the
// returned error non-nil; verification failures are in the verdict only.
func (e *Engine) VerifyFile(ctx context.Context, path string) (*Verdict, error) {
	return e.VerifyFileWith(ctx, path, "")
}

// VerifyFileWith is VerifyFile with an explicit detached signature path
// (empty: path+".p7s" when present).
func (e *Engine) VerifyFileWith(ctx context.Context, path, sigPath string) (*Verdict, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Stat before opening: opening a FIFO would block.
	if st, err := os.Stat(path); err != nil {
		return ioVerdict(path, err), err
	} else if !st.Mode().IsRegular() {
		err := fmt.Errorf("%s: not a regular file", path)
		return ioVerdict(path, err), err
	}
	f, err := os.Open(path)
	if err != nil {
		return ioVerdict(path, err), err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ioVerdict(path, err), err
	}
	var key cacheKey
	if e.cache != nil && sigPath == "" {
		key = cacheKey{path: path, size: st.Size(), mtime: st.ModTime().UnixNano()}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			// Without an inode and ctime the key does not identify the
			// content: judge every time.
			return e.verify(ctx, path, f, st.Size(), fileSigSource(path, sigPath))
		}
		key.ino, key.dev, key.ctime = sys.Ino, uint64(sys.Dev), sys.Ctim.Nano()
		// File times tick coarsely (a jiffy): a file changed just now
		// could change again within the same tick, unseen. Such a verdict
		// is not kept (git's "racily clean" rule).
		if racy := time.Since(time.Unix(0, key.ctime)); racy < racyWindow && racy > -racyWindow {
			return e.verify(ctx, path, f, st.Size(), fileSigSource(path, sigPath))
		}
		e.mu.Lock()
		v := e.cache[key]
		e.mu.Unlock()
		if v != nil {
			return v, nil
		}
	}
	v, err := e.verify(ctx, path, f, st.Size(), fileSigSource(path, sigPath))
	if err == nil && e.cache != nil && sigPath == "" {
		e.mu.Lock()
		e.cache[key] = v
		e.mu.Unlock()
	}
	return v, err
}

func ioVerdict(path string, err error) *Verdict {
	return &Verdict{Path: path, Format: FormatUnknown, Reasons: []reason.Code{}, Signatures: []Signature{}, Error: err.Error()}
}

// ModeFor is the mode a file of format f is judged under by default:
// modules under kernel, detached signatures (and files in no platform
// format) under cms. A PE image is judged under uefi when its optional
// header names an EFI subsystem and under windows otherwise, which needs
// its headers: ModeFor returns "" for FormatPE.
func ModeFor(f Format) Mode {
	switch f {
	case FormatKmod:
		return ModeKernel
	case FormatCMS, FormatUnknown:
		return ModeCMS
	}
	return ""
}

// Detect returns the format of a file from its first bytes and name.
func Detect(name string, head []byte) Format {
	switch {
	case len(head) >= 2 && head[0] == 'M' && head[1] == 'Z':
		return FormatPE
	case bytes.HasPrefix(head, []byte("\x7fELF")) && isModuleName(name):
		return FormatKmod
	case isModuleName(name) && isCompressedModule(head):
		return FormatKmod
	}
	return FormatUnknown
}

// isCompressedModule reports a compression kmod can load modules from.
func isCompressedModule(head []byte) bool {
	f := decompress.Detect(head)
	return f != decompress.None && f.Decodable()
}

func isModuleName(name string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// VerifyReader decides whether the content of r (size bytes, named name for
// format detection and the verdict's path) may load. sig, when not nil, is a
// detached CMS signature over the content; nothing is read from disk.
func (e *Engine) VerifyReader(ctx context.Context, name string, r io.ReaderAt, size int64, sig []byte) (*Verdict, error) {
	return e.verify(ctx, name, r, size, sigSource{explicit: sig != nil, load: func() ([]byte, bool, error) { return sig, sig != nil, nil }})
}

// sigSource finds a detached signature: load returns its bytes, whether
// there is one, and an I/O error. An explicit signature makes the file be
// checked as detached CMS whatever its format.
type sigSource struct {
	explicit bool
	load     func() ([]byte, bool, error)
}

func (e *Engine) verify(ctx context.Context, path string, f io.ReaderAt, size int64, detached sigSource) (*Verdict, error) {
	v := &Verdict{Path: path, Size: size, Reasons: []reason.Code{}, Signatures: []Signature{}, PolicyDigest: e.digest}
	head := make([]byte, 8)
	n, _ := f.ReadAt(head, 0)
	v.Format = Detect(path, head[:n])
	if v.Format == FormatUnknown && bytes.HasPrefix(head[:n], []byte("\x7fELF")) && kmodsig.HasMarker(f, size) {
		v.Format = FormatKmod
	}
	var sig []byte
	// cms mode judges the file by its detached signature whatever its
	// format.
	if v.Format == FormatUnknown || detached.explicit || e.mode == ModeCMS {
		b, ok, err := detached.load()
		if err != nil {
			v.Error = err.Error()
			return v, err
		}
		if ok {
			v.Format, sig = FormatCMS, b
		}
	}
	var err error
	v.Mode = e.mode
	if v.Mode == "" {
		v.Mode = ModeFor(v.Format)
	}
	switch {
	case e.mode != "" && !e.mode.fits(v.Format):
		// The mode's platform does not load files of this kind: no
		// verdict of that platform exists, so none is made up.
		err = unparsable(v, f, size, reason.New(reason.Unsupported, "mode %q does not judge %s files", e.mode, v.Format))
	case v.Format == FormatPE:
		err = e.verifyPE(ctx, v, f, size)
	case v.Format == FormatKmod:
		err = e.verifyModule(ctx, v, f, size)
	case v.Format == FormatCMS:
		err = e.verifyDetached(ctx, v, f, size, sig)
	default:
		v.SHA256, err = hashFile(f, size)
	}
	if err != nil {
		var re *reason.Error
		if !errors.As(err, &re) {
			// An I/O error: no verdict can be made.
			v.Error = err.Error()
			return v, err
		}
		v.Reasons = appendCode(v.Reasons, re.Code)
		v.Error = err.Error()
	}
	e.decide(v)
	return v, nil
}

// decide applies the file-level rule: allowed when at least one signature
// that the mode's platform reads (counted) is valid and no deny rule
// matched.
func (e *Engine) decide(v *Verdict) {
	for i := range v.Signatures {
		s := &v.Signatures[i]
		s.Valid = len(s.Reasons) == 0
		if s.Reasons == nil {
			s.Reasons = []reason.Code{}
		}
	}
	counts := counted(v)
	anyValid := false
	for i, s := range v.Signatures {
		if counts[i] && s.Valid {
			anyValid = true
		}
	}
	var fileSHA, a1, a256 []byte
	fileSHA, _ = hex.DecodeString(v.SHA256)
	if v.Authentihash != nil {
		a1, _ = hex.DecodeString(v.Authentihash.SHA1)
		a256, _ = hex.DecodeString(v.Authentihash.SHA256)
	}
	if rule, denied := e.policy.DenyHash(fileSHA, a1, a256); denied {
		v.DenyRules = append(v.DenyRules, rule)
		v.Reasons = appendCode(v.Reasons, reason.BlocklistedHash)
	}
	if !anyValid {
		if len(v.Signatures) == 0 && len(v.Reasons) == 0 {
			v.Reasons = appendCode(v.Reasons, reason.Unsigned)
		}
		for i, s := range v.Signatures {
			if !counts[i] {
				continue
			}
			for _, c := range s.Reasons {
				v.Reasons = appendCode(v.Reasons, c)
			}
		}
	}
	// A deny rule on a signer denies the file whatever else signs it, like
	// a hash deny rule, even in a signature the mode does not read (Vigil's
	// block list, not the platform's, and fail closed); revocation only
	// invalidates its own signature.
	for _, s := range v.Signatures {
		if slices.Contains(s.Reasons, reason.BlocklistedSigner) {
			v.Reasons = appendCode(v.Reasons, reason.BlocklistedSigner)
		}
	}
	v.Allowed = anyValid && len(v.DenyRules) == 0 && !slices.Contains(v.Reasons, reason.Malformed) &&
		!slices.Contains(v.Reasons, reason.BlocklistedSigner) && !slices.Contains(v.Reasons, reason.BadCertTable)
	if !v.Allowed && len(v.Reasons) == 0 {
		v.Reasons = appendCode(v.Reasons, reason.Malformed)
	}
}

// counted reports, for each signature of v, whether the platform of v.Mode
// reads it, and marks the others Ignored.
//
//   - uefi: every certificate-table entry, no nested signature. EDK2's
//     DxeImageVerificationHandler (SecurityPkg/Library/
//     DxeImageVerificationLib/DxeImageVerificationLib.c) walks the
//     certificate table and verifies each entry's PKCS#7 with Pkcs7Verify
//     / AuthenticodeVerify (CryptoPkg), which check the outer SignerInfo
//     only: the nested signature (1.3.6.1.4.1.311.2.4.1) is an unsigned
//     attribute that neither reads. shim's verify_buffer_authenticode
//     walks the same entries the same way.
//   - windows: the primary signature of the first entry decides. A nested
//     signature of that entry counts only when the primary fails for no
//     reason but weak-algorithm: the dual-signing case, a SHA-256
//     signature nested under a SHA-1 primary for systems that require
//     SHA-256 (kernel-mode code signing since Windows 10 1607). Anything
//     else wrong with the primary (its digest, its signature, its chain,
//     revocation) denies the file whatever the nested signatures say.
//     Entries after the first are not read by Windows.
//   - kernel, cms: every signature (the kernel's rule that every signer
//     must verify is applied by verifyModule).
func counted(v *Verdict) []bool {
	out := make([]bool, len(v.Signatures))
	ignore := func(i int, why string) {
		v.Signatures[i].Ignored = true
		v.Signatures[i].Messages = append(v.Signatures[i].Messages, why)
	}
	switch v.Mode {
	case ModeUEFI:
		for i, s := range v.Signatures {
			out[i] = !s.Nested
			if s.Nested {
				ignore(i, "uefi mode: the firmware (EDK2 DxeImageVerificationLib) and shim do not read nested signatures")
			}
		}
	case ModeWindows:
		primary := -1
		for i, s := range v.Signatures {
			if s.Entry == 0 && !s.Nested {
				primary = i
				break
			}
		}
		dual := primary >= 0 && !v.Signatures[primary].Valid &&
			slices.Equal(v.Signatures[primary].Reasons, []reason.Code{reason.WeakAlgorithm})
		for i, s := range v.Signatures {
			switch {
			case i == primary:
				out[i] = true
			case s.Entry != 0:
				ignore(i, "windows mode: Windows reads only the first certificate-table entry")
			case dual:
				out[i] = true
			default:
				ignore(i, "windows mode: the primary signature decides; a nested signature counts only in place of a primary whose only fault is a weak (SHA-1) digest")
			}
		}
	default:
		for i := range out {
			out[i] = true
		}
	}
	return out
}

// unparsable records the file's SHA-256 (block lists still apply) and
// returns the parse error tagged malformed unless it carries its own code.
func unparsable(v *Verdict, f io.ReaderAt, size int64, err error) error {
	sum, herr := hashFile(f, size)
	if herr != nil {
		return herr
	}
	v.SHA256 = sum
	return reason.Wrap(reason.Of(err, reason.Malformed), err)
}

// hashFile returns the hex SHA-256 of a whole file.
func hashFile(r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// multiHash feeds the same bytes to several hashes.
type multiHash []hash.Hash

func (m multiHash) Write(p []byte) (int, error) {
	for _, h := range m {
		h.Write(p)
	}
	return len(p), nil
}

func newHashes(hs ...crypto.Hash) (map[crypto.Hash]hash.Hash, multiHash) {
	out := map[crypto.Hash]hash.Hash{}
	var m multiHash
	for _, h := range hs {
		if _, ok := out[h]; ok || !h.Available() {
			continue
		}
		x := h.New()
		out[h] = x
		m = append(m, x)
	}
	return out, m
}

// fileSigSource reads sigPath, or path+".p7s" when sigPath is empty and that
// file exists.
func fileSigSource(path, sigPath string) sigSource {
	return sigSource{explicit: sigPath != "", load: func() ([]byte, bool, error) {
		p := sigPath
		if p == "" {
			p = path + ".p7s"
			if _, err := os.Stat(p); err != nil {
				return nil, false, nil
			}
		}
		b, err := readBounded(p, cms.MaxInput)
		if err != nil {
			var re *reason.Error
			if errors.As(err, &re) {
				return nil, false, err
			}
			return nil, false, fmt.Errorf("signature %s: %w", p, err)
		}
		return b, true, nil
	}}
}
