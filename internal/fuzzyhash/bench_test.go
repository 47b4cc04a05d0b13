package fuzzyhash

import (
	"fmt"
	"testing"
)

// BenchmarkHash hashes random input in 64 KiB writes, as the collector
// feeds the hash from its read buffer.
func BenchmarkHash(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		data := splitMix64(1, size)
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				h := New()
				for rest := data; len(rest) > 0; {
					n := min(64<<10, len(rest))
					h.Write(rest[:n])
					rest = rest[n:]
				}
				if _, err := h.Digest(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompare compares the digest pairs of testdata/scores.tsv, most
// of them digests of real executables.
func BenchmarkCompare(b *testing.B) {
	rows := readTSV(b, "scores.tsv", "digest_a", "digest_b", "score", "note")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		row := rows[i%len(rows)]
		if _, err := Compare(row[0], row[1]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCompareDigests compares parsed digests, as a caller that keeps
// them parsed does.
func BenchmarkCompareDigests(b *testing.B) {
	rows := readTSV(b, "scores.tsv", "digest_a", "digest_b", "score", "note")
	pairs := make([][2]Digest, len(rows))
	for i, row := range rows {
		for j := range 2 {
			d, err := ParseDigest(row[j])
			if err != nil {
				b.Fatal(err)
			}
			pairs[i][j] = d
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pair := pairs[i%len(pairs)]
		CompareDigests(pair[0], pair[1])
		i++
	}
}
