package tpm_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/eventlog"
	"github.com/vigil-attest/vigil/internal/artifacts"
	"github.com/vigil-attest/vigil/internal/testtpm"
	"github.com/vigil-attest/vigil/tpm"
)

// checkquote runs tpm2_checkquote (tpm2-tools) on a quote: the AK as PEM,
// the TPMS_ATTEST as the message, the TPMT_SIGNATURE, the PCR values and
// the nonce. With sel set, pcrs is in tpm2-tools' "values" form (digests
// concatenated in selection order) and sel is passed with -l; without, in
// its serialized form, which carries the selection.
func checkquote(t *testing.T, akPEM []byte, attest, sig []byte, pcrs []byte, sel string, qualifying []byte) (string, error) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"ak.pem": akPEM, "msg": attest, "sig": sig, "pcrs": pcrs}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{
		"-u", filepath.Join(dir, "ak.pem"),
		"-m", filepath.Join(dir, "msg"),
		"-s", filepath.Join(dir, "sig"),
		"-f", filepath.Join(dir, "pcrs"),
		"-g", "sha256",
		"-q", hex.EncodeToString(qualifying)}
	if sel != "" {
		args = append(args, "-l", sel)
	}
	out, err := exec.Command("tpm2_checkquote", args...).CombinedOutput()
	return string(out), err
}

// serializedPCRs writes SHA-256 PCR values as tpm2_quote -o does: the
// TPML_PCR_SELECTION and TPML_DIGEST C structures, little-endian, as laid
// out in memory (16 banks of 8-byte TPMS_PCR_SELECTION; TPML_DIGESTs of 8
// TPM2B_DIGESTs of 2+64 bytes).
func serializedPCRs(idx []int, values [][]byte) []byte {
	sel := make([]byte, 4+16*8)
	binary.LittleEndian.PutUint32(sel, 1)
	binary.LittleEndian.PutUint16(sel[4:], 0x000B)
	sel[6] = 3
	for _, i := range idx {
		sel[7+i/8] |= 1 << (i % 8)
	}
	lists := (len(values) + 7) / 8
	out := binary.LittleEndian.AppendUint32(sel, uint32(lists))
	for l := 0; l < lists; l++ {
		list := make([]byte, 4+8*66)
		chunk := values[l*8 : min(len(values), l*8+8)]
		binary.LittleEndian.PutUint32(list, uint32(len(chunk)))
		for k, v := range chunk {
			binary.LittleEndian.PutUint16(list[4+k*66:], uint16(len(v)))
			copy(list[4+k*66+2:], v)
		}
		out = append(out, list...)
	}
	return out
}

func TestQuoteCheckedByTPM2Tools(t *testing.T) {
	if _, err := exec.LookPath("tpm2_checkquote"); err != nil {
		t.Fatal("tpm2_checkquote not found: run `make deps` (installs tpm2-tools)")
	}
	for _, typ := range akTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			sw := testtpm.Start(t)
			e := open(t, sw.URI, tpm.Options{AK: typ})
			d := sha256.Sum256([]byte("measurement"))
			if err := e.PCRExtend(ctx, "sha256", 9, d[:]); err != nil {
				t.Fatal(err)
			}
			_, akKey := e.AKPublic()
			der, err := x509.MarshalPKIXPublicKey(akKey)
			if err != nil {
				t.Fatal(err)
			}
			akPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			other := otherAKPEM(t, typ)

			// tpm2-tools 5.4 reads at most 7 values with -l (its
			// parse_selection_data_from_selection_string drops the 8th);
			// the serialized form carries any number.
			for _, form := range []struct {
				name string
				idx  []int
			}{
				{"values", []int{0, 2, 4, 7, 9, 10, 14}},
				{"serialized", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 23}},
			} {
				n := nonce(t)
				q, err := e.Quote(ctx, map[string][]int{"sha256": form.idx}, n)
				if err != nil {
					t.Fatal(err)
				}
				var values [][]byte
				for _, i := range form.idx {
					values = append(values, q.PCRs["sha256"][i])
				}
				pcrFile, sel := bytes.Join(values, nil), ""
				if form.name == "values" {
					var s []string
					for _, i := range form.idx {
						s = append(s, strconv.Itoa(i))
					}
					sel = "sha256:" + strings.Join(s, ",")
				} else {
					pcrFile = serializedPCRs(form.idx, values)
				}
				if typ == tpm.RSAPSS2048 {
					// tpm2_checkquote 5.4 verifies RSA with PKCS#1 v1.5
					// padding only; check the PSS signature with openssl.
					opensslPSS(t, akPEM, q.Attest, q.Signature, other)
					continue
				}
				if out, err := checkquote(t, akPEM, q.Attest, q.Signature, pcrFile, sel, n); err != nil {
					t.Fatalf("%s: tpm2_checkquote rejects our quote: %v\n%s", form.name, err, out)
				}

				// Each alteration is rejected.
				flip := func(b []byte, i int) []byte { b = slices.Clone(b); b[i] ^= 0x01; return b }
				pcrAt := 5 * 32 // a byte of the sixth value
				if form.name == "serialized" {
					pcrAt = 4 + 16*8 + 4 + 4 + 5*66 + 2
				}
				cases := map[string][5][]byte{
					"attest byte":     {akPEM, flip(q.Attest, len(q.Attest)-1), q.Signature, pcrFile, n},
					"signature byte":  {akPEM, q.Attest, flip(q.Signature, len(q.Signature)-3), pcrFile, n},
					"PCR value":       {akPEM, q.Attest, q.Signature, flip(pcrFile, pcrAt), n},
					"qualifying data": {akPEM, q.Attest, q.Signature, pcrFile, flip(n, 0)},
					"another AK":      {other, q.Attest, q.Signature, pcrFile, n},
				}
				for name, c := range cases {
					out, err := checkquote(t, c[0], c[1], c[2], c[3], sel, c[4])
					if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) {
						t.Errorf("%s: tpm2_checkquote accepts a quote with a flipped %s (%v):\n%s", form.name, name, err, out)
					}
				}
			}
		})
	}
}

// opensslPSS checks an RSASSA-PSS TPMT_SIGNATURE over msg with openssl
// pkeyutl, and that a flipped byte or another key fails.
func opensslPSS(t *testing.T, akPEM, msg, tpmtSig, otherPEM []byte) {
	t.Helper()
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](tpmtSig)
	if err != nil || sig.SigAlg != tpm2.TPMAlgRSAPSS {
		t.Fatalf("not an RSAPSS signature: %v", err)
	}
	pss, _ := sig.Signature.RSAPSS()
	run := func(key, msg []byte) error {
		dir := t.TempDir()
		d := sha256.Sum256(msg)
		for name, b := range map[string][]byte{"ak.pem": key, "dgst": d[:], "sig": pss.Sig.Buffer} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", filepath.Join(dir, "ak.pem"),
			"-in", filepath.Join(dir, "dgst"), "-sigfile", filepath.Join(dir, "sig"),
			"-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:auto").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := run(akPEM, msg); err != nil {
		t.Fatalf("openssl rejects our RSAPSS quote: %v", err)
	}
	bad := slices.Clone(msg)
	bad[len(bad)-1] ^= 1
	if run(akPEM, bad) == nil || run(otherPEM, msg) == nil {
		t.Fatal("openssl accepts an altered RSAPSS quote")
	}
}

// otherAKPEM is the AK of another TPM, as PEM.
func otherAKPEM(t *testing.T, typ tpm.KeyType) []byte {
	sw := testtpm.Start(t)
	e := open(t, sw.URI, tpm.Options{AK: typ})
	_, k := e.AKPublic()
	der, _ := x509.MarshalPKIXPublicKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// A real firmware event log, extended into swtpm, replays to the quoted
// PCRs.
func TestEventLogReplaysToQuote(t *testing.T) {
	for _, name := range []string{"ubuntu_2104_shielded_vm_no_secure_boot_eventlog", "crypto_agile_eventlog"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			log, err := os.ReadFile(artifacts.SharedData(t, "eventlogs/"+name))
			if err != nil {
				t.Fatalf("%v (run `make artifacts`?)", err)
			}
			sw := testtpm.Start(t)
			e := open(t, sw.URI, tpm.Options{})
			l := testtpm.ExtendEventLog(t, e, log)
			replayed := l.Replay()
			var sel []int
			for _, i := range replayed.Indexes(eventlog.AlgSHA256) {
				sel = append(sel, int(i))
			}
			n := nonce(t)
			q, err := e.Quote(ctx, map[string][]int{"sha256": sel}, n)
			if err != nil {
				t.Fatal(err)
			}
			_, akKey := e.AKPublic()
			checkQuote(t, akKey, q, map[string][]int{"sha256": sel}, n)
			for _, i := range sel {
				if !bytes.Equal(q.PCRs["sha256"][i], replayed[eventlog.AlgSHA256][uint32(i)]) {
					t.Fatalf("PCR %d: quoted %x, replayed %x", i, q.PCRs["sha256"][i], replayed[eventlog.AlgSHA256][uint32(i)])
				}
			}
			if len(sel) < 8 {
				t.Fatalf("only PCRs %v replayed", sel)
			}
		})
	}
}

var _ enclave.Attester = (*tpm.Enclave)(nil)
