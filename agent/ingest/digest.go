package ingest

import (
	"strconv"
	"strings"
)

// Shape of an ssdeep digest "blocksize:part1:part2" as libfuzzy writes it.
const (
	// MaxSSDeepPartLen is libfuzzy's SPAMSUM_LENGTH: neither part of a
	// digest is longer, even when the second part is not truncated.
	MaxSSDeepPartLen = 64
	// MinSSDeepBlockSize is libfuzzy's smallest block size. Every block
	// size is it times a power of two.
	MinSSDeepBlockSize = 3
	// MaxSSDeepBlockSizeShift bounds that power: libfuzzy has 31 block
	// sizes, 3<<0 to 3<<30.
	MaxSSDeepBlockSizeShift = 30
)

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// checkSSDeep returns why s is not a digest that libfuzzy could have
// written, or "" when it is one. The block size is decimal without a sign
// or leading zeros, and both parts use the base64 alphabet. A file name
// suffix (",name" as the ssdeep tool prints) is not part of a digest.
func checkSSDeep(s string) string {
	size, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "want blocksize:part1:part2"
	}
	part1, part2, ok := strings.Cut(rest, ":")
	if !ok {
		return "want blocksize:part1:part2"
	}
	if size == "" || size[0] == '0' || size[0] == '+' || size[0] == '-' {
		return "block size is not a positive decimal number"
	}
	n, err := strconv.ParseUint(size, 10, 64)
	if err != nil {
		return "block size is not a positive decimal number"
	}
	if !isBlockSize(n) {
		return "block size is not 3 times a power of two up to 3<<30"
	}
	for _, part := range []string{part1, part2} {
		if len(part) > MaxSSDeepPartLen {
			return "part longer than " + strconv.Itoa(MaxSSDeepPartLen) + " characters"
		}
		for i := 0; i < len(part); i++ {
			if !isBase64(part[i]) {
				return "part contains a character outside the base64 alphabet"
			}
		}
	}
	return ""
}

func isBlockSize(n uint64) bool {
	for shift := 0; shift <= MaxSSDeepBlockSizeShift; shift++ {
		if n == MinSSDeepBlockSize<<shift {
			return true
		}
	}
	return false
}
