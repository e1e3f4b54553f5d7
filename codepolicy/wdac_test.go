package codepolicy

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf16"
)

const (
	tbs1   = "589A7D4DF869395601BA7538A65AFAE8C4616385"
	tbs256 = "EEC58131DC11CD7F512501B15FDBC6074C603B68CA91F7162D5A042054EDB0CF"
	tbs384 = "20ADC5B59CB532E215F01BA09A9C745898C206555613512FEA7C295CCFD17CED4FE2C5BC3274CA8A270FC68799B8343C"
)

// A small SiPolicy with one rule of every shape the importer sorts.
var wdacSample = `<?xml version="1.0" encoding="utf-8"?>
<SiPolicy xmlns="urn:schemas-microsoft-com:sipolicy" PolicyType="Base Policy">
  <FileRules>
    <Allow ID="ID_ALLOW_ALL" FriendlyName="" FileName="*" />
    <Deny ID="ID_DENY_1" FriendlyName="a.sys Hash Sha1" Hash="097653D7068265AAE9F00E37C904857D944A774C" />
    <Deny ID="ID_DENY_2" FriendlyName="a.sys Hash Sha256" Hash="995284D05F947E2DB58ECE30B6D61653A2B94B2C337E5C75CA8315793E0B3955" />
    <Deny ID="ID_DENY_3" FriendlyName="a.sys Hash Page Sha256" Hash="D918C8CF51BC0DC221833EDDB1C25BBF3766A5522D73A5288D3AC5AD73275F8E" />
    <Deny ID="ID_DENY_4" FriendlyName="unreferenced" Hash="1111111111111111111111111111111111111111111111111111111111111111" />
    <Deny ID="ID_DENY_5" FriendlyName="by name" FileName="evil.sys" MinimumFileVersion="1.0.0.0" />
    <Deny ID="ID_DENY_6" FriendlyName="odd length" Hash="ABC" />
    <FileRule ID="ID_MATCH_1" Type="Match" FileName="x.sys" />
    <FileAttrib ID="ID_FILEATTRIB_1" FileName="EIO.sys" MinimumFileVersion="1.9.7.0" />
    <FileAttrib ID="ID_FILEATTRIB_2" ProductName="Evil Suite" />
  </FileRules>
  <Signers>
    <Signer ID="ID_SIGNER_TBS1" Name="CA 1"><CertRoot Type="TBS" Value="` + tbs1 + `" /></Signer>
    <Signer ID="ID_SIGNER_TBS256" Name="CA 256"><CertRoot Type="TBS" Value="` + tbs256 + `" /></Signer>
    <Signer ID="ID_SIGNER_TBS384" Name="CA 384"><CertRoot Type="TBS" Value="` + tbs384 + `" /></Signer>
    <Signer ID="ID_SIGNER_PUB" Name="Publisher"><CertRoot Type="TBS" Value="` + tbs256 + `" /><CertPublisher Value="ASUSTeK Computer Inc." /></Signer>
    <Signer ID="ID_SIGNER_FILE" Name="File"><CertRoot Type="TBS" Value="` + tbs256 + `" /><CertPublisher Value="X" /><FileAttribRef RuleID="ID_FILEATTRIB_1" /><FileAttribRef RuleID="ID_FILEATTRIB_2" /><FileAttribRef RuleID="ID_FILEATTRIB_MISSING" /></Signer>
    <Signer ID="ID_SIGNER_EKU" Name="EKU"><CertRoot Type="TBS" Value="` + tbs256 + `" /><CertEKU ID="ID_EKU_WHQL" /></Signer>
    <Signer ID="ID_SIGNER_WK" Name="Well known"><CertRoot Type="Wellknown" Value="06" /></Signer>
    <Signer ID="ID_SIGNER_ALLOWED" Name="Allowed only"><CertRoot Type="TBS" Value="` + strings.Repeat("2", 64) + `" /></Signer>
    <Signer ID="ID_SIGNER_BAD" Name="Bad"><CertRoot Type="TBS" Value="12345" /></Signer>
  </Signers>
  <SigningScenarios>
    <SigningScenario Value="131" ID="ID_SIGNINGSCENARIO_DRIVERS_1" FriendlyName="drivers">
      <ProductSigners>
        <AllowedSigners><AllowedSigner SignerId="ID_SIGNER_ALLOWED" /></AllowedSigners>
        <DeniedSigners>
          <DeniedSigner SignerId="ID_SIGNER_TBS1" />
          <DeniedSigner SignerId="ID_SIGNER_TBS256" />
          <DeniedSigner SignerId="ID_SIGNER_TBS384" />
          <DeniedSigner SignerId="ID_SIGNER_PUB" />
          <DeniedSigner SignerId="ID_SIGNER_FILE" />
          <DeniedSigner SignerId="ID_SIGNER_EKU" />
          <DeniedSigner SignerId="ID_SIGNER_WK" />
          <DeniedSigner SignerId="ID_SIGNER_BAD" />
        </DeniedSigners>
        <FileRulesRef>
          <FileRuleRef RuleID="ID_ALLOW_ALL" />
          <FileRuleRef RuleID="ID_DENY_1" />
          <FileRuleRef RuleID="ID_DENY_2" />
          <FileRuleRef RuleID="ID_DENY_3" />
          <FileRuleRef RuleID="ID_DENY_5" />
          <FileRuleRef RuleID="ID_DENY_6" />
          <FileRuleRef RuleID="ID_MATCH_1" />
        </FileRulesRef>
      </ProductSigners>
    </SigningScenario>
  </SigningScenarios>
  <CiSigners><CiSigner SignerId="ID_SIGNER_TBS1" /></CiSigners>
</SiPolicy>
`

func checkWDACSample(t *testing.T, p *Policy, st ImportStats) {
	t.Helper()
	if st.Read != 8+9 {
		t.Errorf("Read = %d", st.Read)
	}
	wantAdded := map[string]int{"deny.authentihash_sha1": 1, "deny.authentihash_sha256": 1,
		"deny.signer_tbs_sha1": 1, "deny.signer_tbs_sha256": 1, "deny.signer_tbs_sha384": 1, "deny.signer_files": 1}
	for k, n := range wantAdded {
		if st.Added[k] != n {
			t.Errorf("Added[%s] = %d, want %d", k, st.Added[k], n)
		}
	}
	if len(st.Added) != len(wantAdded) {
		t.Errorf("Added = %v", st.Added)
	}
	wantSkip := map[string]int{
		"allow-rule": 1, "page-hash": 1, "rule-not-in-a-signing-scenario": 1, "deny-by-file-attributes": 1,
		"malformed-hash": 2, "unsupported-file-rule": 1, "signer-with-publisher": 1, "file-attrib-unsupported": 1, "file-attrib-not-found": 1,
		"signer-with-extra-conditions": 1, "signer-wellknown-root": 1, "signer-not-denied": 1,
	}
	for k, n := range wantSkip {
		if st.SkippedReasons[k] != n {
			t.Errorf("SkippedReasons[%s] = %d, want %d", k, st.SkippedReasons[k], n)
		}
	}
	if len(st.SkippedReasons) != len(wantSkip) || st.Skipped != 13 {
		t.Errorf("SkippedReasons = %v (%d)", st.SkippedReasons, st.Skipped)
	}
	if strings.Join(p.Deny.SignerTBSSHA256, ",") != strings.ToLower(tbs256) || strings.Join(p.Deny.SignerTBSSHA384, ",") != strings.ToLower(tbs384) {
		t.Errorf("deny lists: %+v", p.Deny)
	}
	want := SignerFile{TBS: strings.ToLower(tbs256), Publisher: "X", FileName: "EIO.sys", MinVersion: "1.9.7.0", Comment: "wdac ID_SIGNER_FILE ID_FILEATTRIB_1"}
	if len(p.Deny.SignerFiles) != 1 || p.Deny.SignerFiles[0] != want {
		t.Errorf("signer_files %+v, want %+v", p.Deny.SignerFiles, want)
	}
}

func TestImportWDACShapes(t *testing.T) {
	p := Default()
	st, err := ImportWDAC(p, strings.NewReader(wdacSample))
	if err != nil {
		t.Fatal(err)
	}
	checkWDACSample(t, p, st)
}

func utf16Bytes(s string, le bool) []byte {
	var b bytes.Buffer
	order := binary.ByteOrder(binary.BigEndian)
	bom := []byte{0xfe, 0xff}
	if le {
		order, bom = binary.LittleEndian, []byte{0xff, 0xfe}
	}
	b.Write(bom)
	for _, u := range utf16.Encode([]rune(s)) {
		binary.Write(&b, order, u)
	}
	return b.Bytes()
}

func TestImportWDACEncodings(t *testing.T) {
	doc := strings.Replace(wdacSample, `encoding="utf-8"`, `encoding="utf-16"`, 1)
	// A non-ASCII friendly name exercises the transcoder.
	doc = strings.Replace(doc, `Name="CA 1"`, `Name="Zertifizierungsstelle für Treiber 😀"`, 1)
	for name, in := range map[string][]byte{
		"utf-16le":  utf16Bytes(doc, true),
		"utf-16be":  utf16Bytes(doc, false),
		"utf-8 bom": append([]byte{0xef, 0xbb, 0xbf}, wdacSample...),
	} {
		p := Default()
		st, err := ImportWDAC(p, bytes.NewReader(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkWDACSample(t, p, st)
	}
}

func TestImportWDACErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"<NotAPolicy/>",
		"<SiPolicy><FileRules><Deny ID='x' Hash='" + strings.Repeat("a", 64) + "'/>", // truncated
		"<?xml version='1.0' encoding='windows-1252'?><SiPolicy/>",                   // unsupported charset
		"{\"json\": true}",
	} {
		p := Default()
		if _, err := ImportWDAC(p, strings.NewReader(in)); err == nil {
			t.Errorf("ImportWDAC(%q): no error", in)
		}
		if p.Deny.AuthentihashSHA256 != nil {
			t.Errorf("ImportWDAC(%q) changed the policy", in)
		}
	}
	if _, err := ImportWDAC(&Policy{}, strings.NewReader(wdacSample)); err == nil {
		t.Error("import into an unvalidated policy")
	}
}
