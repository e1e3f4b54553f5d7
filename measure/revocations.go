package measure

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/report"
)

// Revocations and HostRevocation are the report's revocation types.
type (
	Revocations    = report.Revocations
	HostRevocation = report.HostRevocation
)

// KeyringReader is an optional capability of a hostfs.Source: the member
// serials of a keyring (keyctl KEYCTL_READ). The live host ("/") reads
// them with keyctl; a captured tree has no keyrings to ask, so without
// this capability only /proc/keys is read (see liveKeyrings).
type KeyringReader interface {
	ReadKeyring(serial int32) ([]int32, error)
}

// collectRevocations sorts the code policy's revocations by whether the
// host's own stores hold them: efivarfs dbx (what the firmware applies
// from the next boot), shim's MokListXRT (what shim applied this boot)
// and the kernel's live .blacklist keyring. Without an engine there is
// no policy: the section is unavailable.
func (m *Measurer) collectRevocations(_ context.Context, src hostfs.Source) Revocations {
	out := Revocations{Enforced: []HostRevocation{}, Pending: []HostRevocation{}}
	if m.opts.Engine == nil {
		out.Section = Section{Status: StatusUnavailable, Error: "no code policy"}
		return out
	}
	revs, vigilOnly := m.opts.Engine.Policy().HostRevocations()
	out.VigilOnly = vigilOnly
	var errs []string
	held := map[string]map[string]bool{}
	for _, d := range []struct {
		store string
		id    efi.VarID
		mokx  bool
	}{{report.StoreDBX, efi.DBX, false}, {report.StoreMokX, efi.MokListXRT, true}} {
		data, _, ok, err := readDBData(src, d.id)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", d.id.Name, err))
			continue
		}
		if !ok {
			continue
		}
		lists, err := efi.ParseSignatureLists(data)
		if err != nil {
			// What precedes the fault is still held.
			errs = append(errs, fmt.Sprintf("%s: %v", d.id.Name, err))
		}
		held[d.store] = keySet(efi.Revokes(efi.Entries(lists), d.mokx))
	}
	kv := m.kernelView(src)
	live := kv.live
	switch {
	case errors.Is(kv.liveErr, fs.ErrNotExist):
	case kv.liveErr != nil:
		errs = append(errs, fmt.Sprintf("keyrings: %v", kv.liveErr))
	default:
		held[report.StoreBlacklist] = blacklistSet(live)
	}
	revokedKeys := map[string]bool{}
	if live != nil {
		for _, k := range live.Revoked {
			revokedKeys[k.Description] = true
		}
	}
	for _, r := range revs {
		hr := HostRevocation{Kind: r.Kind, Value: r.Value, Targets: r.Targets, At: []string{}}
		for _, t := range r.Targets {
			if heldIn(held[t], t, r, revokedKeys) {
				hr.At = append(hr.At, t)
			}
		}
		if len(hr.At) > 0 {
			out.EnforcedCount++
			if len(out.Enforced) < report.MaxRevocationsListed {
				out.Enforced = append(out.Enforced, hr)
			}
		} else {
			out.PendingCount++
			if len(out.Pending) < report.MaxRevocationsListed {
				out.Pending = append(out.Pending, hr)
			}
		}
	}
	out.Section = Section{Status: StatusOK}
	if len(errs) > 0 {
		out.Section = Section{Status: StatusError, Error: strings.Join(errs, "; ")}
	}
	return out
}

// heldIn reports whether store t holds r: its key, or, in .blacklist, the
// "tbs:" hash the kernel computes for r's certificate with the
// certificate's own signature digest, or the certificate as a revocation
// key (by the kernel's key description).
func heldIn(set map[string]bool, t string, r codepolicy.HostRevocation, revokedKeys map[string]bool) bool {
	if set == nil {
		return false
	}
	if set[r.Key()] {
		return true
	}
	if t != report.StoreBlacklist || r.Certificate == nil {
		return false
	}
	if revokedKeys[kernelkeys.KeyDescription(r.Certificate)] {
		return true
	}
	if _, sum := kernelkeys.TBSHash(r.Certificate); sum != nil {
		return set[tbsKey(sum)]
	}
	return false
}

func keySet(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// tbsKey is the revocation key of a "tbs:" entry, by its length.
func tbsKey(sum []byte) string {
	kind := ""
	switch len(sum) {
	case 20:
		kind = efi.RevokeCertTBSSHA1
	case 32:
		kind = efi.RevokeCertTBSSHA256
	case 48:
		kind = efi.RevokeCertTBSSHA384
	case 64:
		kind = efi.RevokeCertTBSSHA512
	default:
		return ""
	}
	return efi.RevocationKey(kind, hex.EncodeToString(sum))
}

// blacklistSet is what the kernel's .blacklist hashes revoke: a "tbs:"
// entry a certificate by its TBS hash; a "bin:" entry of 32 bytes both a
// PE image's SHA-256 Authenticode hash (kexec's PE check) and a module's
// signed content (is_binary_blacklisted in pkcs7_verify).
func blacklistSet(l *kernelkeys.Live) map[string]bool {
	m := map[string]bool{}
	for _, h := range l.Hashes {
		switch h.Kind {
		case "tbs":
			if k := tbsKey(h.Sum); k != "" {
				m[k] = true
			}
		case "bin":
			if len(h.Sum) == 32 {
				v := hex.EncodeToString(h.Sum)
				m[efi.RevocationKey(efi.RevokeImageSHA256, v)] = true
				m[efi.RevocationKey(efi.RevokeSignedContentSHA256, v)] = true
			}
		}
	}
	return m
}

// liveKeyrings reads the running kernel's trust and blacklist keyrings
// through src: /proc/keys, and each keyring's members from src's
// KeyringReader, or with keyctl on the live host (exact). A captured tree
// has no members to read: there, .blacklist is taken to hold exactly the
// "blacklist" keys /proc/keys lists (the kernel instantiates that key type
// only for itself, or for a description a trusted key signed, and makes
// it only in .blacklist: certs/blacklist.c blacklist_key_instantiate),
// and the trust keyrings are unknown (Live.Missing names them).
// fs.ErrNotExist when there is no /proc/keys.
func liveKeyrings(src hostfs.Source) (live *kernelkeys.Live, exact bool, err error) {
	raw, err := src.ReadFile("/proc/keys")
	if err != nil {
		return nil, false, err
	}
	keys, err := kernelkeys.ParseProcKeys(bytes.NewReader(raw))
	if err != nil {
		return nil, false, err
	}
	var read kernelkeys.ReadKeyring
	switch s := src.(type) {
	case KeyringReader:
		read = s.ReadKeyring
	case *hostfs.Dir:
		if s.Root() == "/" {
			read = kernelkeys.KeyctlReadKeyring
		}
	}
	if read != nil {
		l, err := kernelkeys.LiveKeyrings(keys, read)
		return l, err == nil, err
	}
	l := &kernelkeys.Live{Missing: []string{kernelkeys.KeyringBuiltin, kernelkeys.KeyringSecondary, kernelkeys.KeyringMachine}}
	for _, k := range keys {
		if k.Type != "blacklist" || k.Revoked() || k.Dead() || k.Invalidated() {
			continue
		}
		h, err := kernelkeys.ParseHash(k.Describe)
		if err != nil {
			return nil, false, err
		}
		l.Hashes = append(l.Hashes, h)
	}
	return l, false, nil
}
