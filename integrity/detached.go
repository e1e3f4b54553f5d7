package integrity

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/reason"
)

// readBounded reads a whole small file, refusing files larger than max.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, reason.New(reason.Malformed, "%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// verifyDetached checks a detached CMS signature (FILE.p7s, DER or PEM) over
// the whole file.
func (e *Engine) verifyDetached(ctx context.Context, v *Verdict, f io.ReaderAt, size int64, raw []byte) error {
	der := pemOrDER(raw, "PKCS7", "CMS")
	sd, perr := cms.Parse(der)
	algs := []crypto.Hash{crypto.SHA256}
	if perr == nil {
		for _, si := range sd.Signers {
			if h, err := si.Hash(); err == nil {
				algs = append(algs, h)
			}
		}
	}
	hs, m := newHashes(algs...)
	if _, err := io.Copy(m, io.NewSectionReader(f, 0, size)); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	sums := map[crypto.Hash][]byte{}
	for h, x := range hs {
		sums[h] = x.Sum(nil)
	}
	v.SHA256 = hex.EncodeToString(sums[crypto.SHA256])
	if perr != nil {
		v.Signatures = append(v.Signatures, Signature{Reasons: []reason.Code{reason.Of(perr, reason.Malformed)}, Messages: []string{perr.Error()}})
		return nil
	}
	if sd.Content != nil {
		// An attached signature (openssl cms -nodetach, or -stream) is
		// accepted over FILE when the content it carries is FILE's bytes.
		if c := cms.Digest(crypto.SHA256, sd.Content); !bytes.Equal(c, sums[crypto.SHA256]) {
			v.Signatures = append(v.Signatures, Signature{Reasons: []reason.Code{reason.DigestMismatch},
				Messages: []string{fmt.Sprintf("the signature encapsulates content with SHA-256 %x, not this file's", c)}})
			return nil
		}
	}
	for i, si := range sd.Signers {
		sig := Signature{Index: i}
		if err := ctx.Err(); err != nil {
			return err
		}
		e.checkSigner(signerCheck{
			sd: sd, si: si, contentType: sd.ContentType, contentDigest: lookupDigest(sums),
		}, &sig)
		v.Signatures = append(v.Signatures, sig)
	}
	return nil
}

// pemOrDER returns the DER inside a PEM block of one of the given types, or
// b unchanged when it is not PEM.
func pemOrDER(b []byte, types ...string) []byte {
	rest := b
	for {
		blk, r := pem.Decode(rest)
		if blk == nil {
			return b
		}
		for _, t := range types {
			if blk.Type == t {
				return blk.Bytes
			}
		}
		rest = r
	}
}
