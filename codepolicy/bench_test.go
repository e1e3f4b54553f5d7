package codepolicy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/vigil-attest/vigil/internal/testpki"
)

// benchPolicy is every LOLDrivers and WDAC entry plus 100,000 synthetic
// revocations and 100,000 synthetic file hashes.
func benchPolicy(b *testing.B) *Policy {
	b.Helper()
	p := Default()
	for _, imp := range []func(*os.File) error{
		func(f *os.File) error { _, err := ImportLOLDrivers(p, f, nil); return err },
		func(f *os.File) error { _, err := ImportWDAC(p, f); return err },
	} {
		name := "loldrivers/drivers.csv"
		if len(p.Deny.SHA256) > 0 {
			name = "loldrivers/wdac-DenyPolicy.xml"
		}
		f, err := os.Open(sharedData(b, name))
		if err != nil {
			b.Fatal(err)
		}
		if err := imp(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var revs []Revocation
	var hashes []pendingDeny
	for i := 0; i < 100000; i++ {
		revs = append(revs, Revocation{Issuer: fmt.Sprintf("CN=Bench CA %d, O=Vigil Test", i%50), Serial: fmt.Sprintf("%x", 1000000+i), RevokedAt: &at})
		var seed [8]byte
		binary.BigEndian.PutUint64(seed[:], uint64(i))
		h := sha256.Sum256(seed[:])
		hashes = append(hashes, pendingDeny{dkSHA256, fmt.Sprintf("%x", h)})
	}
	st := newStats("bench")
	p.mergeRevocations(&st, revs)
	p.mergeDeny(&st, hashes)
	return p
}

func BenchmarkLookups(b *testing.B) {
	p := benchPolicy(b)
	hit := mustHex("9368e51ec98e2ad20893a5fc21e6a8b20c5bee158d5c49ca58649cff84db9d68")
	miss := make([]byte, 32)
	a1 := mustHex("0cb5fc2ee1ba75e5b8ed06f92d4edaf08b136333")
	root := testpki.NewRoot(testpki.Options{Key: testpki.ECDSAP256, CommonName: "Bench CA 7"})
	revoked := root.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(1000007)})
	clean := root.NewLeaf(testpki.Options{Key: testpki.ECDSAP256, Serial: big.NewInt(7)})
	b.Logf("policy: %d file hashes, %d authentihashes, %d revocations", len(p.Deny.SHA256),
		len(p.Deny.AuthentihashSHA1)+len(p.Deny.AuthentihashSHA256), len(p.Revocations))

	b.Run("DenyHash/hit", func(b *testing.B) {
		for b.Loop() {
			if _, ok := p.DenyHash(hit, nil, nil); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("DenyHash/miss-all-three", func(b *testing.B) {
		for b.Loop() {
			if _, ok := p.DenyHash(miss, a1[:0:0], miss); ok {
				b.Fatal("hit")
			}
		}
	})
	b.Run("Revocation/issuer-serial-hit", func(b *testing.B) {
		if r := p.Revocation(revoked.Cert); r == nil {
			b.Fatal("not revoked")
		}
		for b.Loop() {
			p.Revocation(revoked.Cert)
		}
	})
	b.Run("Revocation/miss", func(b *testing.B) {
		for b.Loop() {
			if p.Revocation(clean.Cert) != nil {
				b.Fatal("revoked")
			}
		}
	})
	b.Run("DenySigner/miss", func(b *testing.B) {
		for b.Loop() {
			p.DenySigner(clean.Cert)
		}
	})
}

// BenchmarkParseLarge measures loading a 200,000-entry policy.
func BenchmarkParseLarge(b *testing.B) {
	data, err := benchPolicy(b).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data, ""); err != nil {
			b.Fatal(err)
		}
	}
}
