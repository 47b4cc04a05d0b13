package fuzzyhash

import (
	"math/rand/v2"
	"testing"

	"github.com/glaslos/ssdeep"
)

// TestDigestMatchesGoLibrary cross-checks New against the pinned Go
// library, github.com/glaslos/ssdeep v1.0.0, which the package replaced:
// the library panics on a second Sum, overflows past 3 GiB and panics on
// crafted inputs, so it only serves here as a second reference. Its Force
// switch, which makes it hash inputs of 4096 bytes or less as libfuzzy
// does, is set before any hashing starts and never changed while hashes run.
func TestDigestMatchesGoLibrary(t *testing.T) {
	ssdeep.Force = true
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 7, 64, 4095, 4096, 4097, 10_000, 100_000, 1 << 20}
	for _, size := range sizes {
		for _, kind := range []string{"random", "text", "zeros"} {
			data := make([]byte, size)
			switch kind {
			case "random":
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
			case "text":
				for i := range data {
					data[i] = "binwatch collects hashes\n"[i%25]
				}
			}
			want, err := ssdeep.FuzzyBytes(data)
			if err != nil {
				t.Fatalf("library on %d %s bytes: %v", size, kind, err)
			}
			h := New()
			h.Write(data)
			got, err := h.Digest()
			if err != nil {
				t.Fatalf("Digest of %d %s bytes: %v", size, kind, err)
			}
			if got != want {
				t.Errorf("Digest of %d %s bytes = %s, library gives %s", size, kind, got, want)
			}
		}
	}
}
