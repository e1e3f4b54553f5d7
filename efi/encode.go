package efi

import (
	"encoding/binary"
	"fmt"
	"math"
)

// X509List returns a list holding one DER certificate, as
// cert-to-efi-sig-list writes it: certificates differ in size, so each
// gets its own list.
func X509List(owner GUID, der []byte) SignatureList {
	return SignatureList{Type: CertX509, Signatures: []SignatureData{{Owner: owner, Data: der}}}
}

// HashList returns a list of hashes of type t (CertSHA256, CertSHA384...)
// with one owner, as hash-to-efi-sig-list writes it.
func HashList(t GUID, owner GUID, hashes ...[]byte) SignatureList {
	l := SignatureList{Type: t}
	for _, h := range hashes {
		l.Signatures = append(l.Signatures, SignatureData{Owner: owner, Data: h})
	}
	return l
}

// CertHashData returns the data of an EFI_CERT_X509_SHA* entry: the hash
// of a TBSCertificate and its TimeOfRevocation (zero: always revoked).
func CertHashData(tbsHash []byte, revocation Time) []byte {
	t, _ := revocation.MarshalBinary()
	return append(append([]byte(nil), tbsHash...), t...)
}

// AppendSignatureLists appends the wire form of lists to dst. A list's
// SignatureSize, when zero, is 16 plus the size of its entries' data, which
// must then all be the same size. The same rules ParseSignatureLists
// applies are checked, so that whatever is written parses back to the same
// lists; a list that breaks one is an error wrapping ErrMalformed, and dst
// is returned unchanged.
func AppendSignatureLists(dst []byte, lists ...SignatureList) ([]byte, error) {
	orig := dst
	for n, l := range lists {
		fail := func(format string, args ...any) ([]byte, error) {
			return orig, fmt.Errorf("efi: encode signature list %d: %w: %s", n, ErrMalformed, fmt.Sprintf(format, args...))
		}
		sigSize := uint64(l.SignatureSize)
		if sigSize == 0 {
			if len(l.Signatures) == 0 {
				return fail("no signatures and no SignatureSize")
			}
			sigSize = OwnerSize + uint64(len(l.Signatures[0].Data))
		}
		for i, s := range l.Signatures {
			if OwnerSize+uint64(len(s.Data)) != sigSize {
				return fail("entry %d has %d bytes of data, SignatureSize %d needs %d", i, len(s.Data), sigSize, sigSize-OwnerSize)
			}
		}
		if sigSize < OwnerSize {
			return fail("SignatureSize %d is smaller than the %d-byte owner GUID", sigSize, OwnerSize)
		}
		if st, known := sigTypes[l.Type]; known {
			if len(l.Header) != 0 {
				return fail("a %d-byte header for type %s, which has no header", len(l.Header), st.name)
			}
			if st.size != 0 && sigSize != uint64(OwnerSize+st.size) {
				return fail("SignatureSize %d for type %s, which needs %d", sigSize, st.name, OwnerSize+st.size)
			}
		}
		listSize := ListHeaderSize + uint64(len(l.Header)) + sigSize*uint64(len(l.Signatures))
		if sigSize > math.MaxUint32 || listSize > math.MaxUint32 || uint64(len(l.Header)) > math.MaxUint32 {
			return fail("the list needs %d bytes, more than a uint32 counts", listSize)
		}
		var h [ListHeaderSize]byte
		copy(h[:], l.Type[:])
		binary.LittleEndian.PutUint32(h[16:], uint32(listSize))
		binary.LittleEndian.PutUint32(h[20:], uint32(len(l.Header)))
		binary.LittleEndian.PutUint32(h[24:], uint32(sigSize))
		dst = append(append(dst, h[:]...), l.Header...)
		for _, s := range l.Signatures {
			dst = append(append(dst, s.Owner[:]...), s.Data...)
		}
	}
	return dst, nil
}

// MarshalBinary returns the wire form of one list.
func (l SignatureList) MarshalBinary() ([]byte, error) { return AppendSignatureLists(nil, l) }
