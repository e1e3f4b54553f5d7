package eventlogtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Identity is a certificate and its private key.
type Identity struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

// Certs are the Secure Boot certificates of Debian: a Microsoft-like
// hierarchy (an OEM platform key, a KEK CA, the Windows PCA and the UEFI
// CA of db) and the vendor certificate built into shim (Debian's Secure
// Boot CA). All are self-signed RSA-2048 certificates with fixed serial
// numbers and validity (2011 to 2099) and keys made of fixed primes, so
// they are the same bytes in every run; tests can sign with the keys.
type Certs struct {
	PK, KEK, WindowsPCA, UEFICA, Vendor Identity
}

// DebianCerts returns the certificates Debian uses (made once).
func DebianCerts() *Certs { return certsOnce() }

var certsOnce = sync.OnceValue(newCerts)

func newCerts() *Certs {
	return &Certs{
		PK:         identity("pk", 1, "Vigil Test Platform Key", "Vigil Test OEM"),
		KEK:        identity("kek", 2, "Vigil Test KEK CA 2011", "Vigil Test Microsoft-like Corporation"),
		WindowsPCA: identity("pca", 3, "Vigil Test Windows Production PCA 2011", "Vigil Test Microsoft-like Corporation"),
		UEFICA:     identity("uefica", 4, "Vigil Test UEFI CA 2011", "Vigil Test Microsoft-like Corporation"),
		Vendor:     identity("vendor", 5, "Vigil Test Debian Secure Boot CA", "Vigil Test Debian"),
	}
}

// primes holds, per key, its two 1024-bit primes p and q in hex: drawn
// once from ChaCha8 seeded with SHA-256("vigil eventlogtest " + name)
// (odd, top two bits set, gcd(65537, p-1) = 1) and pasted here, since Go
// ignores the randomness source of rsa.GenerateKey.
var primes = map[string]string{
	"pk": "" +
		"effdb928ca1e1ce0756d3b86c3270f8c60ecd02aaa025ed43d460cff247e0ccc4f39f3a92c091ee1c8cb6dc71b6219bcd3666a9cc6fd3da3947586902c41c6f8" +
		"008dee0f70912309afc56a68f839cb28ef5b917c6b762856e29a3b379fd8c661fb68c9a827291ff927adb28c012b6b72d20383dc6d96ebff5c4b2ab40caf51d3" +
		"d584671212b509dbaf25a29e04e15fa3e2e3443ea2aa8bd94d0be1c12b61a83acde8aa1dac1fc2002b7ba530d013455343ff8aed921ef35268c845f56544e3bf" +
		"4c91fb13d0c4fd3aec4fe74f3cdf5de0feb03c4c9d30437bae532171f76acf7e069d9ed202695c0173657ec7884ca84adc9f5a0b2010c053ce3fae063a2bda4b",
	"kek": "" +
		"f6a61605205ac3cbd9423173ae6afedeb0c200dd4e71163d64e5f038b3f13fcfe1942608e9ed81aad3840b82e6d82793883cbb62ffb3084c214d898fa8afccc0" +
		"b8b73b6924c688e479cf0128ece3638fa1c4339a6b6f8bd46ab87cc61d43bb6c8e46e6c5c13dff966be4ae84b45aa6ce236c9d79b3573bdc6c818dcb877a7c39" +
		"c2b8788a0f02d86dd91022525291fbdcfcd3e0be51b5ab6d546f976a5de6ec04fb4f1812faff1156353c00f4860df3a29c9abae2233fc2c07aad5b1afc559af2" +
		"dfa725cfebc613be9936022ad66b2a5262555121a94df9ac15038be156978a644e2dba4862017a977513b3d302c2750831cf95b8131e24d3d554c1513999abfb",
	"pca": "" +
		"e470d5eb5b37d1f7736d965f3e93b7bbedc4cf7a44b3c111515eaf372059c53e5b430b1203dbbdc37ddb3d937e48f6cd03d4b12bd7190c4c2ed3853f35ec7b33" +
		"7e5d77779341ff7178a6909c2f4ec16cf635c25a43bae5cd7a7a1f9aa2da6ed5d923ae0d189698b5f2177f44684fd1a244024525b198bf4092f5c0334de681f1" +
		"f1801e24fee219ffc90981f11ef67e83c6d5710ffef1dd277efb94a66a442961f65a6d110edae60c652c35b0fc50bcba60302e3cad70ac307cfc0b6e65113595" +
		"840be22e7534eb1ba4aa9e454e519dd6bd17d41f440a5dffeada715fc3042f33baa43b5cc1a552535ee8cc73a63e96d765e8e5ea9f13fdfed43c2c79e358cb49",
	"uefica": "" +
		"d28c1919a8771f00b488bd8a498107ebd95e8dad6a6230501988cd8ca05a4dd27879e92a80649cace0d7263f9420e9a410fe7d6f9e4734884c303f5c81ff6a54" +
		"9480e9aad84901495c359c0fbdefb88464fc8d2cc4faa474b1ebd5db0559bc263463a272aa572b687d8f49dfa777b0fe776a6319de82554260f6059d5e5df567" +
		"cd4dbe4275e43dcc7e51c27e4c11ca6269211078fcfd79c44ed014bc56a867eed2c06c2b67e1393c816db4132370d1c81b0e86d3741cc4bf8fee7e5c2fb9da56" +
		"d4f0d81e78d0700f4c758c152df5487631e51884b4ad75cb6d831f6e07a1d18ef5262e9c115d635e902cf97caf85c93caa9e412aa54366e3617b9ae83acf6049",
	"vendor": "" +
		"ed723ecadf863a0127eca4f6cd783e28f72897754b2cfec8d388efbe3a994491014f202d2005c5ec95d9fd30c43417b409a8933cf1eeb77b351cffa132fd7c0c" +
		"b3ca861f93465ade28369e5b98c9fb50199b51608e0060fb3c30a8cb5c29d13a225757d40730b593e540f0fedee5667c557ccc8c3b5406543d4f69eb1d6cdc53" +
		"faf69e74e48729af1fc95689c599ea60a24682c86489510d857f7f61e0df4288182bc6b78b270f42fe9fe1731d2968643906c61d1a471adff3f19f32a9e029aa" +
		"2a95e449d7baea6c947f2d9ada9e02615e8db8dced62ab374fefae9f8f560bf26e4e3b13cba49226fa2cbe0a66b43d9398679562045f8649c55edaf995d5fe37",
}

func identity(name string, serial int64, cn, org string) Identity {
	raw, err := hex.DecodeString(primes[name])
	if err != nil || len(raw) != 256 {
		panic(fmt.Sprintf("eventlogtest: primes of %s: %v", name, err))
	}
	p, q := new(big.Int).SetBytes(raw[:128]), new(big.Int).SetBytes(raw[128:])
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	key := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537},
		D:         new(big.Int).ModInverse(big.NewInt(65537), phi),
		Primes:    []*big.Int{p, q},
	}
	key.Precompute()
	if err := key.Validate(); err != nil {
		panic(fmt.Sprintf("eventlogtest: key %s: %v", name, err))
	}
	subject := pkix.Name{CommonName: cn, Organization: []string{org}}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               subject,
		Issuer:                subject,
		NotBefore:             time.Date(2011, 6, 27, 21, 22, 45, 0, time.UTC),
		NotAfter:              time.Date(2099, 6, 27, 21, 32, 45, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	// PKCS #1 v1.5 signatures are deterministic: rand is not read.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(fmt.Sprintf("eventlogtest: certificate %s: %v", name, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("eventlogtest: certificate %s: %v", name, err))
	}
	return Identity{Cert: cert, Key: key}
}
