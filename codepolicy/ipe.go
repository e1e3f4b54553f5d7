package codepolicy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Verity names code by an integrity mechanism the kernel enforces by
// itself: a dm-verity volume by its root hash, an fs-verity file by its
// digest. Vigil does not judge volumes or fs-verity files; this is what
// `vigil policy export --to ipe` admits (the IPE LSM's dmverity_roothash
// and fsverity_digest properties). Each value is "DigestName:hex" with a
// digest IPE accepts for it (Documentation/admin-guide/LSM/ipe.rst).
type Verity struct {
	DMRootHash []string `yaml:"dm_roothash,omitempty"`
	FSDigest   []string `yaml:"fs_digest,omitempty"`
}

// dmDigests and fsDigests are the digest names IPE accepts, with their
// sizes in bytes.
var (
	dmDigests = map[string]int{"blake2b-512": 64, "blake2s-256": 32, "sha256": 32, "sha384": 48, "sha512": 64,
		"sha3-224": 28, "sha3-256": 32, "sha3-384": 48, "sha3-512": 64, "sm3": 32, "rmd160": 20}
	fsDigests = map[string]int{"sha256": 32, "sha512": 64}
)

// normVerity checks and normalises one "DigestName:hex" value.
func normVerity(v string, names map[string]int) (string, error) {
	name, h, ok := strings.Cut(strings.TrimSpace(v), ":")
	name = strings.ToLower(name)
	size, known := names[name]
	if !ok || !known {
		var ns []string
		for n := range names {
			ns = append(ns, n)
		}
		sort.Strings(ns)
		return "", fmt.Errorf("%q is not DigestName:hex with a digest of %s", v, strings.Join(ns, ", "))
	}
	norm, _, err := normHex(h, size)
	if err != nil {
		return "", fmt.Errorf("%q: %v", v, err)
	}
	return name + ":" + norm, nil
}

// compileVerity validates p.Verity, normalising its values.
func (p *Policy) compileVerity(ps *problems) {
	for _, l := range []struct {
		key   string
		vals  []string
		names map[string]int
	}{{"verity.dm_roothash", p.Verity.DMRootHash, dmDigests}, {"verity.fs_digest", p.Verity.FSDigest, fsDigests}} {
		for i, v := range l.vals {
			n, err := normVerity(v, l.names)
			if err != nil {
				ps.add(fmt.Sprintf("%s[%d]", l.key, i), "%v", err)
				continue
			}
			l.vals[i] = n
		}
	}
}

// ipeOps are the operations IPE knows (ipe.rst "op"): a policy must set a
// default for each.
var ipeOps = []string{"EXECUTE", "FIRMWARE", "KMODULE", "KEXEC_IMAGE", "KEXEC_INITRAMFS", "POLICY", "X509_CERT"}

// ipeVersion is the policy's version as IPE's policy_version reads it:
// MAJOR.MINOR.REVISION, each 0–65535 (fewer parts are padded with 0).
func ipeVersion(v string) (string, error) {
	if v == "" {
		return "0.0.0", nil
	}
	parts := strings.Split(v, ".")
	if len(parts) > 3 {
		return "", fmt.Errorf("policy version %q has more than three parts", v)
	}
	out := []string{"0", "0", "0"}
	for i, s := range parts {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return "", fmt.Errorf("policy version %q is not MAJOR.MINOR.REVISION of numbers 0 to 65535", v)
		}
		out[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(out, "."), nil
}

// ipeName is the policy's name as an IPE policy_name: one token of
// letters, digits, '_', '-' and '.'; "vigil" when the policy has none.
func ipeName(n string) (string, error) {
	if n == "" {
		return "vigil", nil
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "", fmt.Errorf("policy name %q is not an IPE policy_name (letters, digits, '_', '-', '.')", n)
		}
	}
	return n, nil
}

// ExportIPE writes an IPE policy (the IPE LSM's text format) that admits
// only the code the policy names by an identity the kernel verifies
// itself: the dm-verity volumes of verity.dm_roothash and the fs-verity
// files of verity.fs_digest, for every operation (executables, modules,
// firmware, kexec images and initramfs, policies and certificates the
// kernel reads), and denies everything else (DEFAULT action=DENY).
//
// What IPE cannot express is counted in NotExported and never turned into
// a broader rule: trust anchors and allowed signers (IPE's
// dmverity_signature and fsverity_signature trust any key of a kernel
// keyring, not the policy's anchors), and deny rules by file, image,
// signer or signed-content hash (IPE has no property for them; a denied
// file on an admitted volume would run, so the report warns). A policy
// with no verity entry has nothing IPE may admit: ErrNothingToExport,
// since an empty allow list would deny every binary and an allow-all one
// would admit what the policy does not.
func ExportIPE(p *Policy) ([]byte, ExportStats, error) {
	st := newExportStats("ipe")
	if p == nil || p.ix == nil {
		return nil, st, errNotValidated
	}
	if n := len(p.Anchors()); n > 0 {
		st.NotExported["trust: IPE cannot restrict signatures to the policy's anchors"] += n
	}
	if n := len(p.AllowSigners); n > 0 {
		st.NotExported["allow_signers: IPE has no signer property"] += n
	}
	deny := p.Deny.Len() + len(p.Revocations)
	if deny > 0 {
		st.NotExported["deny, revocations: IPE has no hash or signer property"] += deny
	}
	dm, fs := sortedUnique(p.Verity.DMRootHash), sortedUnique(p.Verity.FSDigest)
	if len(dm)+len(fs) == 0 {
		return nil, st, fmt.Errorf("%w: IPE admits code by dm-verity root hash or fs-verity digest (the policy's verity.dm_roothash, verity.fs_digest), and the policy has none; its anchors, signers and hashes have no IPE form", ErrNothingToExport)
	}
	name, err := ipeName(p.Name)
	if err != nil {
		return nil, st, err
	}
	version, err := ipeVersion(p.Version)
	if err != nil {
		return nil, st, err
	}
	if deny > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf("IPE admits every file of an admitted volume or digest: the policy's %d deny rules and revocations are not in the IPE policy (Vigil still applies them)", deny))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "policy_name=%s policy_version=%s\n", name, version)
	b.WriteString("# Written by vigil policy export --to ipe: only the code the policy names by\n")
	b.WriteString("# dm-verity root hash or fs-verity digest; everything else is denied.\n")
	b.WriteString("DEFAULT action=DENY\n")
	for _, op := range ipeOps {
		for _, h := range dm {
			fmt.Fprintf(&b, "op=%s dmverity_roothash=%s action=ALLOW\n", op, h)
		}
		for _, h := range fs {
			fmt.Fprintf(&b, "op=%s fsverity_digest=%s action=ALLOW\n", op, h)
		}
	}
	st.Written["dmverity_roothash"] = len(dm)
	st.Written["fsverity_digest"] = len(fs)
	return []byte(b.String()), st, nil
}
