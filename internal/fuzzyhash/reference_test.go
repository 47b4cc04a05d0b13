package fuzzyhash

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests in this file compare the package with Debian's ssdeep binary,
// which links libfuzzy. They skip when it is not installed.

func lookSSDeep(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("ssdeep")
	if err != nil {
		t.Skipf("ssdeep binary not found (%v); install Debian's ssdeep package to compare with libfuzzy", err)
	}
	return path
}

// newRand returns a generator seeded from the clock, so that every run
// tries new inputs, and logs the seed to reproduce a failure.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FUZZYHASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FUZZYHASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("random seed %d (set FUZZYHASH_SEED to repeat)", seed)
	return rand.New(rand.NewPCG(seed, seed^0x5eed))
}

// referenceDigests runs ssdeep on the files and returns their digests by
// path.
func referenceDigests(t *testing.T, ssdeep string, paths []string) map[string]string {
	t.Helper()
	cmd := exec.Command(ssdeep, append([]string{"-s", "--"}, paths...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, stderr.Bytes())
	}

	digests := make(map[string]string)
	scanner := bufio.NewScanner(bytes.NewReader(out))
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "ssdeep,") {
			continue
		}
		digest, name, ok := strings.Cut(line, ",")
		if !ok {
			t.Fatalf("ssdeep output line %q has no file name", line)
		}
		digests[strings.Trim(name, `"`)] = digest
	}
	if len(digests) != len(paths) {
		t.Fatalf("ssdeep printed %d digests for %d files:\n%s", len(digests), len(paths), out)
	}
	return digests
}

// randomInput returns input of a random kind and size, chosen to reach
// the paths of the digest step: tiny and empty inputs, low-entropy data
// that resets often, runs of zeros that stop resets, inputs ending on
// zeros, and bursts of allLevelsWindow.
func randomInput(rng *rand.Rand) []byte {
	var size int
	switch rng.IntN(4) {
	case 0:
		size = rng.IntN(200)
	case 1:
		size = rng.IntN(8192)
	case 2:
		size = rng.IntN(300_000)
	default:
		size = rng.IntN(3 << 20)
	}

	data := make([]byte, size)
	switch rng.IntN(5) {
	case 0:
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
	case 1:
		for i := range data {
			data[i] = byte(rng.IntN(3))
		}
	case 2:
		period := 1 + rng.IntN(300)
		for i := range data {
			data[i] = byte(i % period)
		}
	case 3:
		for i := range data {
			if rng.IntN(40) == 0 {
				data[i] = byte(rng.Uint32())
			}
		}
	default:
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for range rng.IntN(10) {
			at := rng.IntN(len(data) + 1)
			for j := range rng.IntN(1000) {
				if at+j < len(data) {
					data[at+j] = allLevelsWindow[j%len(allLevelsWindow)]
				}
			}
		}
	}
	if rng.IntN(3) == 0 {
		for i := max(0, size-rng.IntN(20)); i < size; i++ {
			data[i] = 0
		}
	}
	return data
}

func TestDigestMatchesSSDeepRandom(t *testing.T) {
	ssdeep := lookSSDeep(t)
	rng := newRand(t)
	dir := t.TempDir()

	inputs := make(map[string][]byte)
	var paths []string
	add := func(data []byte) {
		path := filepath.Join(dir, fmt.Sprintf("input%03d", len(paths)))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		inputs[path] = data
		paths = append(paths, path)
	}
	for _, size := range []int{0, 1, 6, 7, 4095, 4096, 4097} {
		add(randomInput(rng)[:0])
		add(splitMix64(rng.Uint64(), size))
	}
	add(bytes.Repeat(allLevelsWindow, 1000))
	for range 60 {
		add(randomInput(rng))
	}

	want := referenceDigests(t, ssdeep, paths)
	for _, path := range paths {
		data := inputs[path]
		got := digestInChunks(t, data, rng, 1+rng.IntN(100_000))
		if got != want[path] {
			t.Errorf("digest of %s (%d bytes) = %q, want %q", filepath.Base(path), len(data), got, want[path])
		}
	}
}

// executables returns up to n regular files of at most maxSize bytes from
// the directories, spread over the range of their sizes.
func executables(t *testing.T, n int, maxSize int64, dirs ...string) []string {
	t.Helper()
	type file struct {
		path string
		size int64
	}
	var files []file
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil || info.Size() > maxSize || info.Mode().Perm()&0o444 == 0 {
				continue
			}
			files = append(files, file{filepath.Join(dir, e.Name()), info.Size()})
		}
	}
	if len(files) == 0 {
		t.Skipf("no regular files in %v", dirs)
	}
	slices.SortFunc(files, func(a, b file) int { return int(a.size - b.size) })

	var paths []string
	for i := range min(n, len(files)) {
		paths = append(paths, files[i*len(files)/min(n, len(files))].path)
	}
	if last := files[len(files)-1].path; !slices.Contains(paths, last) {
		paths = append(paths, last)
	}
	return paths
}

func TestDigestMatchesSSDeepExecutables(t *testing.T) {
	ssdeep := lookSSDeep(t)
	rng := newRand(t)
	paths := executables(t, 30, 8<<20, "/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu")
	want := referenceDigests(t, ssdeep, paths)
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := digestInChunks(t, data, rng, 64<<10); got != want[path] {
			t.Errorf("digest of %s (%d bytes) = %q, want %q", path, len(data), got, want[path])
		}
	}
}

// writeSignatures writes digests in the signature file format of ssdeep,
// named prefix0, prefix1 and so on.
func writeSignatures(t *testing.T, path, prefix string, digests []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("ssdeep,1.1--blocksize:hash:hash,filename\n")
	for i, d := range digests {
		fmt.Fprintf(&b, "%s,\"%s%d\"\n", d, prefix, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// referenceScores runs ssdeep to compare every digest of unknown with every
// digest of known, and returns the scores indexed [unknown][known].
func referenceScores(t *testing.T, ssdeep string, known, unknown []string) [][]int {
	t.Helper()
	dir := t.TempDir()
	knownFile := filepath.Join(dir, "known")
	unknownFile := filepath.Join(dir, "unknown")
	writeSignatures(t, knownFile, "k", known)
	writeSignatures(t, unknownFile, "u", unknown)

	// -a prints every pair, -c as CSV lines "unknown","known",score.
	cmd := exec.Command(ssdeep, "-a", "-c", "-k", knownFile, unknownFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, stderr.Bytes())
	}

	scores := make([][]int, len(unknown))
	for i := range scores {
		scores[i] = slices.Repeat([]int{-1}, len(known))
	}
	count := 0
	scanner := bufio.NewScanner(bytes.NewReader(out))
	for scanner.Scan() {
		fields := strings.Split(scanner.Text(), ",")
		if len(fields) != 3 {
			t.Fatalf("ssdeep output line %q is not \"unknown\",\"known\",score", scanner.Text())
		}
		u, err1 := strconv.Atoi(strings.TrimPrefix(strings.Trim(fields[0], `"`), "u"))
		k, err2 := strconv.Atoi(strings.TrimPrefix(strings.Trim(fields[1], `"`), "k"))
		score, err3 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil || err3 != nil || u >= len(unknown) || k >= len(known) {
			t.Fatalf("ssdeep output line %q cannot be read", scanner.Text())
		}
		scores[u][k] = score
		count++
	}
	if count != len(known)*len(unknown) {
		t.Fatalf("ssdeep printed %d scores for %d pairs", count, len(known)*len(unknown))
	}
	return scores
}

// mutatedDigest returns a copy of d with a few random edits that keep it
// valid, often adding runs of one character.
func mutatedDigest(rng *rand.Rand, d Digest) string {
	mutate := func(part string, limit int) string {
		b := []byte(part)
		for range 1 + rng.IntN(4) {
			c := base64Alphabet[rng.IntN(len(base64Alphabet))]
			at := rng.IntN(len(b) + 1)
			switch rng.IntN(4) {
			case 0:
				if at < len(b) {
					b[at] = c
				}
			case 1:
				if at < len(b) {
					b = slices.Delete(b, at, at+1)
				}
			case 2:
				b = slices.Insert(b, at, c)
			default:
				b = slices.Insert(b, at, bytes.Repeat([]byte{c}, 1+rng.IntN(6))...)
			}
		}
		return string(b[:min(len(b), limit)])
	}
	size := d.BlockSize()
	switch rng.IntN(6) {
	case 0:
		if size < 3<<30 {
			size *= 2
		}
	case 1:
		if size > 3 {
			size /= 2
		}
	}
	return Digest{
		blockSize: size,
		part1:     mutate(d.Part1(), spamSumLength),
		part2:     mutate(d.Part2(), spamSumLength),
	}.String()
}

// syntheticDigest returns a digest of a small block size over a small
// alphabet, so that pairs share substrings and runs.
func syntheticDigest(rng *rand.Rand) string {
	alphabet := base64Alphabet[rng.IntN(54):][:2+rng.IntN(9)]
	part := func(n int) string { return string(randomPart(rng, alphabet, n)) }
	return fmt.Sprintf("%d:%s:%s", blockSize(rng.IntN(5)), part(rng.IntN(65)), part(rng.IntN(33)))
}

func TestCompareMatchesSSDeep(t *testing.T) {
	ssdeep := lookSSDeep(t)
	rng := newRand(t)

	// Digests of real files and of edited copies, which score across the
	// whole range.
	var digests []string
	for _, path := range executables(t, 12, 4<<20, "/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu") {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, digestOf(t, data))
		edited := slices.Clone(data)
		at := rng.IntN(len(edited) + 1)
		edited = slices.Insert(edited, at, splitMix64(rng.Uint64(), rng.IntN(len(edited)/20+1))...)
		digests = append(digests, digestOf(t, edited))
		digests = append(digests, digestOf(t, data[:len(data)*(50+rng.IntN(50))/100]))
	}
	for range 60 {
		d, err := ParseDigest(digests[rng.IntN(len(digests))])
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, mutatedDigest(rng, d))
	}
	for range 50 {
		synthetic := syntheticDigest(rng)
		d, err := ParseDigest(synthetic)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, synthetic, mutatedDigest(rng, d))
	}
	for _, c := range ruleCases {
		digests = append(digests, c.a, c.b)
	}

	want := referenceScores(t, ssdeep, digests, digests)
	for u, a := range digests {
		for k, b := range digests {
			got, err := Compare(a, b)
			if got != want[u][k] || err != nil {
				t.Errorf("Compare(%q, %q) = %d, %v, want %d, nil", a, b, got, err, want[u][k])
			}
		}
	}
}

// TestDigestMatchesSSDeepLarge hashes a sparse file of 3.5 GiB whose
// bursts of allLevelsWindow make the hash drop block sizes up to 3<<24.
// From there on, a block size times 64 no longer fits in 32 bits.
func TestDigestMatchesSSDeepLarge(t *testing.T) {
	if os.Getenv("FUZZYHASH_LARGE") == "" {
		t.Skip("set FUZZYHASH_LARGE=1 to hash a 3.5 GiB sparse file, which takes about two minutes")
	}
	ssdeep := lookSSDeep(t)

	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 7 << 29
	burst := bytes.Repeat(allLevelsWindow, 100)
	for _, at := range []int64{0, 1 << 20, 1 << 30, 3 << 30, size - int64(len(burst)) - 1<<20} {
		if _, err := f.WriteAt(burst, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	want := referenceDigests(t, ssdeep, []string{path})[path]
	h := New()
	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := mustDigest(t, h); got != want {
		t.Errorf("digest of %d-byte sparse file = %q, want %q", size, got, want)
	}
}
