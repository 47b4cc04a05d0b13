package fuzzyhash

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readTSV returns the rows of a tab-separated file in testdata after
// checking its header.
func readTSV(t testing.TB, name string, header ...string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var rows [][]string
	scanner := bufio.NewScanner(f)
	for line := 1; scanner.Scan(); line++ {
		fields := strings.Split(scanner.Text(), "\t")
		if len(fields) != len(header) {
			t.Fatalf("%s:%d: %d fields, want %d", name, line, len(fields), len(header))
		}
		if line == 1 {
			if got, want := strings.Join(fields, ","), strings.Join(header, ","); got != want {
				t.Fatalf("%s: header %q, want %q", name, got, want)
			}
			continue
		}
		rows = append(rows, fields)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no rows", name)
	}
	return rows
}

// splitMix64 returns n bytes of the SplitMix64 stream seeded with seed,
// each output as 8 little-endian bytes.
func splitMix64(seed uint64, n int) []byte {
	out := make([]byte, 0, n+8)
	x := seed
	for len(out) < n {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		z ^= z >> 31
		out = binary.LittleEndian.AppendUint64(out, z)
	}
	return out[:n]
}

// vectorInput builds the input of a digests.tsv row: size bytes of the
// given kind, the last zeroTail of them 0x00.
func vectorInput(t testing.TB, row []string) []byte {
	t.Helper()
	param1, err1 := strconv.ParseUint(row[1], 10, 64)
	param2, err2 := strconv.ParseUint(row[2], 10, 64)
	size, err3 := strconv.Atoi(row[3])
	zeroTail, err4 := strconv.Atoi(row[4])
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			t.Fatalf("row %q: %v", row, err)
		}
	}
	if zeroTail > size {
		t.Fatalf("row %q: zero_tail larger than size", row)
	}

	n := size - zeroTail
	var data []byte
	switch row[0] {
	case "splitmix64":
		data = splitMix64(param1, n)
	case "affine":
		data = make([]byte, n)
		for i := range data {
			data[i] = byte(param1*uint64(i) + param2)
		}
	case "fill":
		data = make([]byte, n)
		for i := range data {
			data[i] = byte(param1)
		}
	default:
		t.Fatalf("row %q: unknown kind %q", row, row[0])
	}
	return append(data, make([]byte, zeroTail)...)
}

// allLevelsWindow is a window of 7 bytes whose rolling sum is 3<<30 - 1, so
// its last byte is a reset point of every block size. Input that repeats it
// fills all 31 levels within a few hundred bytes.
var allLevelsWindow = []byte{0x02, 0x1d, 0x5d, 0x5a, 0xb9, 0x5d, 0xc5}

// digestInChunks hashes data with Write calls of random lengths, up to
// maxChunk bytes each.
func digestInChunks(t testing.TB, data []byte, rng *rand.Rand, maxChunk int) string {
	t.Helper()
	h := New()
	for rest := data; len(rest) > 0; {
		n := min(1+rng.IntN(maxChunk), len(rest))
		if written, err := h.Write(rest[:n]); written != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v, want %d, nil", n, written, err, n)
		}
		rest = rest[n:]
	}
	digest, err := h.Digest()
	if err != nil {
		t.Fatalf("Digest() error: %v", err)
	}
	return digest
}

// digestOf hashes data in one Write.
func digestOf(t testing.TB, data []byte) string {
	t.Helper()
	h := New()
	h.Write(data)
	digest, err := h.Digest()
	if err != nil {
		t.Fatalf("Digest() error: %v", err)
	}
	return digest
}
