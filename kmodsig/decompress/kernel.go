package decompress

import "errors"

// The kernel's acceptance rules. A module is decompressed by the kernel
// itself (kernel/module/decompress.c, module_gzip_decompress,
// module_xz_decompress, module_zstd_decompress) with lib/zlib_inflate,
// lib/xz and lib/zstd. Where Go's decoders read an input differently from
// those -- a header field one skips and the other honours, a second stream
// one decodes and the other ignores, a check type one verifies and the other
// refuses -- this package refuses the input with reason.Malformed and an
// error wrapping one of these sentinels, so that the bytes judged are the
// bytes the kernel loads, or nothing is judged at all.
var (
	// ErrHeaderField: a gzip header carries FEXTRA, FCOMMENT, FHCRC or a
	// reserved flag bit. module_gzip_header_len skips only the 10 fixed
	// bytes and an FNAME; the kernel inflates whatever follows, so an
	// FEXTRA/FCOMMENT/FHCRC field is read by the kernel as deflate data
	// while Go's gzip reader skips it (lib/decompress_inflate.c, the boot
	// decompressor, has the same rule).
	ErrHeaderField = errors.New("gzip header field the kernel does not skip (FEXTRA, FCOMMENT, FHCRC or a reserved flag)")
	// ErrTrailer: the gzip CRC32 or ISIZE trailer is missing or wrong.
	// The kernel inflates raw deflate and never reads the trailer; Vigil
	// requires it to be present and right (it cannot make two readings
	// differ, but an input the kernel would load while Vigil cannot check
	// it is refused rather than judged on a guess).
	ErrTrailer = errors.New("gzip trailer (CRC32, ISIZE) missing or wrong")
	// ErrConcatenated: a second gzip member, xz stream or zstd frame
	// follows the first. The kernel decodes the first only
	// (zlib_inflate stops at Z_STREAM_END, xz_dec_run at XZ_STREAM_END,
	// zstd_decompress_stream returns 0 at the end of a frame); Go's
	// decoders go on and append the next one.
	ErrConcatenated = errors.New("a second stream follows the first; the kernel decodes only the first")
	// ErrTrailingData: bytes (xz stream padding included) follow the end
	// of the first stream. The kernel ignores them.
	ErrTrailingData = errors.New("data after the end of the compressed stream; the kernel ignores it")
	// ErrSkippableFrame: a zstd skippable frame. The kernel's loop ends
	// at the first frame end, so a leading skippable frame yields an
	// empty module, while Go's decoder skips it and decodes what follows.
	ErrSkippableFrame = errors.New("zstd skippable frame; the kernel stops at the end of the first frame")
	// ErrDictionary: a zstd frame names a dictionary. The kernel has none
	// (zstd_init_dstream without a dictionary).
	ErrDictionary = errors.New("zstd frame names a dictionary; the kernel has none")
	// ErrCheckType: an xz check other than none or CRC32. lib/xz is built
	// without XZ_USE_CRC64 and XZ_DEC_ANY_CHECK in the kernel, so
	// dec_stream_header returns XZ_OPTIONS_ERROR for CRC64 and SHA-256.
	ErrCheckType = errors.New("xz check type the kernel refuses (only none and CRC32)")
	// ErrFilterChain: an xz filter chain lib/xz refuses: more than one
	// filter before LZMA2, or a BCJ start offset (dec_block_header:
	// "We don't support custom start offset").
	ErrFilterChain = errors.New("xz filter chain the kernel refuses")
)
