package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/enclave/simtpm"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/ima"
	"github.com/vigil-attest/vigil/ima/imatest"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/measure"
	"github.com/vigil-attest/vigil/tpm"
)

// The tests have no TPM: a fakeTPM is a simulated one (enclave/simtpm),
// which builds TPMS_ATTEST, TPMT_SIGNATURE and TPMT_PUBLIC structures
// with go-tpm's types and signs them with software keys, exactly as a
// TPM does (the signature is over the hash of the TPMS_ATTEST bytes).

type akAlg int

const (
	akECDSA akAlg = iota
	akRSASSA
	akRSAPSS
)

func (a akAlg) String() string { return [...]string{"ecdsa-p256", "rsassa-2048", "rsapss-2048"}[a] }

var (
	keyMu    sync.Mutex
	keyCache = map[string]crypto.Signer{}
)

// testKey returns a key by name: the same name gives the same key, in
// every process (fuzz workers rebuild the seeds the coordinator built).
// It is derived from the name, never random.
func testKey(tb testing.TB, name string, rsaKey bool) crypto.Signer {
	tb.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[name]; ok {
		return k
	}
	seed := sha256.Sum256([]byte("vigil evidence test key\x00" + name))
	rng := mrand.New(mrand.NewChaCha8(seed))
	var k crypto.Signer
	var err error
	if rsaKey {
		k, err = deterministicRSA(rng, 2048)
	} else {
		d := make([]byte, 32)
		for {
			for i := range d {
				d[i] = byte(rng.Uint32())
			}
			if k, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err == nil {
				break
			}
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	keyCache[name] = k
	return k
}

// deterministicRSA makes an RSA key (e = 65537) from primes drawn from
// rng.
func deterministicRSA(rng *mrand.Rand, bits int) (*rsa.PrivateKey, error) {
	e := big.NewInt(65537)
	prime := func() *big.Int {
		b := make([]byte, bits/16)
		for {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			b[0] |= 0xc0 // the product has exactly bits bits
			b[len(b)-1] |= 1
			p := new(big.Int).SetBytes(b)
			pm1 := new(big.Int).Sub(p, big.NewInt(1))
			if p.ProbablyPrime(32) && new(big.Int).GCD(nil, nil, e, pm1).Cmp(big.NewInt(1)) == 0 {
				return p
			}
		}
	}
	for {
		p, q := prime(), prime()
		if p.Cmp(q) == 0 {
			continue
		}
		n := new(big.Int).Mul(p, q)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, big.NewInt(1)), new(big.Int).Sub(q, big.NewInt(1)))
		d := new(big.Int).ModInverse(e, phi)
		if d == nil || n.BitLen() != bits {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 65537}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		if err := k.Validate(); err != nil {
			return nil, err
		}
		return k, nil
	}
}

func schemeOf(a akAlg) tpm2.TPMAlgID {
	return map[akAlg]tpm2.TPMAlgID{akECDSA: tpm2.TPMAlgECDSA, akRSASSA: tpm2.TPMAlgRSASSA, akRSAPSS: tpm2.TPMAlgRSAPSS}[a]
}

// tpmPublic builds a TPMT_PUBLIC for key: an AK (restricted) or a report
// key (unrestricted), with the signing scheme.
func tpmPublic(key crypto.PublicKey, scheme tpm2.TPMAlgID, restricted bool, mod func(*tpm2.TPMTPublic)) []byte {
	p := tpm2.TPMTPublic{
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
			Restricted: restricted, SignEncrypt: true,
		},
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		p.Type = tpm2.TPMAlgECC
		p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		})
		raw, err := k.Bytes()
		if err != nil {
			panic(err)
		}
		p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}})
	case *rsa.PublicKey:
		p.Type = tpm2.TPMAlgRSA
		var details tpm2.TPMUAsymScheme
		if scheme == tpm2.TPMAlgRSAPSS {
			details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256})
		} else {
			details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})
		}
		p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: scheme, Details: details},
			KeyBits:   tpm2.TPMKeyBits(k.N.BitLen()),
		})
		p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	}
	if mod != nil {
		mod(&p)
	}
	return tpm2.Marshal(p)
}

// fakeTPM is a simulated TPM (enclave/simtpm, the one software TPM)
// with deterministic keys. The adversarial tests swap parts of it, so the
// report key (rk, rkPub) and the PCR values (pcrs) live here: SignReport
// signs with rk, Certify certifies rkPub (as a TPM certifies any loaded
// object), and Quote quotes pcrs (absent PCRs are zero). The AK, the EK,
// the TPMS_ATTEST and TPMT_SIGNATURE encodings are the simulator's.
type fakeTPM struct {
	sim   *simtpm.TPM
	alg   akAlg
	ak    crypto.Signer
	akPub []byte
	rk    *ecdsa.PrivateKey
	rkPub []byte
	pcrs  map[string]map[int][]byte
}

var akTypes = map[akAlg]tpm.KeyType{akECDSA: tpm.ECDSAP256, akRSASSA: tpm.RSASSA2048, akRSAPSS: tpm.RSAPSS2048}

// newFakeTPM returns a fake TPM whose keys are named by id (the same id,
// the same keys).
func newFakeTPM(tb testing.TB, id string, alg akAlg) *fakeTPM {
	tb.Helper()
	f := &fakeTPM{alg: alg, pcrs: map[string]map[int][]byte{}}
	f.ak = testKey(tb, id+"/ak/"+alg.String(), alg != akECDSA)
	f.rk = testKey(tb, id+"/rk", false).(*ecdsa.PrivateKey)
	sim, err := simtpm.New(simtpm.Options{
		AK:    akTypes[alg],
		Keys:  simtpm.Keys{EK: testKey(tb, id+"/ek", false), AK: f.ak, Report: f.rk},
		Banks: []string{"sha1", "sha256", "sha384"},
		// A clock that has run for a day, after a few reboots.
		ClockBase: 123456789, StoppedClock: true, ResetCount: 3, RestartCount: 1, FirmwareVersion: 0x2000100000000,
	})
	if err != nil {
		tb.Fatal(err)
	}
	f.sim = sim
	f.akPub, _ = sim.AKPublic()
	f.rkPub = tpmPublic(&f.rk.PublicKey, tpm2.TPMAlgECDSA, false, nil)
	return f
}

func (f *fakeTPM) Kind() enclave.Kind             { return enclave.TPM }
func (f *fakeTPM) ReportPublic() crypto.PublicKey { return &f.rk.PublicKey }
func (f *fakeTPM) SignReport(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, f.rk, d)
}
func (f *fakeTPM) Close() error                         { return nil }
func (f *fakeTPM) AKPublic() ([]byte, crypto.PublicKey) { return f.akPub, f.ak.Public() }
func (f *fakeTPM) ReportKeyPublic() []byte              { return f.rkPub }
func (f *fakeTPM) EK(ctx context.Context) ([]byte, crypto.PublicKey, []byte, error) {
	return f.sim.EK(ctx)
}

func (f *fakeTPM) Certify(ctx context.Context, qualifying []byte) (*enclave.Certification, error) {
	return f.sim.CertifyPublic(ctx, f.rkPub, qualifying)
}

var bankAlgs = map[string]tpm2.TPMAlgID{"sha1": tpm2.TPMAlgSHA1, "sha256": tpm2.TPMAlgSHA256, "sha384": tpm2.TPMAlgSHA384}

func (f *fakeTPM) pcr(bank string, i int) []byte {
	if v, ok := f.pcrs[bank][i]; ok {
		return v
	}
	return make([]byte, eventlog.Alg(bankAlgs[bank]).Size())
}

// Quote sets the simulator's PCRs to pcrs, then quotes.
func (f *fakeTPM) Quote(ctx context.Context, banks map[string][]int, qualifying []byte) (*enclave.Quote, error) {
	for b := range bankAlgs {
		for i := range tpm.MaxPCR + 1 {
			if err := f.sim.SetPCR(b, i, f.pcr(b, i)); err != nil {
				return nil, err
			}
		}
	}
	return f.sim.Quote(ctx, banks, qualifying)
}

// softEnclave is a software enclave with a cached key.
type softEnclave struct{ k *ecdsa.PrivateKey }

func (s softEnclave) Kind() enclave.Kind             { return enclave.Software }
func (s softEnclave) ReportPublic() crypto.PublicKey { return &s.k.PublicKey }
func (s softEnclave) SignReport(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s softEnclave) Close() error { return nil }

func newSoft(tb testing.TB, id string) softEnclave {
	return softEnclave{testKey(tb, id+"/soft", false).(*ecdsa.PrivateKey)}
}

// testReport is a small canonical runtime report of host.
func testReport(tb testing.TB, host string) []byte {
	tb.Helper()
	r := measure.NewReport()
	r.Inputs["/proc/sys/kernel/osrelease"] = "00ff"
	r.Kernel.Status = measure.StatusOK
	r.Kernel.Release = "6.1.0-56-amd64"
	r.Kernel.Hostname = host
	r.IMA.Status = measure.StatusUnavailable
	b, err := r.Canonical()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

const eventLogName = "keylime_binary_bios_measurements"

func readEventLog(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(artifacts.SharedData(tb, "eventlogs/"+name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// setLogPCRs makes the fake TPM's PCRs those a boot that wrote log and
// an IMA list ima (of which the first imaQuoted bytes were measured when
// quoting) left.
func (f *fakeTPM) setLogPCRs(tb testing.TB, log, list []byte, imaQuoted int) {
	tb.Helper()
	f.pcrs = map[string]map[int][]byte{}
	if log != nil {
		l, err := eventlog.Parse(log)
		if err != nil {
			tb.Fatal(err)
		}
		for alg, m := range l.Replay() {
			f.pcrs[alg.String()] = map[int][]byte{}
			for i, v := range m {
				f.pcrs[alg.String()][int(i)] = v
			}
		}
	}
	if list != nil {
		st, err := ima.Parse(bytes.NewReader(list[:imaQuoted]), ima.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		if f.pcrs["sha256"] == nil {
			f.pcrs["sha256"] = map[int][]byte{}
		}
		f.pcrs["sha256"][10] = st.PCR(crypto.SHA256, 10)
	}
}

// fixture is valid evidence and the options that verify it.
type fixture struct {
	tpm   *fakeTPM
	nonce []byte
	ev    *Evidence
	opts  Options
	log   []byte
	list  []byte
}

var testNonce = []byte("0123456789abcdef")

type fixtureOptions struct {
	id       string
	alg      akAlg
	logs     bool
	imaN     int // entries in the IMA list (default 50)
	report   []byte
	software bool
}

func newFixture(tb testing.TB, fo fixtureOptions) *fixture {
	tb.Helper()
	if fo.id == "" {
		fo.id = "agent-a"
	}
	if fo.report == nil {
		fo.report = testReport(tb, fo.id)
	}
	if fo.imaN == 0 {
		fo.imaN = 50
	}
	fx := &fixture{nonce: testNonce, opts: Options{Nonce: testNonce}}
	var e enclave.Enclave
	if fo.software {
		e = newSoft(tb, fo.id)
	} else {
		fx.tpm = newFakeTPM(tb, fo.id, fo.alg)
		fx.opts.AK = fx.tpm.ak.Public()
		e = fx.tpm
	}
	bo := BuildOptions{Nonce: fx.nonce, Report: fo.report}
	if fo.logs {
		fx.log = readEventLog(tb, eventLogName)
		fx.list = imatest.List(fo.imaN)
		bo.EventLog, bo.IMALog = fx.log, fx.list
		if fx.tpm != nil {
			fx.tpm.setLogPCRs(tb, fx.log, fx.list, len(fx.list))
		}
	}
	ev, err := Build(context.Background(), e, bo)
	if err != nil {
		tb.Fatal(err)
	}
	fx.ev = ev
	return fx
}

// clone deep-copies evidence through its JSON form.
func clone(tb testing.TB, ev *Evidence) *Evidence {
	tb.Helper()
	b, err := ev.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := Decode(b)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func pemOf(tb testing.TB, k crypto.PublicKey) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	if i < 0 {
		i += len(c)
	}
	c[i] ^= 0x01
	return c
}
