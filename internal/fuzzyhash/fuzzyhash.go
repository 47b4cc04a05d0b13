// Package fuzzyhash computes ssdeep digests and compares them with the
// rules of libfuzzy, the reference implementation.
package fuzzyhash

import (
	"errors"
	"hash"

	"github.com/glaslos/ssdeep"
)

// MaxInputSize is the largest input the ssdeep library hashes; past it the
// library gives up (or, in some versions, never returns).
const MaxInputSize = 3 << 30 // TODO: confirm against the library's limit.

func init() {
	// The library refuses inputs of 4096 bytes or less unless Force is set,
	// while libfuzzy hashes them. Set once here, before any hashing starts.
	ssdeep.Force = true
}

// ErrNoDigest is returned when the library produced no digest.
var ErrNoDigest = errors.New("fuzzyhash: no digest")

// Hash is an ssdeep hash fed with Write.
type Hash struct {
	h hash.Hash
}

// New returns an empty Hash.
func New() *Hash { return &Hash{h: ssdeep.New()} }

// Write adds p to the hash; it never fails.
func (h *Hash) Write(p []byte) (int, error) { return h.h.Write(p) }

// Digest returns the ssdeep digest of everything written.
func (h *Hash) Digest() (string, error) {
	d := h.h.Sum(nil)
	if len(d) == 0 {
		return "", ErrNoDigest
	}
	return string(d), nil
}

// Compare returns the similarity of two digests, 0 to 100.
func Compare(a, b string) (int, error) {
	return ssdeep.Distance(a, b)
}
