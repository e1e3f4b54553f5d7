package measure

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/reason"
)

// Bounds of the boot-file walk under /boot/efi (a FAT partition with a
// few dozen files on a real host).
const (
	maxBootDepth = 8
	maxBootFiles = 256
)

func (m *Measurer) collectSecureBoot(ctx context.Context, src hostfs.Source) SecureBoot {
	out := SecureBoot{BootFiles: []BootFile{}}
	var errs []string
	fail := func(what string, err error) { errs = append(errs, what+": "+err.Error()) }

	// The variables. No /sys/firmware/efi: a BIOS boot (or a capture
	// without it). The boot files are measured all the same.
	out.Section = statusOf(firmwareEFI(src))
	if out.Status == StatusOK {
		readVariables(src, &out, fail)
	}
	files, err := bootFiles(src)
	if err != nil {
		fail("boot files", err)
	}
	var platform *integrity.Engine
	if out.Status == StatusOK && m.opts.Engine != nil {
		if platform, err = platformEngine(src); err != nil {
			fail("the host's Secure Boot databases", err)
		}
	}
	for _, p := range files {
		if ctx.Err() != nil {
			break
		}
		bf := m.judgeBootFile(ctx, src, p)
		if platform != nil && bf.Error == "" {
			bf.Platform = judgePlatform(ctx, platform, src, p)
		}
		if bf.Error != "" {
			fail(p, errors.New(bf.Error))
		}
		out.BootFiles = append(out.BootFiles, bf)
	}
	denyByDBX(&out)
	switch {
	case len(errs) == 0:
	case out.Status == StatusUnavailable:
		// Without UEFI the section stays unavailable; say what else failed.
		out.Error = strings.Join(append([]string{out.Error}, errs...), "; ")
	default:
		out.Section = Section{Status: StatusError, Error: strings.Join(errs, "; ")}
	}
	return out
}

// firmwareEFI reports whether the host booted through UEFI and exposes
// its variables.
func firmwareEFI(src hostfs.Source) error {
	if _, err := src.Stat("/sys/firmware/efi"); err != nil {
		return fmt.Errorf("not booted through UEFI: %w", err)
	}
	if _, err := src.Stat(efi.EfivarsDir); err != nil {
		return fmt.Errorf("efivarfs not mounted: %w", err)
	}
	return nil
}

// readVariables reads the state variables and the databases into out,
// reporting each broken one through fail.
func readVariables(src hostfs.Source, out *SecureBoot, fail func(string, error)) {
	sb, sbErr := readBoolVar(src, efi.SecureBoot)
	switch {
	case sbErr != nil:
		fail(efi.SecureBoot.Name, sbErr)
	case sb != nil:
		out.Enabled = *sb
	}
	setup, err := readBoolVar(src, efi.SetupMode)
	switch {
	case err != nil:
		fail(efi.SetupMode.Name, err)
	case setup != nil:
		out.SetupMode = *setup
	case sb != nil:
		// A firmware with Secure Boot has SetupMode (UEFI 2.3.1): its
		// absence leaves the mode unknown.
		fail(efi.SetupMode.Name, errors.New("absent while SecureBoot is present"))
	}
	if out.AuditMode, err = readBoolVar(src, efi.AuditMode); err != nil {
		fail(efi.AuditMode.Name, err)
	}
	if out.DeployedMode, err = readBoolVar(src, efi.DeployedMode); err != nil {
		fail(efi.DeployedMode.Name, err)
	}
	if v, ok, err := readVar(src, efi.MokSBStateRT); err != nil {
		fail(efi.MokSBStateRT.Name, err)
	} else if ok {
		if len(v.Data) == 0 {
			fail(efi.MokSBStateRT.Name, errors.New("empty"))
			// Fail closed: a state that cannot be read may be disabled.
			out.MokSBState = &MokSBState{ValidationDisabled: true, Value: -1}
		} else {
			out.MokSBState = &MokSBState{ValidationDisabled: v.Data[0] == 1, Value: int(v.Data[0])}
		}
	}
	if v, ok, err := readVar(src, efi.MokListTrustedRT); err != nil {
		fail(efi.MokListTrustedRT.Name, err)
	} else if ok {
		// Fail closed: an unreadable flag may be set.
		trusted := len(v.Data) == 0 || v.Data[0] != 0
		out.MokListTrusted = &trusted
	}
	if v, ok, err := readVar(src, efi.SbatLevelRT); err != nil {
		fail(efi.SbatLevelRT.Name, err)
	} else if ok {
		s := strings.TrimRight(string(v.Data), "\x00")
		if !utf8.ValidString(s) {
			fail(efi.SbatLevelRT.Name, errors.New("not UTF-8 text"))
		} else {
			out.SbatLevel = s
		}
	}
	dbs := []struct {
		id  efi.VarID
		dst **SignatureDB
	}{
		{efi.PK, &out.PK}, {efi.KEK, &out.KEK}, {efi.DB, &out.DB}, {efi.DBX, &out.DBX},
		{efi.MokListRT, &out.MOK}, {efi.MokListXRT, &out.MOKX},
	}
	for _, d := range dbs {
		db, err := readSignatureDB(src, d.id)
		if err != nil {
			fail(d.id.Name, err)
		}
		*d.dst = db
	}
}

// readVar reads an efivarfs variable; ok is false when it does not exist.
func readVar(src hostfs.Source, id efi.VarID) (v efi.Variable, ok bool, err error) {
	b, err := src.ReadFile(id.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	v, err = efi.ParseVariable(b)
	return v, err == nil, err
}

// readBoolVar reads a one-byte 0/1 variable (SecureBoot, SetupMode...):
// nil when absent, an error for any other size or value.
func readBoolVar(src hostfs.Source, id efi.VarID) (*bool, error) {
	v, ok, err := readVar(src, id)
	if err != nil || !ok {
		return nil, err
	}
	if len(v.Data) != 1 || v.Data[0] > 1 {
		return nil, fmt.Errorf("%w: value %x is not one byte 0 or 1", efi.ErrMalformed, v.Data)
	}
	b := v.Data[0] == 1
	return &b, nil
}

// readSignatureDB reads and summarizes a database variable; nil when it
// does not exist.
func readSignatureDB(src hostfs.Source, id efi.VarID) (*SignatureDB, error) {
	data, attrs, ok, err := readDBData(src, id)
	if err != nil || !ok {
		return nil, err
	}
	db, err := summarize(data)
	db.Attributes = attrs
	return db, err
}

// readDBData reads a database variable's data and attributes; ok is false
// when it does not exist. A MOK list is read from shim's configuration
// table first, which holds it whole even when it is too large for a
// runtime variable (its attributes are then "").
func readDBData(src hostfs.Source, id efi.VarID) (data []byte, attrs string, ok bool, err error) {
	if id.GUID == efi.ShimLock {
		b, err := src.ReadFile(path.Join(efi.MokVariablesDir, id.Name))
		switch {
		case err == nil:
			return b, "", true, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, "", false, err
		}
	}
	v, ok, err := readVar(src, id)
	if err != nil || !ok {
		return nil, "", false, err
	}
	return v.Data, v.Attributes.String(), true, nil
}

// summarize parses a signature database into its summary. On a parse
// error the summary covers the lists before the fault.
func summarize(data []byte) (*SignatureDB, error) {
	sum := sha256.Sum256(data)
	db := &SignatureDB{ByType: map[string]int{}, Certificates: []DBCertificate{}, SHA256: []string{},
		Digest: hex.EncodeToString(sum[:])}
	lists, err := efi.ParseSignatureLists(data)
	db.Lists = len(lists)
	for _, e := range efi.Entries(lists) {
		db.Entries++
		db.ByType[efi.TypeName(e.Type)]++
		switch e.Type {
		case efi.CertX509:
			ds := sha256.Sum256(e.Data)
			c := DBCertificate{SHA256: hex.EncodeToString(ds[:]), Owner: e.Owner.String()}
			if e.Certificate != nil {
				c.Subject, c.Issuer = e.Certificate.Subject.String(), e.Certificate.Issuer.String()
				c.Serial = hex.EncodeToString(e.Certificate.SerialNumber.Bytes())
				c.NotAfter = e.Certificate.NotAfter.UTC().Format(time.RFC3339)
			} else {
				c.Error = e.Err.Error()
			}
			db.Certificates = append(db.Certificates, c)
		case efi.CertSHA256:
			db.SHA256 = append(db.SHA256, hex.EncodeToString(e.Hash))
		}
	}
	sort.Strings(db.SHA256)
	if err != nil {
		db.Error = err.Error()
	}
	return db, err
}

// bootFiles lists the EFI binaries under /boot/efi (".efi" in any case,
// in directories less than maxBootDepth deep) and the kernels
// /boot/vmlinuz-*, sorted. Symbolic links are not followed. Absent
// directories are not an error; an unreadable or too deep directory is,
// after the rest of the walk, and so is a listing past maxBootFiles
// binaries, which stops it.
// espRoots are where an EFI system partition is found.
var espRoots = []string{"/boot/efi", "/efi", "/boot/EFI"}

func bootFiles(src hostfs.Source) ([]string, error) {
	var out []string
	var errs []error
	var walk func(dir string, depth int) bool
	walk = func(dir string, depth int) bool {
		es, err := src.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) || depth > 0 {
				errs = append(errs, err)
			}
			return true
		}
		for _, e := range es {
			p := path.Join(dir, e.Name())
			switch {
			case e.IsDir() && depth+1 >= maxBootDepth:
				errs = append(errs, fmt.Errorf("%s: deeper than %d directories", p, maxBootDepth))
			case e.IsDir():
				if !walk(p, depth+1) {
					return false
				}
			case e.Type().IsRegular() && strings.EqualFold(path.Ext(e.Name()), ".efi"):
				if len(out) == maxBootFiles {
					errs = append(errs, fmt.Errorf("more than %d EFI binaries", maxBootFiles))
					return false
				}
				out = append(out, p)
			}
		}
		return true
	}
	// The ESP is mounted at /boot/efi (Debian, Fedora), /efi (systemd's
	// choice) or /boot itself (systemd-boot), whose binaries are under
	// /boot/EFI.
	for _, root := range espRoots {
		walk(root, 0)
	}
	es, err := src.ReadDir("/boot")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range es {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), "vmlinuz-") {
			out = append(out, path.Join("/boot", e.Name()))
		}
	}
	sort.Strings(out)
	return out, errors.Join(errs...)
}

// judgeBootFile hashes a boot file and, with an engine, verifies it.
func (m *Measurer) judgeBootFile(ctx context.Context, src hostfs.Source, p string) BootFile {
	bf := BootFile{Path: p, Reasons: []reason.Code{}}
	if m.opts.Engine == nil {
		sum, err := digestOf(src, p)
		if err != nil {
			bf.Error = err.Error()
			return bf
		}
		bf.SHA256 = sum
		return bf
	}
	v, err := m.opts.Engine.VerifyFile(ctx, src.HostPath(p))
	if err != nil {
		bf.Error = err.Error()
		return bf
	}
	bf.Judged = true
	bf.SHA256 = v.SHA256
	if v.SHA256 != "" {
		src.Record(p, v.SHA256)
	}
	if v.Authentihash != nil {
		bf.AuthenticodeSHA256 = v.Authentihash.SHA256
	}
	bf.Signed = len(v.Signatures) > 0
	bf.Allowed = v.Allowed
	bf.Reasons = append(bf.Reasons, v.Reasons...)
	for _, s := range v.Signatures {
		if s.Valid && s.Signer != nil {
			bf.Signer = commonName(s.Signer.Subject)
			break
		}
	}
	return bf
}

// platformEngine is a code-integrity engine that judges boot files as
// the host's firmware and shim do: uefi mode, anchored in the X.509
// entries of db (what EDK2's DxeImageVerificationLib trusts) and MokListRT
// (what shim adds: the machine owner's keys and its vendor certificate),
// denied by dbx and MokListXRT (their hashes and certificates, as
// codepolicy.ImportSignatureDatabase reads them) and by the SBAT level
// shim runs with (SbatLevelRT), without an EKU requirement (the firmware
// has none).
func platformEngine(src hostfs.Source) (*integrity.Engine, error) {
	y := "ignore_expiry: true\nrequire_eku: [any]\n"
	// shim applies the SBAT level it runs with (SbatLevelRT mirrors it).
	if v, ok, err := readVar(src, efi.SbatLevelRT); err != nil {
		return nil, fmt.Errorf("%s: %w", efi.SbatLevelRT.Name, err)
	} else if ok {
		b, _ := json.Marshal(strings.TrimRight(string(v.Data), "\x00"))
		y += "sbat_level: " + string(b) + "\n"
	}
	p, err := codepolicy.Parse([]byte(y), "")
	if err != nil {
		return nil, err
	}
	var anchors []*x509.Certificate
	for _, id := range []efi.VarID{efi.DB, efi.MokListRT} {
		v, ok, err := readVar(src, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id.Name, err)
		}
		if !ok {
			continue
		}
		lists, err := efi.ParseSignatureLists(v.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id.Name, err)
		}
		for _, e := range efi.Entries(lists) {
			if e.Certificate != nil {
				anchors = append(anchors, e.Certificate)
			}
		}
	}
	p.AddAnchors(anchors...)
	for _, d := range []struct {
		id     efi.VarID
		source string
	}{{efi.DBX, "dbx"}, {efi.MokListXRT, "mokx"}} {
		v, ok, err := readVar(src, d.id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.id.Name, err)
		}
		if !ok || len(v.Data) == 0 {
			continue
		}
		if _, err := codepolicy.ImportSignatureDatabase(p, v.Data, d.source); err != nil {
			return nil, fmt.Errorf("%s: %w", d.id.Name, err)
		}
	}
	return integrity.New(integrity.Options{Policy: p, Mode: integrity.ModeUEFI}), nil
}

// judgePlatform judges a boot file with the platform engine.
func judgePlatform(ctx context.Context, e *integrity.Engine, src hostfs.Source, p string) *PlatformVerdict {
	v, err := e.VerifyFile(ctx, src.HostPath(p))
	pv := &PlatformVerdict{Reasons: []reason.Code{}}
	if err != nil {
		pv.Reasons = append(pv.Reasons, reason.Unreadable)
		return pv
	}
	pv.Allowed = v.Allowed
	pv.Reasons = append(pv.Reasons, v.Reasons...)
	for _, s := range v.Signatures {
		if s.Valid && s.Signer != nil {
			pv.Signer = commonName(s.Signer.Subject)
			break
		}
	}
	return pv
}

// denyByDBX applies the firmware's own revocation list: a boot file whose
// Authenticode SHA-256 is in dbx would be refused at boot, whatever its
// signature, so it is not allowed here either (reason blocklisted-hash).
func denyByDBX(sb *SecureBoot) {
	if sb.DBX == nil || len(sb.DBX.SHA256) == 0 {
		return
	}
	revoked := make(map[string]bool, len(sb.DBX.SHA256))
	for _, h := range sb.DBX.SHA256 {
		revoked[strings.ToLower(h)] = true
	}
	for i := range sb.BootFiles {
		bf := &sb.BootFiles[i]
		if bf.AuthenticodeSHA256 != "" && revoked[bf.AuthenticodeSHA256] {
			bf.Allowed = false
			if !slices.Contains(bf.Reasons, reason.BlocklistedHash) {
				bf.Reasons = append(bf.Reasons, reason.BlocklistedHash)
			}
			bf.InDBX = true
		}
	}
}

// commonName returns the first CN attribute of a distinguished name as
// crypto/x509's pkix.Name.String writes it (RFC 2253 order, special
// characters escaped with a backslash).
func commonName(dn string) string {
	var attr strings.Builder
	flush := func() (string, bool) {
		a := attr.String()
		attr.Reset()
		if v, ok := strings.CutPrefix(a, "CN="); ok {
			return v, true
		}
		return "", false
	}
	for i := 0; i < len(dn); i++ {
		switch c := dn[i]; {
		case c == '\\' && i+1 < len(dn):
			// Only values are escaped: the next byte is literal.
			i++
			attr.WriteByte(dn[i])
		case c == ',' || c == '+':
			if v, ok := flush(); ok {
				return v
			}
		default:
			attr.WriteByte(c)
		}
	}
	v, _ := flush()
	return v
}
