package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"sort"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
)

// MaxQualifyingData is the longest qualifying data accepted: a TPM2B_DATA
// holds at most a TPMT_HA, and 64 bytes fit every TPM's.
const MaxQualifyingData = 64

// MaxPCR is the highest PCR index (a PC Client TPM has 24 PCRs).
const MaxPCR = 23

// quoteAttempts bounds the Quote-then-read loop when PCRs keep changing.
const quoteAttempts = 5

// banks maps bank names to hash algorithms.
var banks = map[string]tpm2.TPMIAlgHash{
	"sha1":    tpm2.TPMAlgSHA1,
	"sha256":  tpm2.TPMAlgSHA256,
	"sha384":  tpm2.TPMAlgSHA384,
	"sha512":  tpm2.TPMAlgSHA512,
	"sm3_256": tpm2.TPMAlgSM3256,
}

// BankAlg is the TPM hash algorithm of a PCR bank name ("sha256").
func BankAlg(bank string) (tpm2.TPMIAlgHash, bool) {
	a, ok := banks[bank]
	return a, ok
}

func bankSize(alg tpm2.TPMIAlgHash) int {
	switch alg {
	case tpm2.TPMAlgSHA1:
		return 20
	case tpm2.TPMAlgSHA256, tpm2.TPMAlgSM3256:
		return 32
	case tpm2.TPMAlgSHA384:
		return 48
	case tpm2.TPMAlgSHA512:
		return 64
	}
	return 0
}

// PCRSelection builds the TPML_PCR_SELECTION of banks (name → indexes),
// banks in name order; it is what Quote quotes.
func PCRSelection(sel map[string][]int) (tpm2.TPMLPCRSelection, error) {
	var out tpm2.TPMLPCRSelection
	if len(sel) == 0 {
		return out, fmt.Errorf("%w: no bank", ErrPCRSelection)
	}
	names := make([]string, 0, len(sel))
	for b := range sel {
		names = append(names, b)
	}
	sort.Strings(names)
	for _, b := range names {
		alg, ok := banks[b]
		if !ok {
			return out, fmt.Errorf("%w: unknown bank %q", ErrPCRSelection, b)
		}
		if len(sel[b]) == 0 {
			return out, fmt.Errorf("%w: bank %s selects no PCR", ErrPCRSelection, b)
		}
		idx := make([]uint, 0, len(sel[b]))
		for _, i := range sel[b] {
			if i < 0 || i > MaxPCR {
				return out, fmt.Errorf("%w: PCR %d", ErrPCRSelection, i)
			}
			idx = append(idx, uint(i))
		}
		out.PCRSelections = append(out.PCRSelections, tpm2.TPMSPCRSelection{
			Hash:      alg,
			PCRSelect: tpm2.PCClientCompatible.PCRs(idx...),
		})
	}
	return out, nil
}

// selected lists the PCR indexes a selection bitmap selects, ascending.
func selected(bitmap []byte) []int {
	var out []int
	for i, b := range bitmap {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				out = append(out, i*8+bit)
			}
		}
	}
	return out
}

func (e *Enclave) akHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: e.ak.handle, Name: e.ak.name, Auth: tpm2.PasswordAuth(nil)}
}

func (e *Enclave) rkHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: e.rk.handle, Name: e.rk.name, Auth: tpm2.PasswordAuth(nil)}
}

// Quote quotes the PCRs of banks (bank name → indexes) with the AK over
// qualifying, and reads the values of the same PCRs. The values are
// checked against the quoted PCR digest; when a PCR changed between the
// quote and the read, it quotes again (ErrPCRsChanged after a few tries).
func (e *Enclave) Quote(ctx context.Context, sel map[string][]int, qualifying []byte) (*enclave.Quote, error) {
	if len(qualifying) > MaxQualifyingData {
		return nil, fmt.Errorf("quote: %w: %d bytes", ErrQualifyingData, len(qualifying))
	}
	selection, err := PCRSelection(sel)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	var q *enclave.Quote
	err = e.do(ctx, func() error {
		for range quoteAttempts {
			rsp, err := tpm2.Quote{
				SignHandle:     e.akHandle(),
				QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
				InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
				PCRSelect:      selection,
			}.Execute(e.tpm)
			if err != nil {
				return fmt.Errorf("quote: %w", err)
			}
			attest := clone(rsp.Quoted.Bytes())
			a, err := ParseAttest(attest)
			if err != nil {
				return fmt.Errorf("quote: %w", err)
			}
			info, err := a.Attested.Quote()
			if a.Type != tpm2.TPMSTAttestQuote || err != nil {
				return fmt.Errorf("quote: %w: not a quote", ErrMalformed)
			}
			if !bytes.Equal(tpm2.Marshal(info.PCRSelect), tpm2.Marshal(selection)) {
				return fmt.Errorf("quote: %w: the TPM quoted another selection than asked for (bank not allocated?)", ErrPCRSelection)
			}
			pcrs, digest, err := e.readPCRs(info.PCRSelect)
			if err != nil {
				return fmt.Errorf("quote: %w", err)
			}
			if !bytes.Equal(digest, info.PCRDigest.Buffer) {
				continue // a PCR was extended in between
			}
			q = &enclave.Quote{Attest: attest, Signature: tpm2.Marshal(rsp.Signature), PCRs: pcrs}
			return nil
		}
		return fmt.Errorf("quote: %w (%d attempts)", ErrPCRsChanged, quoteAttempts)
	})
	return q, err
}

// readPCRs reads the PCRs of a quote's selection, in the selection's
// order, and returns them with their SHA-256 digest (the hash of the AK's
// signing scheme, which TPMS_QUOTE_INFO.pcrDigest uses).
func (e *Enclave) readPCRs(sel tpm2.TPMLPCRSelection) (map[string]map[int][]byte, []byte, error) {
	out := map[string]map[int][]byte{}
	h := sha256.New()
	for _, s := range sel.PCRSelections {
		name := bankName(s.Hash)
		if name == "" {
			return nil, nil, fmt.Errorf("%w: bank %#04x", ErrPCRSelection, uint16(s.Hash))
		}
		idx := selected(s.PCRSelect)
		vals, err := e.pcrRead(s.Hash, idx)
		if err != nil {
			return nil, nil, err
		}
		m := map[int][]byte{}
		for _, i := range idx {
			m[i] = vals[i]
			h.Write(vals[i])
		}
		out[name] = m
	}
	return out, h.Sum(nil), nil
}

func bankName(alg tpm2.TPMIAlgHash) string {
	for n, a := range banks {
		if a == alg {
			return n
		}
	}
	return ""
}

// pcrRead reads the PCRs idx of a bank; TPM2_PCR_Read returns at most 8
// values a call, so it loops until each is read.
func (e *Enclave) pcrRead(alg tpm2.TPMIAlgHash, idx []int) (map[int][]byte, error) {
	out := map[int][]byte{}
	want := bankSize(alg)
	left := slices.Clone(idx)
	for len(left) > 0 {
		u := make([]uint, len(left))
		for i, v := range left {
			u[i] = uint(v)
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
			{Hash: alg, PCRSelect: tpm2.PCClientCompatible.PCRs(u...)},
		}}}.Execute(e.tpm)
		if err != nil {
			return nil, fmt.Errorf("PCR read: %w", err)
		}
		var got []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash == alg {
				got = append(got, selected(s.PCRSelect)...)
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("%w: bank %s: the TPM returned no values for PCRs %v (bank not allocated?)", ErrPCRSelection, bankName(alg), left)
		}
		for i, p := range got {
			d := rsp.PCRValues.Digests[i].Buffer
			if len(d) != want || !slices.Contains(left, p) {
				return nil, fmt.Errorf("%w: PCR read returned PCR %d (%d bytes)", ErrMalformed, p, len(d))
			}
			out[p] = clone(d)
		}
		left = slices.DeleteFunc(left, func(p int) bool { _, ok := out[p]; return ok })
	}
	return out, nil
}

// PCRRead reads PCRs of a bank ("sha256").
func (e *Enclave) PCRRead(ctx context.Context, bank string, pcrs []int) (map[int][]byte, error) {
	if _, err := PCRSelection(map[string][]int{bank: pcrs}); err != nil {
		return nil, err
	}
	var out map[int][]byte
	err := e.do(ctx, func() error {
		var err error
		out, err = e.pcrRead(banks[bank], pcrs)
		return err
	})
	return out, err
}

// PCRExtend extends digest into PCR pcr of a bank.
func (e *Enclave) PCRExtend(ctx context.Context, bank string, pcr int, digest []byte) error {
	if _, err := PCRSelection(map[string][]int{bank: {pcr}}); err != nil {
		return err
	}
	alg := banks[bank]
	if len(digest) != bankSize(alg) {
		return fmt.Errorf("PCR extend: %w: %d bytes for %s", ErrDigest, len(digest), bank)
	}
	return e.do(ctx, func() error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: alg, Digest: digest}}},
		}.Execute(e.tpm)
		if err != nil {
			return fmt.Errorf("PCR extend %s:%d: %w", bank, pcr, err)
		}
		return nil
	})
}

// Certify certifies the report key with the AK (TPM2_Certify) over
// qualifying, and returns the TPMS_ATTEST and TPMT_SIGNATURE as emitted.
func (e *Enclave) Certify(ctx context.Context, qualifying []byte) (*enclave.Certification, error) {
	if len(qualifying) > MaxQualifyingData {
		return nil, fmt.Errorf("certify: %w: %d bytes", ErrQualifyingData, len(qualifying))
	}
	var c *enclave.Certification
	err := e.do(ctx, func() error {
		rsp, err := tpm2.Certify{
			ObjectHandle:   e.rkHandle(),
			SignHandle:     e.akHandle(),
			QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		}.Execute(e.tpm)
		if err != nil {
			return fmt.Errorf("certify: %w", err)
		}
		c = &enclave.Certification{Attest: clone(rsp.CertifyInfo.Bytes()), Signature: tpm2.Marshal(rsp.Signature)}
		return nil
	})
	return c, err
}

// SignReport signs a SHA-256 digest with the report key (TPM2_Sign with a
// NULL ticket; the key is unrestricted). It returns an ASN.1 DER ECDSA
// signature, or an RSASSA-PKCS1-v1_5 signature, checked against the
// report key before it is returned.
func (e *Enclave) SignReport(ctx context.Context, digest []byte) ([]byte, error) {
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("sign report: %w: %d bytes, want a SHA-256 digest", ErrDigest, len(digest))
	}
	var out []byte
	err := e.do(ctx, func() error {
		rsp, err := tpm2.Sign{
			KeyHandle:  e.rkHandle(),
			Digest:     tpm2.TPM2BDigest{Buffer: digest},
			InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(e.tpm)
		if err != nil {
			return fmt.Errorf("sign report: %w", err)
		}
		out, err = e.encodeReportSignature(digest, &rsp.Signature)
		return err
	})
	return out, err
}

func (e *Enclave) encodeReportSignature(digest []byte, sig *tpm2.TPMTSignature) ([]byte, error) {
	switch k := e.rk.pub.(type) {
	case *ecdsa.PublicKey:
		s, err := sig.Signature.ECDSA()
		if sig.SigAlg != tpm2.TPMAlgECDSA || err != nil || s.Hash != tpm2.TPMAlgSHA256 {
			return nil, fmt.Errorf("sign report: %w: not an ECDSA-SHA256 signature", ErrMalformed)
		}
		der, err := asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(s.SignatureR.Buffer),
			new(big.Int).SetBytes(s.SignatureS.Buffer),
		})
		if err != nil {
			return nil, fmt.Errorf("sign report: %w", err)
		}
		if !ecdsa.VerifyASN1(k, digest, der) {
			return nil, fmt.Errorf("sign report: %w: the TPM's signature does not verify", ErrSignature)
		}
		return der, nil
	case *rsa.PublicKey:
		s, err := sig.Signature.RSASSA()
		if sig.SigAlg != tpm2.TPMAlgRSASSA || err != nil || s.Hash != tpm2.TPMAlgSHA256 {
			return nil, fmt.Errorf("sign report: %w: not an RSASSA-SHA256 signature", ErrMalformed)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, s.Sig.Buffer); err != nil {
			return nil, fmt.Errorf("sign report: %w: the TPM's signature does not verify", ErrSignature)
		}
		return clone(s.Sig.Buffer), nil
	}
	return nil, fmt.Errorf("sign report: %w: %T", ErrUnsupportedKey, e.rk.pub)
}
