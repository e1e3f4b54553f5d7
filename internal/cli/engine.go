package cli

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/trust"
)

// engineOptions are the flags that build a code-integrity engine.
type engineOptions struct {
	Policy       string
	Trust        []string
	Keyring      []string
	Kernel       []string
	SystemMap    []string
	IgnoreExpiry bool
	// Mode is --mode (verify, scan): "" or "auto" picks each file's.
	Mode string
	// detail asks the engine for certificate details (inspect).
	detail bool
	// cache keeps verdicts by (path, size, mtime, inode) (the agent).
	cache bool
	// CacheDir is where extracted kernel keys are cached: --cache-dir,
	// else $VIGIL_CACHE_DIR, else the agent's state directory's cache/
	// (stateCache), else the user's cache directory (cacheDir).
	CacheDir string
	// stateCache is the agent's default: --state-dir/cache.
	stateCache string
}

func (o *engineOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Policy, "policy", "p", "", "code-integrity policy file (YAML; see docs/policy.md)")
	fs.StringSliceVar(&o.Trust, "trust", nil, "trust anchor certificate file (PEM or DER), repeatable; added to the policy's")
	fs.StringSliceVar(&o.Keyring, "keyring", nil, "certificates to find signers that signatures do not carry (PEM or DER), repeatable")
	fs.StringSliceVar(&o.Kernel, "kernel", nil, "kernel image (vmlinuz) whose system certificate list is trusted for modules (its revocation list and blacklist hashes revoke), repeatable")
	fs.StringSliceVar(&o.SystemMap, "system-map", nil, "System.map of the --kernel image of the same position, locating its key lists by symbol (default: System.map-VER beside vmlinuz-VER when it has the symbols)")
	fs.BoolVar(&o.IgnoreExpiry, "ignore-expiry", false, "ignore certificate validity periods (UEFI semantics), overriding the policy")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "cache the keys extracted from --kernel images here (default: $VIGIL_CACHE_DIR, else for 'agent run' --state-dir/cache, else ~/.cache/vigil)")
}

func (o *engineOptions) build(log *slog.Logger) (*integrity.Engine, error) {
	mode, err := integrity.ParseMode(o.Mode)
	if err != nil {
		return nil, usageErr("--mode: %v", err)
	}
	var p *codepolicy.Policy
	if o.Policy != "" {
		if p, err = codepolicy.Load(o.Policy); err != nil {
			return nil, usageErr("policy: %v", err)
		}
	} else {
		p = codepolicy.Default()
	}
	anchors, err := trust.LoadCertificateFiles(o.Trust)
	if err != nil {
		return nil, usageErr("--trust: %v", err)
	}
	if len(o.SystemMap) > len(o.Kernel) {
		return nil, usageErr("--system-map: %d maps for %d --kernel images", len(o.SystemMap), len(o.Kernel))
	}
	var revoked []*x509.Certificate
	var tbs, bin [][]byte
	for i, k := range o.Kernel {
		m := ""
		if i < len(o.SystemMap) {
			m = o.SystemMap[i]
		}
		keys, err := kernelKeys(k, m, o.cacheDir(), log)
		if err != nil {
			return nil, usageErr("--kernel %s: %v", k, err)
		}
		// The system list is what the kernel trusts for modules: anchors.
		// Its revocation list and blacklist are revocations, never anchors.
		anchors = append(anchors, keys.System...)
		revoked = append(revoked, keys.Revoked...)
		for _, h := range keys.Hashes {
			switch h.Kind {
			case "tbs":
				tbs = append(tbs, h.Sum)
			case "bin":
				// The hash of a module's signed content: a
				// deny.signed_content_sha256 entry.
				bin = append(bin, h.Sum)
			}
		}
	}
	if len(anchors) > 0 {
		p.AddAnchors(anchors...)
	}
	if len(revoked)+len(tbs)+len(bin) > 0 {
		st := p.AddKernelRevocations(revoked, tbs, bin)
		log.Info("kernel revocations", "added", st.TotalAdded(), "skipped", st.Skipped)
	}
	if o.IgnoreExpiry {
		p.IgnoreExpiry = true
	}
	keyring, err := trust.LoadCertificateFiles(o.Keyring)
	if err != nil {
		return nil, usageErr("--keyring: %v", err)
	}
	return integrity.New(integrity.Options{Policy: p, Keyring: keyring, Logger: log, Detail: o.detail, Cache: o.cache, Mode: mode}), nil
}

// kernelKeys returns the key lists built into a kernel image (see
// kernelkeys.Read), located by the System.map at mapPath, or, when mapPath
// is empty, by the System.map-VER beside a vmlinuz-VER if that map has the
// symbols (Debian's placeholder map does not: then by layout). Finding them
// means decompressing the whole image (a second or more), so the result is
// cached under the user's cache directory, keyed by the SHA-256 of the image
// and of the map: the same inputs always yield the same lists. The cache
// format is versioned; an older cache, which held every certificate found in
// the image, is never read. $VIGIL_CACHE_DIR overrides the location; an
// unusable cache is ignored.
func kernelKeys(path, mapPath, cache string, log *slog.Logger) (*kernelkeys.Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var syms kernelkeys.Symbols
	var mapSum string
	explicit := mapPath != ""
	if !explicit {
		if b := filepath.Base(path); strings.HasPrefix(b, "vmlinuz-") {
			mapPath = filepath.Join(filepath.Dir(path), "System.map-"+strings.TrimPrefix(b, "vmlinuz-"))
		}
	}
	if mapPath != "" {
		b, err := os.ReadFile(mapPath)
		switch {
		case err != nil && !explicit:
			mapPath = ""
		case err != nil:
			return nil, fmt.Errorf("--system-map: %w", err)
		default:
			syms, err = kernelkeys.ParseSystemMap(bytes.NewReader(b))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", mapPath, err)
			}
			if _, ok := syms[kernelkeys.SymSystemList]; !ok && !explicit {
				log.Debug("System.map without the key list symbols; locating by layout", "map", mapPath)
				syms, mapPath = nil, ""
			} else {
				s := sha256.Sum256(b)
				mapSum = "-" + hex.EncodeToString(s[:])
			}
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	sum := hex.EncodeToString(h.Sum(nil)) + mapSum
	cacheFile := ""
	if cache != "" {
		cacheFile = filepath.Join(cache, "kernelkeys", sum+".v2.pem")
		if k, err := readKernelKeysCache(cacheFile); err == nil {
			log.Debug("kernel keys from cache", "kernel", path, "cache", cacheFile, "certificates", len(k.System))
			return k, nil
		}
	}
	ko := kernelkeys.Options{Symbols: syms}
	if cacheFile != "" && os.MkdirAll(filepath.Dir(cacheFile), 0o755) == nil {
		// The decompressed image is spooled beside the cache (a file
		// of its own, unlinked at once), not to a /tmp that may be RAM.
		ko.TempDir = filepath.Dir(cacheFile)
	}
	restore := extractionGC()
	k, err := kernelkeys.Read(f, st.Size(), ko)
	restore()
	if err != nil {
		return nil, err
	}
	if len(k.System) == 0 {
		return nil, fmt.Errorf("the system certificate list is empty")
	}
	for _, n := range k.Notes {
		log.Warn("kernel key lists", "kernel", path, "note", n)
	}
	log.Info("kernel keys", "kernel", path, "method", k.Method, "map", mapPath, "system", len(k.System), "revoked", len(k.Revoked), "hashes", len(k.Hashes), "cache", cacheFile)
	if cacheFile != "" {
		if err := os.MkdirAll(filepath.Dir(cacheFile), 0o755); err == nil {
			if err := writeFileAtomic(cacheFile, encodeKernelKeysCache(k), 0o644); err != nil {
				log.Debug("kernel key cache not written", "err", err)
			}
		}
	}
	return k, nil
}

// The cache file: PEM blocks, CERTIFICATE with a "List" header (system or
// revoked) and KERNEL BLACKLIST HASH with an "Entry" header, in order.
func encodeKernelKeysCache(k *kernelkeys.Keys) []byte {
	var b []byte
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "KERNEL KEY LISTS", Headers: map[string]string{"Method": k.Method}})...)
	for _, c := range k.System {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"List": "system"}, Bytes: c.Raw})...)
	}
	for _, c := range k.Revoked {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"List": "revoked"}, Bytes: c.Raw})...)
	}
	for _, h := range k.Hashes {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "KERNEL BLACKLIST HASH", Headers: map[string]string{"Entry": h.String()}})...)
	}
	return b
}

func readKernelKeysCache(path string) (*kernelkeys.Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k := &kernelkeys.Keys{}
	for first := true; ; first = false {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch {
		case first && blk.Type == "KERNEL KEY LISTS":
			k.Method = blk.Headers["Method"]
		case first:
			return nil, fmt.Errorf("not a kernel key cache")
		case blk.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, err
			}
			switch blk.Headers["List"] {
			case "system":
				k.System = append(k.System, c)
			case "revoked":
				k.Revoked = append(k.Revoked, c)
			default:
				return nil, fmt.Errorf("certificate of unknown list %q", blk.Headers["List"])
			}
		case blk.Type == "KERNEL BLACKLIST HASH":
			h, err := kernelkeys.ParseHash(blk.Headers["Entry"])
			if err != nil {
				return nil, err
			}
			k.Hashes = append(k.Hashes, h)
		default:
			return nil, fmt.Errorf("unknown block %q", blk.Type)
		}
	}
	if k.Method == "" || len(k.System) == 0 {
		return nil, fmt.Errorf("not a kernel key cache")
	}
	return k, nil
}

// cacheDir is the kernel-key cache directory the options select (see
// CacheDir); "" caches nothing.
func (o *engineOptions) cacheDir() string {
	switch {
	case o.CacheDir != "":
		return o.CacheDir
	case os.Getenv("VIGIL_CACHE_DIR") != "":
		return os.Getenv("VIGIL_CACHE_DIR")
	case o.stateCache != "":
		return o.stateCache
	}
	return cacheDir()
}

// cacheDir is the default cache directory: $VIGIL_CACHE_DIR, else the
// user's cache directory's vigil/.
func cacheDir() string {
	if d := os.Getenv("VIGIL_CACHE_DIR"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "vigil")
}

// extractionGCPercent is the collector's setting while kernelkeys.Read
// decompresses a kernel image. The xz decoder (github.com/ulikunitz/xz/lzma)
// allocates its dictionary (32 MiB for a kernel) once and then a little
// garbage for every LZMA operation, about 0.85 bytes per byte of output
// (56 MB for Debian's 66 MB vmlinux): at Go's default GOGC=100 the heap
// grows to twice the dictionary before each collection, which doubles the
// process's peak RSS on its first run per kernel. At 10 the heap stays
// within a tenth of the dictionary above it; the dictionary holds no
// pointers, so the more frequent collections cost little (row 6b of
// docs/BENCHMARKS.md). GOGC set by the operator wins.
const extractionGCPercent = 10

var extractionGCState struct {
	sync.Mutex
	users int
	prev  int
}

// extractionGC applies extractionGCPercent (unless GOGC is set or the
// setting is already lower) until the returned function is called;
// concurrent extractions share it, and the last one restores the previous
// setting.
func extractionGC() (restore func()) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return func() {}
	}
	s := &extractionGCState
	s.Lock()
	defer s.Unlock()
	if s.users == 0 {
		s.prev = debug.SetGCPercent(extractionGCPercent)
		if s.prev >= 0 && s.prev < extractionGCPercent {
			debug.SetGCPercent(s.prev)
		}
	}
	s.users++
	return sync.OnceFunc(func() {
		s.Lock()
		defer s.Unlock()
		if s.users--; s.users == 0 {
			debug.SetGCPercent(s.prev)
		}
	})
}
