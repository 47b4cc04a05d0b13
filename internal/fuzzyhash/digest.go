package fuzzyhash

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidDigest is wrapped by the errors of [ParseDigest] and [Compare]
// for a string that is not a digest in the form this package accepts.
var ErrInvalidDigest = errors.New("invalid ssdeep digest")

// Digest is a parsed ssdeep digest. The zero Digest is not a valid digest.
type Digest struct {
	blockSize uint64
	part1     string
	part2     string
}

// BlockSize returns the block size of the first part. The second part has
// twice this block size.
func (d Digest) BlockSize() uint64 { return d.blockSize }

// Part1 returns the characters for block size BlockSize.
func (d Digest) Part1() string { return d.part1 }

// Part2 returns the characters for block size 2*BlockSize.
func (d Digest) Part2() string { return d.part2 }

// String returns the digest as "blocksize:part1:part2", the form that
// ParseDigest accepts.
func (d Digest) String() string {
	return strconv.FormatUint(d.blockSize, 10) + ":" + d.part1 + ":" + d.part2
}

// ParseDigest parses a digest "blocksize:part1:part2" as libfuzzy writes
// it. The block size is a decimal number without sign or leading zeros, 3<<n
// for n from 0 to 30. Each part has at most 64 characters from the base64
// alphabet "A-Za-z0-9+/", and may be empty.
//
// This is stricter than fuzzy_compare, which reads any unsigned number as
// the block size, takes any bytes as characters, drops a trailing
// ",filename", and limits the parts to 64 characters only after removing
// runs. Those forms are rejected here because libfuzzy never writes them.
// A second part of 33 to 64 characters, which libfuzzy writes only when
// asked not to truncate, is accepted and compared like fuzzy_compare does.
func ParseDigest(s string) (Digest, error) {
	sizeText, parts, ok := strings.Cut(s, ":")
	if !ok {
		return Digest{}, invalidDigest(s, "missing ':' after the block size")
	}
	part1, part2, ok := strings.Cut(parts, ":")
	if !ok {
		return Digest{}, invalidDigest(s, "missing ':' between the two parts")
	}
	size, err := parseBlockSize(sizeText)
	if err != nil {
		return Digest{}, invalidDigest(s, err.Error())
	}
	if err := checkPart(part1); err != nil {
		return Digest{}, invalidDigest(s, "first part: "+err.Error())
	}
	if err := checkPart(part2); err != nil {
		return Digest{}, invalidDigest(s, "second part: "+err.Error())
	}
	return Digest{blockSize: size, part1: part1, part2: part2}, nil
}

// maxQuotedDigest is how much of an invalid digest an error message quotes.
const maxQuotedDigest = 200

func invalidDigest(s, reason string) error {
	if len(s) > maxQuotedDigest {
		s = s[:maxQuotedDigest] + "..."
	}
	return fmt.Errorf("fuzzyhash: parse digest %q: %w: %s", s, ErrInvalidDigest, reason)
}

func parseBlockSize(text string) (uint64, error) {
	if text == "" || text[0] < '1' || text[0] > '9' {
		return 0, fmt.Errorf("block size %q is not a decimal number without sign or leading zeros", text)
	}
	size, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("block size %q: %w", text, err)
	}
	for i := range numLevels {
		if size == blockSize(i) {
			return size, nil
		}
	}
	return 0, fmt.Errorf("block size %d is not 3<<n for n from 0 to %d", size, numLevels-1)
}

func checkPart(part string) error {
	if len(part) > spamSumLength {
		return fmt.Errorf("%d characters, more than %d", len(part), spamSumLength)
	}
	for i := 0; i < len(part); i++ {
		if base64Index[part[i]] < 0 {
			return fmt.Errorf("byte %q at offset %d is not in the base64 alphabet", part[i], i)
		}
	}
	return nil
}

// base64Index maps a byte to its position in base64Alphabet, or -1.
var base64Index = func() (index [256]int8) {
	for i := range index {
		index[i] = -1
	}
	for i := 0; i < len(base64Alphabet); i++ {
		index[base64Alphabet[i]] = int8(i)
	}
	return index
}()
