package authenticode

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf16"

	"github.com/vigil-attest/vigil/cms"
	"github.com/vigil-attest/vigil/reason"
)

// Authenticode object identifiers.
var (
	OIDSpcIndirectData        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}
	OIDSpcStatementType       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 11}
	OIDSpcSpOpusInfo          = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 12}
	OIDSpcPEImageData         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 15}
	OIDIndividualCodeSigning  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 21}
	OIDCommercialCodeSigning  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 22}
	OIDSpcPEImagePageHashesV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 3, 1} // SHA-1 page hashes
	OIDSpcPEImagePageHashesV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 3, 2} // SHA-256 page hashes
	spcPageHashClassID        = []byte{0xa6, 0xb5, 0x86, 0xd5, 0xb4, 0xa1, 0x24, 0x66, 0xae, 0x05, 0xa2, 0x17, 0xda, 0x8e, 0x60, 0xd6}
	obsoleteLinkDER           = mustObsoleteLink()
	errIndirectTrailing       = errors.New("trailing data")
)

// PageHashes is the page hash table of a signature: a sequence of entries,
// each a 4-byte little-endian file offset followed by a digest, one per 4096
// bytes page of the headers and of each section, ending with an entry that
// holds the end offset of the section data and an all-zero digest.
type PageHashes struct {
	Hash  crypto.Hash // crypto.SHA1 (attribute ...2.3.1) or crypto.SHA256 (...2.3.2)
	Table []byte      // the raw table
}

// IndirectData is a parsed SpcIndirectDataContent
// (OID 1.3.6.1.4.1.311.2.1.4), the content Authenticode signs.
type IndirectData struct {
	// DataType is the type of the data attribute: OIDSpcPEImageData for PE
	// images (other formats use other types).
	DataType asn1.ObjectIdentifier
	// DataValue is the DER of the data attribute's value, when present.
	DataValue []byte
	// DigestOID is the digest algorithm of the image hash, and
	// DigestAlgorithm its crypto.Hash (0 when the OID is not a hash
	// Authenticode uses; such content fails ParseIndirectData with
	// reason.Unsupported).
	DigestOID       asn1.ObjectIdentifier
	DigestAlgorithm crypto.Hash
	// Digest is the signed image hash.
	Digest []byte
	// PageHashes is the page hash table found in SpcPeImageData's file link
	// (an SpcSerializedObject with the page hash class id), or nil.
	PageHashes *PageHashes
}

type spcAttributeTypeAndOptionalValue struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"optional"`
}

type digestInfo struct {
	DigestAlgorithm pkix.AlgorithmIdentifier
	Digest          []byte
}

type spcIndirectDataContent struct {
	Data          spcAttributeTypeAndOptionalValue
	MessageDigest digestInfo
}

type spcPeImageData struct {
	Flags asn1.BitString `asn1:"optional"`
	File  asn1.RawValue  `asn1:"optional,explicit,tag:0"`
}

type spcSerializedObject struct {
	ClassID        []byte
	SerializedData []byte
}

func unmarshalStrict(der []byte, v any, params string) error {
	rest, err := asn1.UnmarshalWithParams(der, v, params)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errIndirectTrailing
	}
	return nil
}

func malformedASN1(what string, err error) error {
	return reason.Wrap(reason.Malformed, fmt.Errorf("authenticode: %s: %w", what, err))
}

// ParseIndirectData parses the DER of an SpcIndirectDataContent (the
// encapsulated content of an Authenticode SignedData, including its SEQUENCE
// header). Structural errors are reason.Malformed; a digest algorithm that is
// not SHA-1, SHA-2 or MD5 is reason.Unsupported.
func ParseIndirectData(der []byte) (*IndirectData, error) {
	var c spcIndirectDataContent
	if err := unmarshalStrict(der, &c, ""); err != nil {
		return nil, malformedASN1("SpcIndirectDataContent", err)
	}
	id := &IndirectData{
		DataType:  c.Data.Type,
		DigestOID: c.MessageDigest.DigestAlgorithm.Algorithm,
		Digest:    c.MessageDigest.Digest,
	}
	if len(c.Data.Value.FullBytes) > 0 {
		id.DataValue = c.Data.Value.FullBytes
	}
	var err error
	if id.DigestAlgorithm, err = cms.HashFromOID(id.DigestOID); err != nil {
		return nil, reason.New(reason.Unsupported, "authenticode: unsupported digest algorithm %v", id.DigestOID)
	}
	if len(id.Digest) != id.DigestAlgorithm.Size() {
		return nil, reason.New(reason.Malformed, "authenticode: %v digest of %d bytes, want %d", id.DigestAlgorithm, len(id.Digest), id.DigestAlgorithm.Size())
	}
	if id.DataType.Equal(OIDSpcPEImageData) {
		if id.DataValue == nil {
			return nil, reason.New(reason.Malformed, "authenticode: SpcPeImageData missing")
		}
		ph, err := parsePEImageData(id.DataValue)
		if err != nil {
			return nil, err
		}
		id.PageHashes = ph
	}
	return id, nil
}

// parsePEImageData parses SpcPeImageData and returns its page hashes, if
// its file link carries them.
func parsePEImageData(der []byte) (*PageHashes, error) {
	var pid spcPeImageData
	if err := unmarshalStrict(der, &pid, ""); err != nil {
		return nil, malformedASN1("SpcPeImageData", err)
	}
	if len(pid.File.FullBytes) == 0 {
		return nil, nil
	}
	// encoding/asn1 hands a RawValue the explicit [0] wrapper; the SpcLink
	// is its only element.
	var link asn1.RawValue
	if err := unmarshalStrict(pid.File.Bytes, &link, ""); err != nil {
		return nil, malformedASN1("SpcLink", err)
	}
	if link.Class != asn1.ClassContextSpecific {
		return nil, reason.New(reason.Malformed, "authenticode: SpcLink has class %d", link.Class)
	}
	switch link.Tag {
	case 0, 2: // url, file: no page hashes
		return nil, nil
	case 1: // moniker [1] IMPLICIT SpcSerializedObject
	default:
		return nil, reason.New(reason.Malformed, "authenticode: SpcLink has unknown choice [%d]", link.Tag)
	}
	var so spcSerializedObject
	if err := unmarshalStrict(link.FullBytes, &so, "tag:1"); err != nil {
		return nil, malformedASN1("SpcSerializedObject", err)
	}
	if !bytes.Equal(so.ClassID, spcPageHashClassID) {
		return nil, nil // some other serialized object
	}
	// serializedData: SET { SpcAttributeTypeAndOptionalValue { type, SET { OCTET STRING } } }
	var set asn1.RawValue
	if err := unmarshalStrict(so.SerializedData, &set, ""); err != nil {
		return nil, malformedASN1("page hash set", err)
	}
	if set.Class != asn1.ClassUniversal || set.Tag != asn1.TagSet || !set.IsCompound {
		return nil, reason.New(reason.Malformed, "authenticode: page hash data is not a SET")
	}
	var attr spcAttributeTypeAndOptionalValue
	if err := unmarshalStrict(set.Bytes, &attr, ""); err != nil {
		return nil, malformedASN1("page hash attribute", err)
	}
	ph := &PageHashes{}
	switch {
	case attr.Type.Equal(OIDSpcPEImagePageHashesV1):
		ph.Hash = crypto.SHA1
	case attr.Type.Equal(OIDSpcPEImagePageHashesV2):
		ph.Hash = crypto.SHA256
	default:
		return nil, reason.New(reason.Unsupported, "authenticode: unknown page hash type %v", attr.Type)
	}
	v := attr.Value
	if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagSet || !v.IsCompound {
		return nil, reason.New(reason.Malformed, "authenticode: page hash value is not a SET")
	}
	if err := unmarshalStrict(v.Bytes, &ph.Table, ""); err != nil {
		return nil, malformedASN1("page hash table", err)
	}
	if ph.Table == nil {
		ph.Table = []byte{}
	}
	return ph, nil
}

// tlv returns the DER of one element. Marshalling a RawValue fails only for
// lengths beyond what any caller here builds.
func tlv(class, tag int, compound bool, content []byte) []byte {
	b, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: content})
	if err != nil {
		panic(err)
	}
	return b
}

func mustObsoleteLink() []byte {
	// SpcLink file [2] EXPLICIT SpcString, unicode [0] IMPLICIT BMPString
	// "<<<Obsolete>>>".
	return tlv(asn1.ClassContextSpecific, 2, true,
		tlv(asn1.ClassContextSpecific, 0, false, bmpString("<<<Obsolete>>>")))
}

func bmpString(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = append(b, byte(r>>8), byte(r))
	}
	return b
}

// MarshalIndirectData returns the DER of an SpcIndirectDataContent for a PE
// image hash, with SpcPeImageData as osslsigncode and signtool emit it
// (flags includeResources, file link "<<<Obsolete>>>").
func MarshalIndirectData(h crypto.Hash, digest []byte) ([]byte, error) {
	return marshalIndirectData(h, digest, obsoleteLinkDER)
}

// MarshalIndirectDataWithPageHashes is MarshalIndirectData with a page hash
// table in SpcPeImageData's file link, as osslsigncode -ph and signtool /ph
// emit it.
func MarshalIndirectDataWithPageHashes(h crypto.Hash, digest []byte, ph *PageHashes) ([]byte, error) {
	if ph == nil {
		return nil, errors.New("authenticode: nil page hashes")
	}
	var typ asn1.ObjectIdentifier
	switch ph.Hash {
	case crypto.SHA1:
		typ = OIDSpcPEImagePageHashesV1
	case crypto.SHA256:
		typ = OIDSpcPEImagePageHashesV2
	default:
		return nil, fmt.Errorf("authenticode: page hashes with %v are not defined", ph.Hash)
	}
	table, err := asn1.Marshal(ph.Table)
	if err != nil {
		return nil, err
	}
	attr, err := asn1.Marshal(spcAttributeTypeAndOptionalValue{Type: typ,
		Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: table}})
	if err != nil {
		return nil, err
	}
	set := tlv(asn1.ClassUniversal, asn1.TagSet, true, attr)
	so, err := asn1.MarshalWithParams(spcSerializedObject{ClassID: spcPageHashClassID, SerializedData: set}, "tag:1")
	if err != nil {
		return nil, err
	}
	return marshalIndirectData(h, digest, so)
}

func marshalIndirectData(h crypto.Hash, digest []byte, link []byte) ([]byte, error) {
	oid, err := cms.OIDFromHash(h)
	if err != nil {
		return nil, fmt.Errorf("authenticode: unsupported digest algorithm %v", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("authenticode: %v digest of %d bytes, want %d", h, len(digest), h.Size())
	}
	// SpcPeImageData: flags with includeResources (bit 0) set, as
	// osslsigncode emits them, and the link as [0] EXPLICIT SpcLink.
	flags, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
	if err != nil {
		return nil, err
	}
	pid := tlv(asn1.ClassUniversal, asn1.TagSequence, true,
		append(flags, tlv(asn1.ClassContextSpecific, 0, true, link)...))
	return asn1.Marshal(spcIndirectDataContent{
		Data: spcAttributeTypeAndOptionalValue{Type: OIDSpcPEImageData, Value: asn1.RawValue{FullBytes: pid}},
		MessageDigest: digestInfo{
			DigestAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue},
			Digest:          digest,
		},
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// MarshalSpOpusInfo returns the DER of an SpcSpOpusInfo attribute value
// (OIDSpcSpOpusInfo) with an optional program name and "more info" URL. An
// ASCII program name is encoded as SpcString's ascii choice, as osslsigncode
// writes it, any other as its unicode (BMPString) choice; the URL must be
// ASCII.
func MarshalSpOpusInfo(programName, url string) ([]byte, error) {
	var body []byte
	if programName != "" {
		// programName [0] EXPLICIT SpcString:
		// unicode [0] IMPLICIT BMPString or ascii [1] IMPLICIT IA5String.
		tag, val := 1, []byte(programName)
		if !isASCII(programName) {
			tag, val = 0, bmpString(programName)
		}
		body = append(body, tlv(asn1.ClassContextSpecific, 0, true,
			tlv(asn1.ClassContextSpecific, tag, false, val))...)
	}
	if url != "" {
		if !isASCII(url) {
			return nil, errors.New("authenticode: opus info URL must be ASCII")
		}
		// moreInfo [1] EXPLICIT SpcLink, url [0] IMPLICIT IA5String
		body = append(body, tlv(asn1.ClassContextSpecific, 1, true,
			tlv(asn1.ClassContextSpecific, 0, false, []byte(url)))...)
	}
	return tlv(asn1.ClassUniversal, asn1.TagSequence, true, body), nil
}

// MarshalStatementType returns the DER of an SpcStatementType attribute
// value (OIDSpcStatementType) declaring individual code signing.
func MarshalStatementType() ([]byte, error) {
	return asn1.Marshal([]asn1.ObjectIdentifier{OIDIndividualCodeSigning})
}
