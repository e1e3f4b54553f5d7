package codepolicy

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ImportWDAC merges a WDAC (App Control for Business) SiPolicy XML deny
// policy into p, as far as Vigil's policy can express it:
//
//   - FileRules <Deny Hash="..."> referenced from a SigningScenario: a
//     40-hex hash goes to deny.authentihash_sha1, a 64-hex hash to
//     deny.authentihash_sha256 (WDAC hash rules are Authenticode hashes).
//     Page hashes (FriendlyName containing "Page") are skipped: Vigil
//     blocks by image hash, and the image-hash rule of the same file is
//     imported.
//   - Signers referenced from a SigningScenario's DeniedSigners whose only
//     condition is <CertRoot Type="TBS">: the TBS hash goes to
//     deny.signer_tbs_sha1/sha256/sha384/sha512 by its length.
//   - Denied signers narrowed by FileAttribRef (a CertRoot TBS, at most
//     one CertPublisher, file attributes): one deny.signer_files rule per
//     FileAttrib, with its FileName, MinimumFileVersion and
//     MaximumFileVersion, as WDAC evaluates them.
//
// Everything else is counted as skipped, by reason, never dropped
// silently: Allow rules, rules that no scenario references, deny rules by
// file name or path, signers with a CertPublisher and no file attributes
// (a publisher rule), EKU, issuer or OEM conditions, well-known roots,
// and FileAttribs by other attributes (InternalName, ProductName...).
// Importing those as plain signer TBS denials would block every file the
// issuing CA ever signed.
//
// UTF-8 and UTF-16 files (with a byte order mark) are read. On error the
// policy is unchanged.
func ImportWDAC(p *Policy, r io.Reader) (ImportStats, error) {
	st := newStats("wdac")
	if p == nil || p.ix == nil {
		return st, errNotValidated
	}
	w, err := readSiPolicy(r)
	if err != nil {
		return st, fmt.Errorf("wdac: %w", err)
	}

	var pending []pendingDeny
	for _, rule := range w.fileRules {
		st.Read++
		switch {
		case rule.kind == "Allow":
			st.skip("allow-rule")
		case rule.kind != "Deny":
			st.skip("unsupported-file-rule")
		case !w.referencedRules[rule.id]:
			st.skip("rule-not-in-a-signing-scenario")
		case rule.hash == "":
			st.skip("deny-by-file-attributes")
		case strings.Contains(strings.ToLower(rule.friendlyName), "page"):
			st.skip("page-hash")
		case isHex(rule.hash, 20):
			pending = append(pending, pendingDeny{dkAuthSHA1, rule.hash})
		case isHex(rule.hash, 32):
			pending = append(pending, pendingDeny{dkAuthSHA256, rule.hash})
		default:
			st.skip("malformed-hash")
		}
	}
	var files []SignerFile
	for _, s := range w.signers {
		st.Read++
		switch {
		case !w.deniedSigners[s.id]:
			st.skip("signer-not-denied")
		case s.otherConditions > 0:
			st.skip("signer-with-extra-conditions")
		case len(s.certRoots) != 1:
			st.skip("signer-without-one-certroot")
		case !strings.EqualFold(s.certRoots[0].typ, "TBS"):
			st.skip("signer-wellknown-root")
		case len(s.publishers) > 1:
			st.skip("signer-with-several-publishers")
		case len(s.fileAttribRefs) == 0 && len(s.publishers) > 0:
			st.skip("signer-with-publisher")
		case len(s.fileAttribRefs) > 0:
			// A signer narrowed by file attributes: one signer_files
			// rule per FileAttrib it names (WDAC denies a file that
			// matches any of them).
			v := s.certRoots[0].value
			if _, ok := tbsKindBySize(len(v) / 2); !ok || !isHex(v, len(v)/2) || len(v)%2 != 0 {
				st.skip("malformed-hash")
				continue
			}
			pub := ""
			if len(s.publishers) == 1 {
				pub = s.publishers[0]
			}
			for _, ref := range s.fileAttribRefs {
				fa := w.fileAttribs[ref]
				switch {
				case fa == nil:
					st.skip("file-attrib-not-found")
				case len(fa.other) > 0:
					st.skip("file-attrib-unsupported")
				case fa.fileName == "" && fa.minVersion == "" && fa.maxVersion == "":
					st.skip("file-attrib-empty")
				default:
					files = append(files, SignerFile{TBS: v, Publisher: pub, FileName: fa.fileName,
						MinVersion: fa.minVersion, MaxVersion: fa.maxVersion, Comment: "wdac " + s.id + " " + ref})
				}
			}
		default:
			v := s.certRoots[0].value
			kind, ok := tbsKindBySize(len(v) / 2)
			if !ok || !isHex(v, len(v)/2) || len(v)%2 != 0 {
				st.skip("malformed-hash")
				continue
			}
			pending = append(pending, pendingDeny{kind, v})
		}
	}
	if err := p.mergeSignerFiles(&st, files); err != nil {
		return newStats("wdac"), fmt.Errorf("wdac: %w", err)
	}
	p.mergeDeny(&st, pending)
	return st, nil
}

type wdacFileRule struct {
	kind, id, friendlyName, hash string
}

type wdacCertRoot struct{ typ, value string }

type wdacSigner struct {
	id              string
	certRoots       []wdacCertRoot
	publishers      []string // CertPublisher values
	fileAttribRefs  []string // FileAttribRef RuleIDs
	otherConditions int
}

// wdacFileAttrib is a <FileAttrib>: the file name and version bounds a
// signer's FileAttribRef narrows it to; other names any attribute Vigil
// does not read (InternalName, FileDescription, ProductName, FilePath,
// PackageFamilyName...).
type wdacFileAttrib struct {
	fileName, minVersion, maxVersion string
	other                            []string
}

type siPolicy struct {
	fileRules       []wdacFileRule
	fileAttribs     map[string]*wdacFileAttrib
	signers         []*wdacSigner
	referencedRules map[string]bool
	deniedSigners   map[string]bool
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

// readSiPolicy streams the XML and keeps what the importer needs.
func readSiPolicy(r io.Reader) (*siPolicy, error) {
	rd, err := utf8Reader(r)
	if err != nil {
		return nil, err
	}
	dec := xml.NewDecoder(rd)
	dec.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(label) {
		case "utf-8", "utf8", "utf-16", "utf-16le", "utf-16be", "unicode", "us-ascii", "ascii":
			return in, nil // already transcoded to UTF-8 by utf8Reader
		}
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	w := &siPolicy{referencedRules: map[string]bool{}, deniedSigners: map[string]bool{}, fileAttribs: map[string]*wdacFileAttrib{}}
	var stack []string
	var signer *wdacSigner
	inScenario := 0
	sawRoot := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			} else {
				if name != "SiPolicy" {
					return nil, fmt.Errorf("root element is <%s>, not <SiPolicy>: not a WDAC policy", name)
				}
				sawRoot = true
			}
			stack = append(stack, name)
			switch {
			case name == "SigningScenario":
				inScenario++
			case parent == "FileRules" && len(stack) == 3 && name == "FileAttrib":
				fa := &wdacFileAttrib{}
				for _, a := range t.Attr {
					v := strings.TrimSpace(a.Value)
					switch a.Name.Local {
					case "ID", "FriendlyName":
					case "FileName":
						fa.fileName = v
					case "MinimumFileVersion":
						fa.minVersion = v
					case "MaximumFileVersion":
						fa.maxVersion = v
					default:
						fa.other = append(fa.other, a.Name.Local)
					}
				}
				w.fileAttribs[attr(t, "ID")] = fa
			case parent == "FileRules" && len(stack) == 3:
				switch name {
				case "Deny", "Allow", "FileRule":
					kind := name
					if name == "FileRule" && !strings.EqualFold(attr(t, "Type"), "Deny") {
						kind = "Other" // FileRule Type="Match", "Exclude", ...
					} else if name == "FileRule" {
						kind = "Deny"
					}
					w.fileRules = append(w.fileRules, wdacFileRule{
						kind: kind, id: attr(t, "ID"), friendlyName: attr(t, "FriendlyName"), hash: attr(t, "Hash"),
					})
				}
			case parent == "Signers" && name == "Signer" && len(stack) == 3:
				signer = &wdacSigner{id: attr(t, "ID")}
				w.signers = append(w.signers, signer)
			case parent == "Signer" && signer != nil && len(stack) == 4:
				switch name {
				case "CertRoot":
					signer.certRoots = append(signer.certRoots, wdacCertRoot{attr(t, "Type"), attr(t, "Value")})
				case "CertPublisher":
					signer.publishers = append(signer.publishers, attr(t, "Value"))
				case "FileAttribRef":
					signer.fileAttribRefs = append(signer.fileAttribRefs, attr(t, "RuleID"))
				default: // CertEKU, CertIssuer, CertOemID, ...
					signer.otherConditions++
				}
			case inScenario > 0 && name == "FileRuleRef":
				w.referencedRules[attr(t, "RuleID")] = true
			case inScenario > 0 && parent == "DeniedSigners" && name == "DeniedSigner":
				w.deniedSigners[attr(t, "SignerId")] = true
			}
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, errors.New("unbalanced XML")
			}
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case name == "SigningScenario":
				inScenario--
			case name == "Signer" && len(stack) == 2:
				signer = nil
			}
		}
	}
	if !sawRoot {
		return nil, errors.New("no <SiPolicy> element: not a WDAC policy")
	}
	if len(stack) != 0 {
		return nil, errors.New("truncated XML")
	}
	return w, nil
}

// utf8Reader strips a UTF-8 byte order mark, and transcodes UTF-16 (which
// PowerShell's WDAC cmdlets may write) to UTF-8.
func utf8Reader(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	bom, _ := br.Peek(3)
	switch {
	case len(bom) >= 3 && bom[0] == 0xef && bom[1] == 0xbb && bom[2] == 0xbf:
		br.Discard(3)
		return br, nil
	case len(bom) >= 2 && bom[0] == 0xff && bom[1] == 0xfe:
		br.Discard(2)
		return &utf16Reader{r: br, le: true}, nil
	case len(bom) >= 2 && bom[0] == 0xfe && bom[1] == 0xff:
		br.Discard(2)
		return &utf16Reader{r: br}, nil
	}
	return br, nil
}

// utf16Reader transcodes a UTF-16 stream to UTF-8.
type utf16Reader struct {
	r   *bufio.Reader
	le  bool
	out []byte
	err error
}

func (u *utf16Reader) unit() (uint16, error) {
	var b [2]byte
	if _, err := io.ReadFull(u.r, b[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, errors.New("UTF-16 input has an odd number of bytes")
		}
		return 0, err
	}
	if u.le {
		return uint16(b[0]) | uint16(b[1])<<8, nil
	}
	return uint16(b[1]) | uint16(b[0])<<8, nil
}

func (u *utf16Reader) Read(p []byte) (int, error) {
	for len(u.out) < len(p) && u.err == nil {
		c, err := u.unit()
		if err != nil {
			u.err = err
			break
		}
		r := rune(c)
		if utf16.IsSurrogate(r) {
			c2, err := u.unit()
			if err != nil {
				u.err = err
				break
			}
			r = utf16.DecodeRune(r, rune(c2))
		}
		u.out = utf8.AppendRune(u.out, r)
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	if n == 0 && u.err != nil {
		return 0, u.err
	}
	return n, nil
}
