package fuzzyhash

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// seedDigests returns digests for fuzz corpora: pairs from
// testdata/scores.tsv and the rule cases, followed by invalid forms.
func seedDigests(f *testing.F) []string {
	rows := readTSV(f, "scores.tsv", "digest_a", "digest_b", "score", "note")
	var seeds []string
	for i := 0; i < len(rows); i += 10 {
		seeds = append(seeds, rows[i][0], rows[i][1])
	}
	for _, c := range ruleCases {
		seeds = append(seeds, c.a, c.b)
	}
	return append(seeds,
		"3::", "6::",
		"3:"+strings.Repeat("a", 65)+":b", "3:a:b",
		`3:abcdefgh:abc,"file"`, "3:abcdefgh:abc",
		"18446744073709551615:abcdefgh:", "9223372036854775808:abcdefgh:",
	)
}

func FuzzCompare(f *testing.F) {
	seeds := seedDigests(f)
	for i := 0; i+1 < len(seeds); i += 2 {
		f.Add(seeds[i], seeds[i+1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, errAB := Compare(a, b)
		ba, errBA := Compare(b, a)
		_, errA := ParseDigest(a)
		_, errB := ParseDigest(b)
		valid := errA == nil && errB == nil

		if valid != (errAB == nil) || valid != (errBA == nil) {
			t.Fatalf("Compare(%q, %q) error %v, Compare(%q, %q) error %v, want errors exactly when a digest is invalid (%v, %v)",
				a, b, errAB, b, a, errBA, errA, errB)
		}
		if !valid {
			if !errors.Is(errAB, ErrInvalidDigest) || !errors.Is(errBA, ErrInvalidDigest) {
				t.Fatalf("Compare errors %v and %v, want errors wrapping ErrInvalidDigest", errAB, errBA)
			}
			if ab != 0 || ba != 0 {
				t.Fatalf("Compare(%q, %q) = %d, %d with errors, want 0", a, b, ab, ba)
			}
			return
		}
		if ab != ba {
			t.Fatalf("Compare(%q, %q) = %d, Compare(%q, %q) = %d, want equal scores", a, b, ab, b, a, ba)
		}
		if ab < 0 || ab > 100 {
			t.Fatalf("Compare(%q, %q) = %d, want 0 to 100", a, b, ab)
		}
		for _, d := range []string{a, b} {
			if self, err := Compare(d, d); self != 100 || err != nil {
				t.Fatalf("Compare(%q, %q) = %d, %v, want 100, nil", d, d, self, err)
			}
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	for _, seed := range seedDigests(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, a string) {
		d, err := ParseDigest(a)
		if err != nil {
			if !errors.Is(err, ErrInvalidDigest) {
				t.Fatalf("ParseDigest(%q) error %v, want one wrapping ErrInvalidDigest", a, err)
			}
			if d != (Digest{}) {
				t.Fatalf("ParseDigest(%q) = %q with an error, want the zero Digest", a, d)
			}
			return
		}
		// The accepted form has no alternatives, so it reads back as is.
		if got := d.String(); got != a {
			t.Fatalf("ParseDigest(%q).String() = %q, want the input", a, got)
		}
		if d.BlockSize() == 0 || len(d.Part1()) > spamSumLength || len(d.Part2()) > spamSumLength {
			t.Fatalf("ParseDigest(%q) = block size %d, parts of %d and %d characters, want a valid digest",
				a, d.BlockSize(), len(d.Part1()), len(d.Part2()))
		}
		if got := CompareDigests(d, d); got != 100 {
			t.Fatalf("CompareDigests(%q, %q) = %d, want 100", d, d, got)
		}
	})
}

func FuzzDigest(f *testing.F) {
	f.Add([]byte{}, uint16(0))
	f.Add(splitMix64(1, 5000), uint16(100))
	f.Add(bytes.Repeat(allLevelsWindow, 80), uint16(300))
	f.Add(append(splitMix64(2, 3000), make([]byte, 9)...), uint16(2999))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		at := min(int(split), len(data))
		whole := digestOf(t, data)
		h := New()
		h.Write(data[:at])
		h.Write(data[at:])
		if got := mustDigest(t, h); got != whole {
			t.Fatalf("digest written in two parts split at %d = %q, want %q", at, got, whole)
		}
		d, err := ParseDigest(whole)
		if err != nil {
			t.Fatalf("ParseDigest(Digest()) error: %v", err)
		}
		if len(d.Part2()) > spamSumLength/2 {
			t.Fatalf("digest %q: second part has %d characters, want at most %d", whole, len(d.Part2()), spamSumLength/2)
		}
		if got := CompareDigests(d, d); got != 100 {
			t.Fatalf("CompareDigests(%q, %q) = %d, want 100", d, d, got)
		}
	})
}
