package efi_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vigil-attest/vigil/efi"
)

// seedDatabases returns real databases: efitools' lists of the real and
// generated certificates and of real Authenticode hashes, and our encoding
// of every type the specification defines.
func seedDatabases(f *testing.F) [][]byte {
	dir := f.TempDir()
	var out [][]byte
	var db []byte
	for i, c := range testCerts(f) {
		b := certToESL(f, dir, c, efi.GUID{byte(i)})
		out = append(out, b)
		db = append(db, b...)
	}
	hashes := hashToESL(f, dir, hashableEFI(f)...)
	out = append(out, db, hashes, append(append([]byte(nil), hashes...), out[3]...))
	typed := mustEncode(f,
		efi.HashList(efi.CertSHA1, testOwner, make([]byte, 20)),
		efi.HashList(efi.CertSHA384, testOwner, make([]byte, 48), bytes.Repeat([]byte{1}, 48)),
		efi.HashList(efi.CertSHA512, testOwner, make([]byte, 64)),
		efi.HashList(efi.CertRSA2048, testOwner, make([]byte, 256)),
		efi.HashList(efi.CertX509SHA256, testOwner, efi.CertHashData(make([]byte, 32), efi.Time{Year: 2020, Month: 1, Day: 1})),
		efi.HashList(efi.CertX509SHA512, testOwner, efi.CertHashData(make([]byte, 64), efi.Time{})),
		efi.SignatureList{Type: efi.ShimLock, Header: []byte{1, 2, 3}, SignatureSize: 17, Signatures: []efi.SignatureData{{Data: []byte{9}}}},
	)
	return append(out, typed, typed[:len(typed)-5], rawList(efi.CertSHA256, 0xffffffff, 0, 48, nil))
}

// checkDatabase asserts what must hold for any input: a result that tiles
// the input (the lists before a fault re-encode to exactly the bytes
// before it), a located error with a sentinel, and entries decoded without
// a panic.
func checkDatabase(t *testing.T, data []byte) {
	lists, err := efi.ParseSignatureLists(data)
	end := len(data)
	if err != nil {
		var pe *efi.ParseError
		if !errors.As(err, &pe) || !(errors.Is(err, efi.ErrTruncated) || errors.Is(err, efi.ErrMalformed)) {
			t.Fatalf("error without a sentinel or offset: %v", err)
		}
		if pe.Offset < 0 || pe.Offset >= len(data) {
			t.Fatalf("offset %d outside %d bytes", pe.Offset, len(data))
		}
		end = pe.Offset
	}
	b, encErr := efi.AppendSignatureLists(nil, lists...)
	if encErr != nil {
		t.Fatalf("parsed lists do not encode: %v", encErr)
	}
	if !bytes.Equal(b, data[:end]) {
		t.Fatalf("encode(parse(x)) differs from the %d bytes parsed", end)
	}
	for _, e := range efi.Entries(lists) {
		if e.Type == efi.CertX509 {
			if (e.Certificate == nil) == (e.Err == nil) {
				t.Fatalf("X.509 entry %d/%d: certificate %v, error %v", e.List, e.Index, e.Certificate != nil, e.Err)
			}
		} else if e.Err != nil || e.Certificate != nil {
			t.Fatalf("non-X.509 entry decoded as a certificate")
		}
		if e.Revocation != nil {
			_, _ = e.Revocation.Time()
		}
	}
}

func FuzzSignatureLists(f *testing.F) {
	for _, b := range seedDatabases(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDatabase(t, data) })
}

// FuzzVariable feeds whole efivarfs files: the attribute prefix and then a
// database, as the collector reads db and dbx.
func FuzzVariable(f *testing.F) {
	for _, b := range seedDatabases(f) {
		f.Add(append([]byte{0x27, 0, 0, 0}, b...))
	}
	f.Add([]byte{6, 0, 0, 0, 1})
	f.Add([]byte{7, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := efi.ParseVariable(data)
		if err != nil {
			if len(data) >= 4 || !errors.Is(err, efi.ErrTruncated) {
				t.Fatalf("%d bytes: %v", len(data), err)
			}
			return
		}
		if b, _ := v.MarshalBinary(); !bytes.Equal(b, data) {
			t.Fatal("MarshalBinary(ParseVariable(x)) != x")
		}
		_ = v.Attributes.String()
		checkDatabase(t, v.Data)
	})
}

// FuzzReadDatabase feeds files in any of the three forms ReadDatabase
// takes (raw, efivarfs, authenticated updates): it never panics, reports a
// located sentinel error, and a payload it returns lies inside the input.
func FuzzReadDatabase(f *testing.F) {
	for _, b := range seedDatabases(f) {
		f.Add(b)
		f.Add(append([]byte{0x07, 0, 0, 0}, b...))
		f.Add(authWrap(b, 2000))
	}
	f.Add(authWrap(nil, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		lists, form, err := efi.ReadDatabase(data)
		if err != nil {
			var pe *efi.ParseError
			if !errors.As(err, &pe) || !(errors.Is(err, efi.ErrTruncated) || errors.Is(err, efi.ErrMalformed)) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			if pe.Offset < 0 || pe.Offset > len(data) {
				t.Fatalf("offset %d outside %d bytes", pe.Offset, len(data))
			}
			return
		}
		for _, l := range lists {
			if l.Offset < 0 || l.Offset >= len(data) {
				t.Fatalf("list offset %d outside %d bytes (%s)", l.Offset, len(data), form)
			}
		}
		efi.Entries(lists)
		if efi.IsAuthenticated(data) && form == efi.FormAuthenticated {
			a, err := efi.ParseAuthenticated(data)
			if err != nil || len(a.PKCS7)+len(a.Payload)+40 != len(data) {
				t.Fatalf("authenticated: %v, %d+%d+40 != %d", err, len(a.PKCS7), len(a.Payload), len(data))
			}
		}
	})
}

// authWrap puts an EFI_VARIABLE_AUTHENTICATION_2 header with n bytes of
// (fake) PKCS#7 in front of payload.
func authWrap(payload []byte, n int) []byte {
	b := make([]byte, 40+n)
	b[0], b[1], b[2] = 0xe9, 0x07, 1 // 2025-01
	b[3] = 1
	dw := uint32(24 + n)
	b[16], b[17], b[18], b[19] = byte(dw), byte(dw>>8), byte(dw>>16), byte(dw>>24)
	b[20], b[21] = 0x00, 0x02
	b[22], b[23] = 0xf1, 0x0e
	copy(b[24:40], efi.CertTypePKCS7[:])
	return append(b, payload...)
}
