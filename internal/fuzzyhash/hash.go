package fuzzyhash

import (
	"fmt"
	"strconv"
)

const (
	windowSize    = 7  // bytes covered by the rolling hash
	minBlockSize  = 3  // block size of level 0; level i has minBlockSize<<i
	spamSumLength = 64 // maximum characters in a digest part
	numLevels     = 31 // block sizes 3<<0 to 3<<30

	// The piece hash is 32-bit FNV-1 of which ssdeep keeps only the low 6
	// bits, so the prime 0x01000193 and the offset basis 0x28021967 enter
	// modulo 64.
	pieceHashPrime = 0x01000193 % 64
	pieceHashInit  = 0x28021967 % 64

	// lastLevel is the lane of the piece hash of the level above the
	// largest block size. Only the second part of a digest of block size
	// 3<<30 reads it.
	lastLevel = numLevels
)

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// rollingHash is ssdeep's hash of the last windowSize bytes: h1 sums them,
// h2 weights them by recency, and h3 shifts and XORs them. window contains
// the latest bytes, the newest in the low byte.
type rollingHash struct {
	window uint64
	h1     uint32
	h2     uint32
	h3     uint32
}

func (r *rollingHash) add(c byte) {
	leaving := uint32(r.window >> (8 * (windowSize - 1)) & 0xff)
	r.window = r.window<<8 | uint64(c)
	r.h2 += windowSize*uint32(c) - r.h1
	r.h1 += uint32(c) - leaving
	r.h3 = r.h3<<5 ^ uint32(c)
}

func (r *rollingHash) sum() uint32 { return r.h1 + r.h2 + r.h3 }

// laneHashes contains one 6-bit piece hash per level, level i in byte i%8 of
// word i/8, so that one step updates eight levels at once.
type laneHashes [4]uint64

const (
	lanesOnes  = 0x0101010101010101
	lanesLow2  = 0x0303030303030303
	lanesLow5  = 0x1f1f1f1f1f1f1f1f
	lanesLow6  = 0x3f3f3f3f3f3f3f3f
	lanesCount = 8
)

func (l *laneHashes) get(i int) byte { return byte(l[i/lanesCount] >> (8 * (i % lanesCount))) }

func (l *laneHashes) set(i int, v byte) {
	shift := 8 * (i % lanesCount)
	l[i/lanesCount] = l[i/lanesCount]&^(0xff<<shift) | uint64(v)<<shift
}

// updateLanes returns the piece hashes in word after a byte whose low 6
// bits are in every lane of c. Each lane needs hash*pieceHashPrime mod 64,
// where pieceHashPrime is 19, computed as (hash&3)<<4 + (hash&31)<<1 + hash.
// Those terms equal 16, 2 and 1 times hash modulo 64 and sum to at most 173,
// so no carry crosses into the next lane.
func updateLanes(word, c uint64) uint64 {
	return ((word&lanesLow2)<<4 + (word&lanesLow5)<<1 + word ^ c) & lanesLow6
}

// level is the digest state for one block size, apart from its piece
// hashes, which Hash keeps in laneHashes.
type level struct {
	// chars contains the emitted base64 characters, chars[:n] with n at most
	// spamSumLength-1.
	chars [spamSumLength]byte
	n     int
	// lastChar is the character of the piece after chars[spamSumLength-2],
	// taken at the latest reset point once the level is full, because all
	// input after that character merges into one piece. It is 0 until then.
	lastChar byte
	// halfChar is the character the half hash had at the latest reset
	// point, kept while the level holds at least spamSumLength/2 characters,
	// and 0 otherwise.
	halfChar byte
}

// Hash computes an ssdeep digest of the bytes written to it, in one pass
// and in constant memory. The zero value is ready to use. A Hash is not safe
// for concurrent use.
type Hash struct {
	total uint64 // bytes written, MaxInputSize+1 once past the limit
	roll  rollingHash
	// pieceHashes hashes the bytes since the last reset point of each
	// level. halfHashes does the same but stops being reset once the level
	// holds spamSumLength/2 characters, so it covers the tail that a part
	// truncated to 32 characters must merge.
	pieceHashes laneHashes
	halfHashes  laneHashes
	levels      [numLevels]level
	// levels[first:end] are the block sizes still hashed. Levels below
	// first were dropped because the digest can no longer use them, and a
	// level is started once the level below it reaches its first reset
	// point. Updating the lanes of other levels is harmless: a started
	// level overwrites them, and a dropped level is never read.
	first int
	end   int
	// rollMask has the low `first` bits set: a reset point of level first
	// needs (rolling sum + 1) / 3 to be a multiple of 1<<first.
	rollMask     uint32
	hasLastLevel bool
}

// New returns an empty Hash.
func New() *Hash {
	h := &Hash{}
	h.Reset()
	return h
}

// Reset discards everything written.
func (h *Hash) Reset() {
	*h = Hash{end: 1}
	h.pieceHashes.set(0, pieceHashInit)
	h.halfHashes.set(0, pieceHashInit)
}

// Write adds p to the hash. It always returns len(p) and a nil error. Once
// more than MaxInputSize bytes were written, it only records that.
func (h *Hash) Write(p []byte) (int, error) {
	if h.end == 0 {
		h.Reset()
	}
	if h.total > MaxInputSize || uint64(len(p)) > MaxInputSize-h.total {
		h.total = MaxInputSize + 1
		return len(p), nil
	}
	// libfuzzy also counts a whole buffer before hashing it. The count only
	// decides when a level may be dropped, and any count up to the final
	// total drops only levels the digest cannot use.
	h.total += uint64(len(p))

	roll := h.roll
	words := h.activeWords()
	for _, c := range p {
		roll.add(c)
		lanes := uint64(c&63) * lanesOnes
		for w := words.first; w <= words.last; w++ {
			h.pieceHashes[w] = updateLanes(h.pieceHashes[w], lanes)
			h.halfHashes[w] = updateLanes(h.halfHashes[w], lanes)
		}

		// Level i has a reset point where the rolling sum is congruent to
		// -1 modulo its block size 3<<i, that is where sum+1 is a
		// multiple of 3<<i. A sum of 2^32-1 is divisible by 3, so it is no
		// reset point even though sum+1 wraps to 0.
		next := roll.sum() + 1
		if next == 0 {
			continue
		}
		if (next/minBlockSize)&h.rollMask != 0 || next%minBlockSize != 0 {
			continue
		}
		h.resetPoints(next)
		words = h.activeWords()
	}
	h.roll = roll
	return len(p), nil
}

type wordRange struct{ first, last int }

// activeWords returns the words of laneHashes that hold started levels and
// the lane of lastLevel once it is in use.
func (h *Hash) activeWords() wordRange {
	last := h.end - 1
	if h.hasLastLevel {
		last = lastLevel
	}
	return wordRange{h.first / lanesCount, last / lanesCount}
}

// resetPoints handles the reset points at a position where next, the
// rolling sum plus 1, is a multiple of 3<<h.first. Every level whose block
// size divides next has one, and those levels are consecutive from first
// because the block sizes double.
func (h *Hash) resetPoints(next uint32) {
	quotient := next / minBlockSize >> h.first
	for i := h.first; i < h.end; i++ {
		h.resetPoint(i)
		if quotient&1 != 0 {
			break
		}
		quotient >>= 1
	}
}

// resetPoint emits the character of the piece that ends at a reset point
// of level i.
func (h *Hash) resetPoint(i int) {
	l := &h.levels[i]
	if l.n == 0 {
		h.startLevel()
	}
	piece := h.pieceHashes.get(i)
	half := h.halfHashes.get(i)
	if l.n < spamSumLength-1 {
		l.chars[l.n] = base64Alphabet[piece]
		l.n++
		h.pieceHashes.set(i, pieceHashInit)
		if l.n < spamSumLength/2 {
			h.halfHashes.set(i, pieceHashInit)
			l.halfChar = 0
		} else {
			l.halfChar = base64Alphabet[half]
		}
		return
	}
	// The level is full: the rest of the input becomes one last piece.
	l.lastChar = base64Alphabet[piece]
	l.halfChar = base64Alphabet[half]
	h.dropFirstLevel()
}

// startLevel starts the level above the highest one, from the hashes of the
// highest one, which has had no reset point before this one.
func (h *Hash) startLevel() {
	top := h.end - 1
	if h.end < numLevels {
		h.levels[h.end] = level{}
		h.pieceHashes.set(h.end, h.pieceHashes.get(top))
		h.halfHashes.set(h.end, h.halfHashes.get(top))
		h.end++
		return
	}
	if !h.hasLastLevel {
		h.hasLastLevel = true
		h.pieceHashes.set(lastLevel, h.pieceHashes.get(top))
	}
}

// dropFirstLevel stops hashing the smallest block size once the digest can
// no longer use it: the input is already too long for it and the next level
// holds enough characters to be chosen instead.
func (h *Hash) dropFirstLevel() {
	if h.end-h.first < 2 {
		return
	}
	if blockSize(h.first)*spamSumLength >= h.total {
		return
	}
	if h.levels[h.first+1].n < spamSumLength/2 {
		return
	}
	h.first++
	h.rollMask = h.rollMask<<1 | 1
}

func blockSize(i int) uint64 { return minBlockSize << i }

// Digest returns the ssdeep digest of everything written, in the form
// "blocksize:part1:part2". It does not change the state, so writing may
// continue. It fails only past MaxInputSize bytes, with an error wrapping
// both ErrNoDigest and ErrInputTooLarge.
func (h *Hash) Digest() (string, error) {
	if h.end == 0 {
		h.Reset()
	}
	if h.total > MaxInputSize {
		return "", fmt.Errorf("%w: %w: more than %d bytes written", ErrNoDigest, ErrInputTooLarge, uint64(MaxInputSize))
	}

	// Start from the smallest block size for which 64 characters can span
	// the input, then fall back to smaller ones while the level holds fewer
	// than 32 characters.
	i := h.first
	for i < numLevels-1 && blockSize(i)*spamSumLength < h.total {
		i++
	}
	i = min(i, h.end-1)
	for i > h.first && h.levels[i].n < spamSumLength/2 {
		i--
	}

	// When the rolling sum is 0, the input ended on at least seven zero
	// bytes, and the open piece is left out unless it is a merged tail.
	openPiece := h.roll.sum() != 0
	buf := make([]byte, 0, 11+2*spamSumLength)
	buf = strconv.AppendUint(buf, blockSize(i), 10)
	buf = append(buf, ':')

	l := &h.levels[i]
	buf = append(buf, l.chars[:l.n]...)
	if openPiece {
		buf = append(buf, base64Alphabet[h.pieceHashes.get(i)])
	} else if l.lastChar != 0 {
		buf = append(buf, l.lastChar)
	}
	buf = append(buf, ':')

	switch {
	case i < h.end-1:
		// The second part is truncated to 32 characters: 31 emitted ones
		// and one for everything after them.
		next := &h.levels[i+1]
		buf = append(buf, next.chars[:min(next.n, spamSumLength/2-1)]...)
		if openPiece {
			buf = append(buf, base64Alphabet[h.halfHashes.get(i+1)])
		} else if next.halfChar != 0 {
			buf = append(buf, next.halfChar)
		}
	case openPiece && i == numLevels-1 && h.hasLastLevel:
		// NOTE: only inputs above 96 GiB reach this case, and it was
		// never compared with libfuzzy.
		buf = append(buf, base64Alphabet[h.pieceHashes.get(lastLevel)])
	case openPiece:
		// The level above would have started from this level's hash, and
		// this level has no characters yet.
		buf = append(buf, base64Alphabet[h.pieceHashes.get(i)])
	}
	return string(buf), nil
}
