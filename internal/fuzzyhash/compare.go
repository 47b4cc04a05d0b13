package fuzzyhash

import (
	"bytes"
	"math/bits"
)

// Compare returns the similarity of two digests, from 0 (no match) to 100,
// equal to fuzzy_compare of libfuzzy 2.14.1. Both digests are validated
// with ParseDigest first, and an invalid one returns an error wrapping
// ErrInvalidDigest. fuzzy_compare instead returns 0 without reading the
// parts when the block sizes are incompatible. See [CompareDigests] for
// the rules.
func Compare(a, b string) (int, error) {
	da, err := ParseDigest(a)
	if err != nil {
		return 0, err
	}
	db, err := ParseDigest(b)
	if err != nil {
		return 0, err
	}
	return CompareDigests(da, db), nil
}

// CompareDigests returns the similarity of two digests from 0 to 100 by the
// rules of fuzzy_compare in libfuzzy 2.14.1:
//
//   - Block sizes must be equal or one twice the other, otherwise the score
//     is 0. Equal block sizes score the higher of the two part pairs. With
//     doubled sizes, the second part of the smaller digest is scored
//     against the first part of the larger one.
//   - Runs of more than three identical characters are cut to three.
//   - Digests with equal block sizes and equal parts after that score 100,
//     even when the parts are too short to score.
//   - Two parts score 0 unless both have at least 7 characters and share a
//     substring of 7 characters.
//   - Otherwise the score is 100 - (100 * (d*64 / (n1+n2))) / 64 in integer
//     arithmetic, where n1 and n2 are the part lengths and d is their edit
//     distance with insertion and deletion costing 1 and substitution 2.
//   - For block sizes below 45 the score is at most blockSize/3 * min(n1, n2),
//     so that matches between digests of small inputs are not overstated.
//
// github.com/glaslos/ssdeep v1.0.0's Distance keeps runs, returns 100 when
// only the first parts are equal, lacks the cap for small block sizes and
// panics on a part of more than 64 characters.
//
// The score is symmetric. The zero Digest scores 0 against any digest.
func CompareDigests(a, b Digest) int {
	if a.blockSize == 0 || b.blockSize == 0 {
		return 0
	}
	if a.blockSize != b.blockSize && a.blockSize != 2*b.blockSize && b.blockSize != 2*a.blockSize {
		return 0
	}

	var bufA1, bufA2, bufB1, bufB2 [spamSumLength]byte
	a1 := eliminateRuns(bufA1[:0], a.part1)
	a2 := eliminateRuns(bufA2[:0], a.part2)
	b1 := eliminateRuns(bufB1[:0], b.part1)
	b2 := eliminateRuns(bufB2[:0], b.part2)

	switch {
	case a.blockSize == b.blockSize:
		if bytes.Equal(a1, b1) && bytes.Equal(a2, b2) {
			return 100
		}
		return max(scoreParts(a1, b1, a.blockSize), scoreParts(a2, b2, 2*a.blockSize))
	case 2*a.blockSize == b.blockSize:
		return scoreParts(b1, a2, b.blockSize)
	default:
		return scoreParts(a1, b2, a.blockSize)
	}
}

// eliminateRuns appends part to dst without the fourth and later characters
// of each run of identical characters.
func eliminateRuns(dst []byte, part string) []byte {
	for i := 0; i < len(part); i++ {
		c := part[i]
		n := len(dst)
		if n >= 3 && dst[n-1] == c && dst[n-2] == c && dst[n-3] == c {
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// scoreParts scores two parts of the given block size. Both have at most
// spamSumLength characters from base64Alphabet.
func scoreParts(s1, s2 []byte, blockSize uint64) int {
	if len(s1) < windowSize || len(s2) < windowSize {
		return 0
	}
	if !hasCommonSubstring(s1, s2) {
		return 0
	}
	total := len(s1) + len(s2)
	distance := total - 2*lcsLength(s1, s2)
	score := 100 - 100*(distance*spamSumLength/total)/spamSumLength

	// libfuzzy skips the cap from block size 45 on, where it is at least
	// 15 * 7 = 105 and so has no effect.
	limit := blockSize / minBlockSize * uint64(min(len(s1), len(s2)))
	if uint64(score) > limit {
		return int(limit)
	}
	return score
}

func hasCommonSubstring(s1, s2 []byte) bool {
	for i := 0; i+windowSize <= len(s1); i++ {
		if bytes.Contains(s2, s1[i:i+windowSize]) {
			return true
		}
	}
	return false
}

// lcsLength returns the length of the longest common subsequence of s1 and
// s2. With insertion and deletion costing 1 and substitution 2, the edit
// distance is len(s1) + len(s2) - 2*lcsLength(s1, s2), because a
// substitution never costs less than a deletion and an insertion.
//
// It runs the bit-vector LCS algorithm with one 64-bit word: after each
// character of s2, the zero bits among the low len(s1) bits of v count the
// LCS of s1 and the part of s2 read so far. s1 must have at most 64
// characters, all from base64Alphabet.
func lcsLength(s1, s2 []byte) int {
	var matches [64]uint64
	for i, c := range s1 {
		matches[base64Index[c]] |= 1 << i
	}
	v := ^uint64(0)
	for _, c := range s2 {
		u := v & matches[base64Index[c]]
		v = (v + u) | (v - u)
	}
	used := uint64(1)<<len(s1) - 1
	return bits.OnesCount64(^v & used)
}
