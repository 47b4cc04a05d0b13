package fuzzyhash

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestCompareScores(t *testing.T) {
	rows := readTSV(t, "scores.tsv", "digest_a", "digest_b", "score", "note")
	for i, row := range rows {
		a, b := row[0], row[1]
		want, err := strconv.Atoi(row[2])
		if err != nil {
			t.Fatalf("row %d: score %q: %v", i+2, row[2], err)
		}
		got, err := Compare(a, b)
		if got != want || err != nil {
			t.Errorf("row %d (%s): Compare(%q, %q) = %d, %v, want %d, nil", i+2, row[3], a, b, got, err, want)
		}
		got, err = Compare(b, a)
		if got != want || err != nil {
			t.Errorf("row %d (%s): Compare(%q, %q) = %d, %v, want %d, nil", i+2, row[3], b, a, got, err, want)
		}
	}
}

// ruleCases show one rule of fuzzy_compare each. The reference test checks
// the same cases against the ssdeep binary.
var ruleCases = []struct {
	name string
	a, b string
	want int
}{
	{"identical", "96:abcdefghijklmnop:abcdefgh", "96:abcdefghijklmnop:abcdefgh", 100},
	{"identical too short to score", "3:ab:c", "3:ab:c", 100},
	{"identical empty", "3::", "3::", 100},
	{"identical after run elimination", "96:abcddddddefghij:xyz", "96:abcdddefghij:xyz", 100},
	{"first parts equal only", "96:abcdefghijklmnop:ABCDEFGHIJ", "96:abcdefghijklmnop:QRSTUVWXYZ", 100},
	{"first parts equal short second parts", "96:abcdefghijklmnop:ABC", "96:abcdefghijklmnop:XYZ", 100},
	{"equal short first parts", "6:abcdef:ghijklm", "6:abcdef:zyxwvut", 0},
	{"runs make parts short", "12:QQQQQQQQQQQQ:QQQQQQ", "12:QQQQQQQQQQQQ:AAAAAA", 0},
	{"no common 7 characters", "96:abcdefXghijkl:", "96:abcdefYghijkl:", 0},
	{"one substitution", "96:abcdefghijklmnopqrstuvwxyz:", "96:abcdefghijklmXopqrstuvwxyz:", 97},
	{"one insertion", "96:abcdefghijklmnopqrstuvwxyz:", "96:abcdefghijklmXnopqrstuvwxyz:", 99},
	{"second parts match", "96:ABCDEFGHIJKLMN:abcdefghijklmnop", "96:NMLKJIHGFEDCBA:abcdefghijklmnoq", 94},
	{"doubled block size", "48:xyz:abcdefghijklmnop", "96:abcdefghijklmnoq:xyz", 94},
	{"doubled block size wrong parts", "48:abcdefghijklmnop:xyz", "96:abcdefghijklmnop:xyz", 0},
	{"block size four times", "6:abc:def", "24:abc:def", 0},
	{"cap at block size 3", "3:abcdefghij:", "3:abcdefghiX:", 10},
	{"cap at block size 6", "6:abcdefghijk:", "6:abcdefghijX:", 22},
	{"cap for the second part", "3:X:abcdefghij", "3:Y:abcdefghiX", 20},
	{"no cap at block size 48", "48:abcdefghij:", "48:abcdefghiX:", 91},
}

func TestCompareRules(t *testing.T) {
	for _, tt := range ruleCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Compare(tt.a, tt.b)
			if got != tt.want || err != nil {
				t.Errorf("Compare(%q, %q) = %d, %v, want %d, nil", tt.a, tt.b, got, err, tt.want)
			}
			got, err = Compare(tt.b, tt.a)
			if got != tt.want || err != nil {
				t.Errorf("Compare(%q, %q) = %d, %v, want %d, nil", tt.b, tt.a, got, err, tt.want)
			}
		})
	}
}

func TestCompareInvalid(t *testing.T) {
	valid := "96:abcdefghijklmnop:abcdefgh"
	long := strings.Repeat("a", 65)
	for _, bad := range []string{
		"",
		"96:" + long + ":abc",
		"96:abc:" + long,
		"96:abc",
		"5:abcdefghijklmnop:abc",
	} {
		for _, args := range [][2]string{{valid, bad}, {bad, valid}} {
			got, err := Compare(args[0], args[1])
			if got != 0 || !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("Compare(%q, %q) = %d, %v, want 0 and an error wrapping ErrInvalidDigest",
					args[0], args[1], got, err)
			}
		}
	}
}

func TestCompareZeroDigest(t *testing.T) {
	d, err := ParseDigest("3::")
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]Digest{{{}, {}}, {{}, d}, {d, {}}} {
		if got := CompareDigests(pair[0], pair[1]); got != 0 {
			t.Errorf("CompareDigests(%q, %q) = %d, want 0", pair[0], pair[1], got)
		}
	}
}

func TestParseDigest(t *testing.T) {
	valid := []struct {
		in           string
		blockSize    uint64
		part1, part2 string
	}{
		{"3::", 3, "", ""},
		{"3:a:", 3, "a", ""},
		{"6:ab+/09:Z", 6, "ab+/09", "Z"},
		{"3221225472:x:y", 3 << 30, "x", "y"},
		{"12:" + strings.Repeat("A", 64) + ":" + strings.Repeat("b", 64), 12, strings.Repeat("A", 64), strings.Repeat("b", 64)},
	}
	for _, tt := range valid {
		d, err := ParseDigest(tt.in)
		if err != nil {
			t.Errorf("ParseDigest(%q) error: %v", tt.in, err)
			continue
		}
		if d.BlockSize() != tt.blockSize || d.Part1() != tt.part1 || d.Part2() != tt.part2 {
			t.Errorf("ParseDigest(%q) = %d, %q, %q, want %d, %q, %q",
				tt.in, d.BlockSize(), d.Part1(), d.Part2(), tt.blockSize, tt.part1, tt.part2)
		}
		if got := d.String(); got != tt.in {
			t.Errorf("ParseDigest(%q).String() = %q, want the input", tt.in, got)
		}
	}

	invalid := []struct {
		name, in string
	}{
		{"empty", ""},
		{"no colon", "3"},
		{"one colon", "3:abc"},
		{"three colons", "3:abc:def:ghi"},
		{"file name", `3:abc:def,"file"`},
		{"empty block size", ":abc:def"},
		{"sign", "+3:abc:def"},
		{"negative", "-3:abc:def"},
		{"leading zero", "03:abc:def"},
		{"zero", "0:abc:def"},
		{"not 3<<n", "9:abc:def"},
		{"odd", "5:abc:def"},
		{"above 3<<30", "6442450944:abc:def"},
		{"overflow", "99999999999999999999999:abc:def"},
		{"space", " 3:abc:def"},
		{"trailing space", "3:abc:def "},
		{"character outside base64", "3:ab=c:def"},
		{"newline", "3:abc:de\nf"},
		{"non-ASCII", "3:abcé:def"},
		{"first part 65", "3:" + strings.Repeat("a", 65) + ":def"},
		{"second part 65", "3:abc:" + strings.Repeat("a", 65)},
		{"runs past 64", "3:" + strings.Repeat("a", 100) + ":def"},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDigest(tt.in)
			if !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("ParseDigest(%q) = %q, %v, want an error wrapping ErrInvalidDigest", tt.in, d, err)
			}
			if d != (Digest{}) {
				t.Errorf("ParseDigest(%q) = %q with its error, want the zero Digest", tt.in, d)
			}
		})
	}
}

func TestParseDigestErrorQuotesInput(t *testing.T) {
	_, err := ParseDigest("5:abc:def")
	if err == nil || !strings.Contains(err.Error(), `"5:abc:def"`) || !strings.Contains(err.Error(), "block size 5") {
		t.Errorf("ParseDigest error = %v, want one naming the digest and its block size", err)
	}
	_, err = ParseDigest("3:" + strings.Repeat("a", 10_000) + ":")
	if err == nil || len(err.Error()) > 2*maxQuotedDigest+200 {
		t.Errorf("ParseDigest error for a 10 kB string has %d bytes, want it shortened", len(err.Error()))
	}
}

func TestEliminateRuns(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"aaa", "aaa"},
		{"aaaa", "aaa"},
		{"aaaaaaaabaaaa", "aaabaaa"},
		{"abbbbcccccd", "abbbcccd"},
		{"ababababab", "ababababab"},
	}
	for _, tt := range tests {
		if got := string(eliminateRuns(nil, tt.in)); got != tt.want {
			t.Errorf("eliminateRuns(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// lcsLengthTable is the textbook dynamic program for lcsLength.
func lcsLengthTable(s1, s2 []byte) int {
	prev := make([]int, len(s2)+1)
	cur := make([]int, len(s2)+1)
	for i := range s1 {
		for j := range s2 {
			switch {
			case s1[i] == s2[j]:
				cur[j+1] = prev[j] + 1
			default:
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(s2)]
}

func TestLCSLength(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		// Small alphabets give long common subsequences.
		alphabet := base64Alphabet[:1+rng.IntN(len(base64Alphabet))]
		s1 := randomPart(rng, alphabet, rng.IntN(spamSumLength+1))
		s2 := randomPart(rng, alphabet, rng.IntN(spamSumLength+1))
		if got, want := lcsLength(s1, s2), lcsLengthTable(s1, s2); got != want {
			t.Fatalf("lcsLength(%q, %q) = %d, want %d", s1, s2, got, want)
		}
	}
}

func randomPart(rng *rand.Rand, alphabet string, n int) []byte {
	part := make([]byte, n)
	for i := range part {
		part[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return part
}
