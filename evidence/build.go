package evidence

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/vigil-attest/vigil/enclave"
)

// DefaultPCRs is the quoted selection when none is configured: the
// firmware and boot PCRs 0–9 and IMA's PCR 10, SHA-256 bank.
var DefaultPCRs = map[string][]int{"sha256": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14}}

// BuildOptions is what the agent puts into evidence.
type BuildOptions struct {
	// Nonce is the verifier's challenge (at least 8 bytes).
	Nonce []byte
	// Report is the canonical runtime report.
	Report []byte
	// PCRs is the quote's selection; nil means DefaultPCRs.
	PCRs map[string][]int
	// EventLog is the firmware event log, whole; nil leaves it out.
	EventLog []byte
	// IMALog is the binary IMA list from IMAOffset; nil leaves it out.
	IMALog    []byte
	IMAOffset int64
	// ReadIMALog, when set, reads the IMA list from IMAOffset instead of
	// IMALog, and is called after the quote: the list only grows, so a
	// list read after the quote holds a prefix that replays to the quoted
	// PCR 10, while one read before may lack files measured in between.
	ReadIMALog func() ([]byte, error)
	// WithEK adds the EK and its certificate (enrollment).
	WithEK bool
}

// ErrNonce is returned for a nonce too short to be a challenge.
var ErrNonce = errors.New("nonce shorter than 8 bytes")

// Build signs the report with the enclave and, for a TPM, certifies the
// report key and quotes the PCRs, all bound to Binding(nonce, report).
func Build(ctx context.Context, e enclave.Enclave, o BuildOptions) (*Evidence, error) {
	if len(o.Nonce) < 8 {
		return nil, ErrNonce
	}
	bind := Binding(o.Nonce, o.Report)
	ev := &Evidence{Version: Version, Enclave: string(e.Kind()), Nonce: hex.EncodeToString(o.Nonce), Report: o.Report}
	pub, err := PublicKeyPEM(e.ReportPublic())
	if err != nil {
		return nil, fmt.Errorf("report key: %w", err)
	}
	ev.ReportKey.Public = pub
	if ev.ReportSignature, err = enclave.SignMessage(ctx, e, BindingMessage(o.Nonce, o.Report)); err != nil {
		return nil, fmt.Errorf("sign report: %w", err)
	}
	if o.EventLog != nil {
		ev.EventLog = &Log{Offset: 0, Data: o.EventLog}
	}
	readIMA := func() error {
		data := o.IMALog
		if o.ReadIMALog != nil {
			var err error
			if data, err = o.ReadIMALog(); err != nil {
				return fmt.Errorf("IMA list: %w", err)
			}
		}
		if data != nil {
			ev.IMALog = &Log{Offset: o.IMAOffset, Data: data}
		}
		return nil
	}
	a, ok := e.(enclave.Attester)
	if !ok {
		return ev, readIMA()
	}
	akPublic, akKey := a.AKPublic()
	akPEM, err := PublicKeyPEM(akKey)
	if err != nil {
		return nil, fmt.Errorf("AK: %w", err)
	}
	ev.AK = &AK{Public: akPublic, PEM: akPEM}
	ev.ReportKey.TPMPublic = a.ReportKeyPublic()
	cert, err := a.Certify(ctx, bind)
	if err != nil {
		return nil, fmt.Errorf("certify report key: %w", err)
	}
	ev.ReportKey.CertifyInfo, ev.ReportKey.CertifySignature = cert.Attest, cert.Signature
	sel := o.PCRs
	if sel == nil {
		sel = DefaultPCRs
	}
	q, err := a.Quote(ctx, sel, bind)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if err := readIMA(); err != nil {
		return nil, err
	}
	ev.Quote = &Quote{Attest: q.Attest, Signature: q.Signature, PCRSelection: map[string][]int{}, PCRs: map[string]map[string]string{}}
	for bank, idx := range sel {
		s := append([]int(nil), idx...)
		sort.Ints(s)
		ev.Quote.PCRSelection[bank] = s
		vals := map[string]string{}
		for _, i := range s {
			v, ok := q.PCRs[bank][i]
			if !ok {
				return nil, fmt.Errorf("quote: the TPM returned no value for %s PCR %d", bank, i)
			}
			vals[strconv.Itoa(i)] = hex.EncodeToString(v)
		}
		ev.Quote.PCRs[bank] = vals
	}
	if o.WithEK {
		ekPub, ekKey, certDER, err := a.EK(ctx)
		if err != nil {
			return nil, fmt.Errorf("EK: %w", err)
		}
		ekPEM, err := PublicKeyPEM(ekKey)
		if err != nil {
			return nil, fmt.Errorf("EK: %w", err)
		}
		ev.EK = &EK{Public: ekPub, PEM: ekPEM}
		ev.EKCert = certDER
	}
	return ev, nil
}

// PublicKeyPEM encodes a public key as a "PUBLIC KEY" PEM block
// (SubjectPublicKeyInfo), the form evidence carries and AKFromPEM reads.
func PublicKeyPEM(k crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}
