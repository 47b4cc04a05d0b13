// Package fuzzyhash computes ssdeep digests (context-triggered piecewise
// hashes) and compares them. Digests and scores are the ones libfuzzy 2.14.1,
// the reference implementation behind Debian's ssdeep, produces with
// fuzzy_hash_buf and fuzzy_compare.
//
// The package does not use github.com/glaslos/ssdeep v1.0.0. That
// library's Sum encodes its state in place, so a second Sum panics. It also
// multiplies a block size by 64 in 32 bits. Past 3 GiB of input it may
// therefore drop block sizes the digest still needs, and 3.5 GiB of crafted
// input makes it index past its last block and panic. Its Distance departs
// from fuzzy_compare as [CompareDigests] describes.
package fuzzyhash

import "errors"

// MaxInputSize is the largest input, in bytes, that has a digest: 192 GiB,
// the largest block size (3<<30) times 64 characters. libfuzzy 2.14.1 has
// the same limit (SSDEEP_TOTAL_SIZE_MAX) and fails with EOVERFLOW past it.
// Past it, [Hash.Write] stops hashing and [Hash.Digest] returns an error
// wrapping [ErrInputTooLarge].
//
// NOTE: of inputs above 117 MB, only one crafted sparse file of 3.5 GiB was
// compared with libfuzzy (TestDigestMatchesSSDeepLarge with
// FUZZYHASH_LARGE=1).
const MaxInputSize = (minBlockSize << (numLevels - 1)) * spamSumLength

// ErrNoDigest is wrapped by every error of [Hash.Digest].
var ErrNoDigest = errors.New("fuzzyhash: no digest")

// ErrInputTooLarge is wrapped, together with [ErrNoDigest], by the error of
// [Hash.Digest] when more than [MaxInputSize] bytes were written.
var ErrInputTooLarge = errors.New("input exceeds the maximum size")
