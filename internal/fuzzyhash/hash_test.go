package fuzzyhash

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDigestVectors(t *testing.T) {
	rows := readTSV(t, "digests.tsv", "kind", "param1", "param2", "size", "zero_tail", "digest")
	for i, row := range rows {
		name := strings.Join(row[:5], "/")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			data := vectorInput(t, row)
			want := row[5]
			if got := digestOf(t, data); got != want {
				t.Errorf("digest in one Write = %q, want %q", got, want)
			}
			if got := digestInChunks(t, data, rng, 5000); got != want {
				t.Errorf("digest in chunks = %q, want %q", got, want)
			}
		})
	}
}

func TestDigestChunkSizes(t *testing.T) {
	data := splitMix64(7, 300_000)
	// Runs of zeros stop reset points, so levels fill unevenly.
	for i := 100_000; i < 150_000; i++ {
		data[i] = 0
	}
	want := digestOf(t, data)
	for _, size := range []int{1, 2, 7, 63, 4096, 65536} {
		h := New()
		for rest := data; len(rest) > 0; {
			n := min(size, len(rest))
			h.Write(rest[:n])
			rest = rest[n:]
		}
		if got, err := h.Digest(); got != want || err != nil {
			t.Errorf("Digest() after %d-byte writes = %q, %v, want %q, nil", size, got, err, want)
		}
	}
}

func TestDigestRepeatable(t *testing.T) {
	first := splitMix64(11, 20_000)
	second := splitMix64(12, 30_000)

	h := New()
	h.Write(first)
	d1, err1 := h.Digest()
	d2, err2 := h.Digest()
	if err1 != nil || err2 != nil || d1 != d2 {
		t.Fatalf("Digest() twice = %q, %v then %q, %v, want equal digests", d1, err1, d2, err2)
	}
	if want := digestOf(t, first); d1 != want {
		t.Errorf("Digest() = %q, want %q", d1, want)
	}

	h.Write(second)
	got, err := h.Digest()
	want := digestOf(t, append(append([]byte{}, first...), second...))
	if got != want || err != nil {
		t.Errorf("Digest() after writing on = %q, %v, want %q, nil", got, err, want)
	}
}

func TestDigestZeroValueAndReset(t *testing.T) {
	var h Hash
	if got, err := h.Digest(); got != "3::" || err != nil {
		t.Errorf("zero Hash: Digest() = %q, %v, want %q, nil", got, err, "3::")
	}

	data := splitMix64(3, 10_000)
	var z Hash
	z.Write(data)
	if got, want := mustDigest(t, &z), digestOf(t, data); got != want {
		t.Errorf("zero Hash after Write: Digest() = %q, want %q", got, want)
	}

	z.Reset()
	if got, err := z.Digest(); got != "3::" || err != nil {
		t.Errorf("Digest() after Reset = %q, %v, want %q, nil", got, err, "3::")
	}
}

func mustDigest(t *testing.T, h *Hash) string {
	t.Helper()
	d, err := h.Digest()
	if err != nil {
		t.Fatalf("Digest() error: %v", err)
	}
	return d
}

func TestDigestAllLevels(t *testing.T) {
	var r rollingHash
	for _, c := range allLevelsWindow {
		r.add(c)
	}
	if got, want := r.sum(), uint32(3<<30-1); got != want {
		t.Fatalf("rolling sum of allLevelsWindow = %#x, want %#x", got, want)
	}

	h := New()
	for range spamSumLength + 1 {
		h.Write(allLevelsWindow)
	}
	if h.end != numLevels {
		t.Errorf("levels started = %d, want %d", h.end, numLevels)
	}
	if !h.hasLastLevel {
		t.Error("hash above the largest block size not started")
	}
	for i := range numLevels {
		if l := &h.levels[i]; l.n != spamSumLength-1 || l.lastChar == 0 {
			t.Errorf("level %d: %d characters, last character %q, want %d and a character",
				i, l.n, l.lastChar, spamSumLength-1)
		}
	}
}

func TestDigestPastMaxInputSize(t *testing.T) {
	tests := []struct {
		name    string
		written uint64 // bytes counted before the final Write
		write   int
		wantErr bool
	}{
		{"at the limit", MaxInputSize - 10, 10, false},
		{"one byte past", MaxInputSize - 10, 11, true},
		{"already past", MaxInputSize + 1, 1, true},
		{"empty write past", MaxInputSize + 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New()
			// Counting the bytes is all that depends on the size, and
			// writing 192 GiB would take minutes.
			h.total = tt.written
			p := make([]byte, tt.write)
			if n, err := h.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v, want %d, nil", len(p), n, err, len(p))
			}
			digest, err := h.Digest()
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Digest() error: %v", err)
				}
				return
			}
			if digest != "" || !errors.Is(err, ErrNoDigest) || !errors.Is(err, ErrInputTooLarge) {
				t.Errorf("Digest() = %q, %v, want an error wrapping ErrNoDigest and ErrInputTooLarge", digest, err)
			}
		})
	}
}

func TestUpdateLanes(t *testing.T) {
	for hash := range 64 {
		for c := range 256 {
			want := byte((hash*pieceHashPrime ^ c) & 63)
			for lane := range lanesCount {
				var lanes laneHashes
				lanes.set(lane, byte(hash))
				// Neighbouring lanes hold 63, the largest hash, to catch carries.
				for other := range lanesCount {
					if other != lane {
						lanes.set(other, 63)
					}
				}
				lanes[0] = updateLanes(lanes[0], uint64(c&63)*lanesOnes)
				if got := lanes.get(lane); got != want {
					t.Fatalf("updateLanes: lane %d with hash %d after byte %d = %d, want %d", lane, hash, c, got, want)
				}
			}
		}
	}
}
