package codepolicy

import (
	"os"
	"testing"
)

func openShared(t *testing.T, rel string) *os.File {
	t.Helper()
	f, err := os.Open(sharedData(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestImportLOLDriversReal(t *testing.T) {
	p := Default()
	st, err := ImportLOLDrivers(p, openShared(t, "loldrivers/drivers.csv"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Counts of distinct, well-formed values in the 2026-08-12 snapshot.
	want := map[string]int{"deny.sha256": 2004, "deny.authentihash_sha256": 1742, "deny.authentihash_sha1": 1747}
	for k, n := range want {
		if st.Added[k] != n {
			t.Errorf("Added[%s] = %d, want %d", k, st.Added[k], n)
		}
	}
	if st.Read != 661 || st.Skipped != 0 || st.Duplicates != 963 || len(st.Added) != 3 {
		t.Errorf("stats: %+v", st)
	}
	// nvflash.sys, the first row (vulnerable driver).
	if rule, ok := p.DenyHash(mustHex("9368e51ec98e2ad20893a5fc21e6a8b20c5bee158d5c49ca58649cff84db9d68"), nil, nil); !ok || rule != "deny.sha256:9368e51ec98e2ad20893a5fc21e6a8b20c5bee158d5c49ca58649cff84db9d68" {
		t.Errorf("nvflash.sys file hash: %q %v", rule, ok)
	}
	if _, ok := p.DenyHash(nil, nil, mustHex("4ae065383a4ef5564a515d12adf18427f8d74cc15140edb95e5e2a51ca44fe42")); !ok {
		t.Error("nvflash.sys authentihash sha256 not denied")
	}
	if _, ok := p.DenyHash(nil, mustHex("0cb5fc2ee1ba75e5b8ed06f92d4edaf08b136333"), nil); !ok {
		t.Error("nvflash.sys authentihash sha1 not denied")
	}
	// A file SHA-1 is not imported, and an authentihash is not a file hash.
	if _, ok := p.DenyHash(mustHex("4ae065383a4ef5564a515d12adf18427f8d74cc15140edb95e5e2a51ca44fe42"), nil, nil); ok {
		t.Error("authentihash landed in deny.sha256")
	}
	// wantd_5.sys (malicious).
	if _, ok := p.DenyHash(mustHex("b9dad0131c51e2645e761b74a71ebad2bf175645fa9f42a4ab0e6921b83306e3"), nil, nil); !ok {
		t.Error("wantd_5.sys not denied")
	}
	if p.Deny.SignerTBSSHA256 != nil || len(p.Revocations) != 0 {
		t.Error("the CSV has no certificate data, yet signers or revocations were added")
	}

	// Twice: nothing new, everything a duplicate.
	st2, err := ImportLOLDrivers(p, openShared(t, "loldrivers/drivers.csv"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st2.TotalAdded() != 0 || st2.Duplicates != 963+2004+1742+1747 {
		t.Errorf("second import: %+v", st2)
	}
}

func TestImportLOLDriversCategories(t *testing.T) {
	p := Default()
	st, err := ImportLOLDrivers(p, openShared(t, "loldrivers/drivers.csv"), []string{"Malicious"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Added["deny.sha256"] != 306 || st.Added["deny.authentihash_sha256"] != 296 || st.Added["deny.authentihash_sha1"] != 296 {
		t.Errorf("malicious only: %+v", st.Added)
	}
	if st.Skipped != 546 || st.SkippedReasons["category-not-selected"] != 546 {
		t.Errorf("skipped: %+v", st.SkippedReasons)
	}
	if _, ok := p.DenyHash(mustHex("9368e51ec98e2ad20893a5fc21e6a8b20c5bee158d5c49ca58649cff84db9d68"), nil, nil); ok {
		t.Error("a vulnerable driver was imported with categories [malicious]")
	}
	st, err = ImportLOLDrivers(Default(), openShared(t, "loldrivers/drivers.csv"), []string{"vulnerable"})
	if err != nil || st.Skipped != 115 {
		t.Errorf("vulnerable alias: %+v %v", st, err)
	}
}

func TestImportWDACReal(t *testing.T) {
	p := Default()
	st, err := ImportWDAC(p, openShared(t, "loldrivers/wdac-DenyPolicy.xml"))
	if err != nil {
		t.Fatal(err)
	}
	// 2820 Deny + 2 Allow rules, 366 signers. Each hash rule is listed for
	// the kernel (131) and the user-mode (12) scenario: 767 image-hash rules
	// per algorithm, 384 distinct values. Every signer is a CertRoot TBS, a
	// CertPublisher and FileAttribRefs (560 in all) to FileAttribs of a
	// FileName and a MinimumFileVersion: 280 distinct signer_files rules.
	if st.Read != 3188 || st.Added["deny.authentihash_sha1"] != 384 || st.Added["deny.authentihash_sha256"] != 384 ||
		st.Added["deny.signer_files"] != 280 || len(st.Added) != 3 {
		t.Errorf("stats: %+v", st)
	}
	if st.Duplicates != 2*(767-384)+(560-280) {
		t.Errorf("duplicates = %d", st.Duplicates)
	}
	wantSkip := map[string]int{"page-hash": 1286, "allow-rule": 2}
	for k, n := range wantSkip {
		if st.SkippedReasons[k] != n {
			t.Errorf("SkippedReasons[%s] = %d, want %d", k, st.SkippedReasons[k], n)
		}
	}
	if st.Skipped != 1286+2 {
		t.Errorf("Skipped = %d", st.Skipped)
	}
	// fd80c3d38669b302de4b4b736941c0d1.bin: Hash Sha1, Hash Sha256, and two page hashes.
	if _, ok := p.DenyHash(nil, mustHex("097653d7068265aae9f00e37c904857d944a774c"), nil); !ok {
		t.Error("Hash Sha1 rule not in deny.authentihash_sha1")
	}
	if _, ok := p.DenyHash(nil, nil, mustHex("995284d05f947e2db58ece30b6d61653a2b94b2c337e5c75ca8315793e0b3955")); !ok {
		t.Error("Hash Sha256 rule not in deny.authentihash_sha256")
	}
	if _, ok := p.DenyHash(nil, nil, mustHex("d918c8cf51bc0dc221833eddb1c25bbf3766a5522d73a5288d3ac5ad73275f8e")); ok {
		t.Error("a page hash was imported")
	}
	if _, ok := p.DenyHash(nil, mustHex("afb11fc85e62b25839dbb283aca3cc9963ba3a7b"), nil); ok {
		t.Error("a SHA-1 page hash was imported")
	}
	// The signers are issuing CAs (Microsoft Windows Production PCA 2011,
	// DigiCert EV Code Signing CA, ...) narrowed by publisher and file
	// attributes; none may become a plain signer denial.
	if p.Deny.SignerTBSSHA1 != nil || p.Deny.SignerTBSSHA256 != nil || p.Deny.SignerTBSSHA384 != nil {
		t.Errorf("signer TBS imported: %v %v %v", p.Deny.SignerTBSSHA1, p.Deny.SignerTBSSHA256, p.Deny.SignerTBSSHA384)
	}
	// ID_SIGNER_F_1_1: DigiCert EV Code Signing CA (SHA2), ASUSTeK's EIO.sys from 1.9.7.0.
	want := SignerFile{TBS: "eec58131dc11cd7f512501b15fdbc6074c603b68ca91f7162d5a042054edb0cf", Publisher: "ASUSTEK COMPUTER INC.",
		FileName: "EIO.sys", MinVersion: "1.9.7.0", Comment: "wdac ID_SIGNER_F_1_1 ID_FILEATTRIB_F_1_1"}
	found := false
	for _, r := range p.Deny.SignerFiles {
		found = found || r == want
	}
	if !found {
		t.Errorf("signer_files lacks %+v", want)
	}

	st2, err := ImportWDAC(p, openShared(t, "loldrivers/wdac-DenyPolicy.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if st2.TotalAdded() != 0 || st2.Duplicates != 2*767+560 || st2.Skipped != st.Skipped {
		t.Errorf("second import: %+v", st2)
	}
}

func TestImportBothReal(t *testing.T) {
	p := Default()
	if _, err := ImportLOLDrivers(p, openShared(t, "loldrivers/drivers.csv"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := ImportWDAC(p, openShared(t, "loldrivers/wdac-DenyPolicy.xml"))
	if err != nil {
		t.Fatal(err)
	}
	// The WDAC policy is older than the CSV snapshot, but still holds 89
	// image hashes per algorithm that the CSV lacks.
	if st.Added["deny.authentihash_sha1"] != 89 || st.Added["deny.authentihash_sha256"] != 89 {
		t.Errorf("WDAC after CSV: %+v", st.Added)
	}
	// The merged policy survives Marshal and Parse.
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(b, "")
	if err != nil {
		t.Fatal(err)
	}
	if q.Digest() != p.Digest() || len(q.Deny.AuthentihashSHA1) != 1747+89 {
		t.Errorf("round trip: %d entries", len(q.Deny.AuthentihashSHA1))
	}
}
