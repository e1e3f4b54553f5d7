package measure

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io/fs"
	"sort"
	"strings"

	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/kernelkeys"
	"github.com/vigil-attest/vigil/report"
)

// Keyring types of the report.
type (
	Keyrings           = report.Keyrings
	KeyringKey         = report.KeyringKey
	KeyringCertificate = report.KeyringCertificate
)

// kernelView is the running kernel's keys as one Measure reads them
// (once): its live keyrings, and the engine modules are judged with.
type kernelView struct {
	live    *kernelkeys.Live
	exact   bool // membership read with keyctl
	liveErr error
	eng     *integrity.Engine
	section Keyrings
}

// kernelView returns this measurement's view, reading it the first time.
func (m *Measurer) kernelView(src hostfs.Source) *kernelView {
	if m.view == nil {
		m.view = m.readKernelView(src)
	}
	return m.view
}

// moduleEngine is the engine modules are judged with, as the running
// kernel judges them (kernelView).
func (m *Measurer) moduleEngine(src hostfs.Source) *integrity.Engine {
	return m.kernelView(src).eng
}

func (m *Measurer) collectKeyrings(src hostfs.Source) Keyrings {
	return m.kernelView(src).section
}

// readKernelView reads the live keyrings and builds the module engine:
//
//   - the candidates are the keys the agent would trust for modules: the
//     engine's anchors (the kernel image's system list, --kernel) and,
//     when shim set MokListTrustedRT, MokListRT's certificates (the
//     kernel's .machine keyring: the DKMS case);
//   - with the live keyrings' members (keyctl), only the candidates a
//     trust keyring holds (by the kernel's key description) are anchors:
//     a certificate the running kernel does not trust never vouches for
//     a module; .blacklist's revocation certificates and its tbs:/bin:
//     hashes are revocations (codepolicy.AddKernelRevocations);
//   - from a capture (no keyctl), the candidates stay anchors and the
//     blacklist hash keys /proc/keys lists are revocations;
//   - without /proc/keys, the candidates as configured.
//
// The engine is rebuilt only when what it depends on changes, so its
// verdict cache lasts from one measurement to the next.
func (m *Measurer) readKernelView(src hostfs.Source) *kernelView {
	v := &kernelView{section: Keyrings{Trusted: []KeyringKey{}, Revoked: []KeyringKey{}, Blacklist: []string{},
		Missing: []string{}, NotTrusted: []KeyringCertificate{}}}
	v.live, v.exact, v.liveErr = liveKeyrings(src)
	switch {
	case v.liveErr == nil:
		v.section.Section = Section{Status: StatusOK}
		v.section.Membership = report.MembershipProcKeys
		if v.exact {
			v.section.Membership = report.MembershipKeyctl
		}
	case errors.Is(v.liveErr, fs.ErrNotExist):
		v.section.Section = Section{Status: StatusUnavailable, Error: v.liveErr.Error()}
		v.live = nil
	default:
		v.section.Section = Section{Status: StatusError, Error: v.liveErr.Error()}
		v.live = nil
	}
	base := m.opts.Engine
	var candidates []*x509.Certificate
	var mok []*x509.Certificate
	if base != nil {
		candidates = base.Policy().Anchors()
		mok = m.trustedMOK(src)
		candidates = append(candidates, mok...)
	}
	var trusted, revoked []*x509.Certificate
	if v.live != nil {
		var tr map[string]*x509.Certificate
		tr, revoked = map[string]*x509.Certificate{}, nil
		if v.exact {
			var t []*x509.Certificate
			t, revoked, _ = v.live.Match(candidates)
			for _, c := range t {
				tr[kernelkeys.KeyDescription(c)] = c
			}
			trusted = t
		}
		certOf := func(desc string, certs map[string]*x509.Certificate) string {
			if c := certs[desc]; c != nil {
				s := sha256.Sum256(c.Raw)
				return hex.EncodeToString(s[:])
			}
			return ""
		}
		rv := map[string]*x509.Certificate{}
		for _, c := range revoked {
			rv[kernelkeys.KeyDescription(c)] = c
		}
		byDesc := map[string]*x509.Certificate{}
		for _, c := range candidates {
			byDesc[kernelkeys.KeyDescription(c)] = c
		}
		for _, k := range v.live.Trusted {
			v.section.Trusted = append(v.section.Trusted, KeyringKey{Keyring: k.Keyring, Description: k.Description, Algorithm: k.Algorithm, Certificate: certOf(k.Description, byDesc)})
		}
		for _, k := range v.live.Revoked {
			v.section.Revoked = append(v.section.Revoked, KeyringKey{Keyring: k.Keyring, Description: k.Description, Algorithm: k.Algorithm, Certificate: certOf(k.Description, rv)})
		}
		hs := make([]string, 0, len(v.live.Hashes))
		for _, h := range v.live.Hashes {
			hs = append(hs, h.String())
		}
		sort.Strings(hs)
		hs = compactStrings(hs)
		v.section.BlacklistCount = len(hs)
		v.section.Blacklist = hs[:min(len(hs), report.MaxBlacklistListed)]
		v.section.Missing = append(v.section.Missing, v.live.Missing...)
		if v.exact {
			for _, c := range candidates {
				if tr[kernelkeys.KeyDescription(c)] == nil {
					s := sha256.Sum256(c.Raw)
					v.section.NotTrusted = append(v.section.NotTrusted, KeyringCertificate{Subject: c.Subject.String(), SHA256: hex.EncodeToString(s[:])})
				}
			}
		}
	}
	if base == nil {
		return v
	}
	if v.live == nil {
		v.eng = m.cachedEngine(engineKey(mok, nil, false, nil), func() *integrity.Engine {
			if len(mok) == 0 {
				return base
			}
			return base.WithTrusted(mok...)
		})
		return v
	}
	anchors := candidates
	if v.exact {
		anchors = trusted
	}
	var tbs, bin [][]byte
	for _, h := range v.live.Hashes {
		if h.Kind == "tbs" {
			tbs = append(tbs, h.Sum)
		} else {
			bin = append(bin, h.Sum)
		}
	}
	v.eng = m.cachedEngine(engineKey(anchors, revoked, v.exact, v.section.Blacklist), func() *integrity.Engine {
		p, err := base.Policy().WithAnchors(anchors...)
		if err != nil {
			m.log.Warn("the module policy under the live keyrings does not build; modules judged as configured", "err", err)
			return base.WithTrusted(mok...)
		}
		p.AddKernelRevocations(revoked, tbs, bin)
		return base.WithPolicy(p)
	})
	return v
}

func compactStrings(ss []string) []string {
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// engineKey identifies what a module engine is built from.
func engineKey(anchors, revoked []*x509.Certificate, exact bool, hashes []string) [32]byte {
	h := sha256.New()
	for _, l := range [][]*x509.Certificate{anchors, revoked} {
		for _, c := range l {
			s := sha256.Sum256(c.Raw)
			h.Write(s[:])
		}
		h.Write([]byte{0xff})
	}
	if exact {
		h.Write([]byte{1})
	}
	h.Write([]byte(strings.Join(hashes, ",")))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// cachedEngine returns the module engine built for key, building it when
// the key changed since the last measurement.
func (m *Measurer) cachedEngine(key [32]byte, build func() *integrity.Engine) *integrity.Engine {
	m.mokMu.Lock()
	defer m.mokMu.Unlock()
	if m.mok != nil && m.mokKey == key {
		return m.mok
	}
	m.mok, m.mokKey = build(), key
	return m.mok
}

// trustedMOK is MokListRT's certificates when shim set MokListTrustedRT:
// the kernel loads them into its .machine keyring and trusts them for
// modules. None without the flag, or when the variables cannot be read.
func (m *Measurer) trustedMOK(src hostfs.Source) []*x509.Certificate {
	flag, ok, err := readVar(src, efi.MokListTrustedRT)
	if err != nil || !ok || len(flag.Data) == 0 || flag.Data[0] == 0 {
		return nil
	}
	list, ok, err := readVar(src, efi.MokListRT)
	if err != nil || !ok {
		return nil
	}
	lists, err := efi.ParseSignatureLists(list.Data)
	if err != nil {
		m.log.Warn("MokListRT does not parse; its keys are not trusted for modules", "err", err)
		return nil
	}
	var certs []*x509.Certificate
	for _, e := range efi.Entries(lists) {
		if e.Certificate != nil {
			certs = append(certs, e.Certificate)
		}
	}
	return certs
}
