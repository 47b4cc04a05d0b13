package exe

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func TestInspectCacheOneHashPerBinary(t *testing.T) {
	_, content := sleepBinary(t)
	dir := t.TempDir()
	pid, path := startSleep(t, content, dir, "prog")
	pids := []int{pid}
	for range 2 {
		pids = append(pids, startCmd(t, newCmd(path)))
	}

	in := NewInspector(Options{})
	var hashed, hits, misses int
	var bytes int64
	var shas []string
	for _, pid := range pids {
		res := inspect(t, in, pid)
		hashed += res.Hashed
		hits += res.CacheHits
		misses += res.CacheMisses
		bytes += res.BytesHashed
		shas = append(shas, res.Executable.GetRunning().GetSha256())
		checkState(t, res.Executable, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	}
	if hashed != 1 || misses != 1 || hits != len(pids)-1 || bytes != int64(len(content)) {
		t.Errorf("%d processes of one binary: %d hashed, %d misses, %d hits, %d bytes; want 1, 1, %d, %d",
			len(pids), hashed, misses, hits, bytes, len(pids)-1, len(content))
	}
	for i, sha := range shas {
		if sha != sha256Hex(content) {
			t.Errorf("process %d: Running.Sha256 = %s, want %s", i, sha, sha256Hex(content))
		}
	}
}

func TestInspectTooLarge(t *testing.T) {
	_, content := sleepBinary(t)
	pid1, path := startSleep(t, content, t.TempDir(), "prog")
	pid2 := startCmd(t, newCmd(path))
	limit := int64(len(content) - 1)
	in := NewInspector(Options{MaxFileSize: limit})

	type counts struct{ hashed, misses, hits int }
	want := []counts{{0, 1, 0}, {0, 0, 1}}
	for i, pid := range []int{pid1, pid2} {
		res := inspect(t, in, pid)
		ex := res.Executable
		if ex.GetCoverage() != binwatchv1.Coverage_COVERAGE_DEGRADED ||
			ex.GetCoverageReason() != binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE {
			t.Errorf("process %d: coverage %v %v, want DEGRADED TOO_LARGE", i, ex.GetCoverage(), ex.GetCoverageReason())
		}
		wantDetail := fmt.Sprintf("file is %d bytes, larger than the limit of %d bytes", len(content), limit)
		if ex.GetCoverageDetail() != wantDetail {
			t.Errorf("process %d: CoverageDetail = %q, want %q", i, ex.GetCoverageDetail(), wantDetail)
		}
		if ex.GetRunning().GetSha256() != "" || ex.GetRunning().GetSsdeep() != "" {
			t.Errorf("process %d: digests %q %q, want none for a file over the limit", i, ex.GetRunning().GetSha256(), ex.GetRunning().GetSsdeep())
		}
		if ex.GetRunning().GetSize() != uint64(len(content)) {
			t.Errorf("process %d: Running.Size = %d, want %d", i, ex.GetRunning().GetSize(), len(content))
		}
		checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
		got := counts{res.Hashed, res.CacheMisses, res.CacheHits}
		if got != want[i] || res.BytesHashed != 0 {
			t.Errorf("process %d: counts %+v, %d bytes; want %+v, 0 bytes", i, got, res.BytesHashed, want[i])
		}
	}
}

func TestInspectOverSsdeepLimit(t *testing.T) {
	_, content := sleepBinary(t)
	pid, _ := startSleep(t, content, t.TempDir(), "prog")
	in := NewInspector(Options{maxFuzzyInput: int64(len(content) - 1)})
	ex := inspect(t, in, pid).Executable
	if ex.GetCoverageReason() != binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED {
		t.Errorf("CoverageReason = %v, want SSDEEP_FAILED", ex.GetCoverageReason())
	}
	if !strings.Contains(ex.GetCoverageDetail(), "larger than ssdeep's maximum input") {
		t.Errorf("CoverageDetail = %q, want it to name ssdeep's maximum input", ex.GetCoverageDetail())
	}
	if ex.GetRunning().GetSha256() != sha256Hex(content) || ex.GetRunning().GetSsdeep() != "" {
		t.Errorf("digests = %q, %q; want SHA-256 %s and no ssdeep", ex.GetRunning().GetSha256(), ex.GetRunning().GetSsdeep(), sha256Hex(content))
	}
}

// failingFuzzy is an ssdeep hasher whose digest always fails.
type failingFuzzy struct{ n int }

func (f *failingFuzzy) Write(p []byte) (int, error) { f.n += len(p); return len(p), nil }
func (f *failingFuzzy) Digest() (string, error) {
	return "", fmt.Errorf("no digest after %d bytes", f.n)
}

func TestInspectSsdeepFailed(t *testing.T) {
	_, content := sleepBinary(t)
	dir := t.TempDir()
	pid, path := startSleep(t, content, dir, "prog")
	in := NewInspector(Options{newFuzzy: func() fuzzyHasher { return new(failingFuzzy) }})

	res := inspect(t, in, pid)
	ex := res.Executable
	if ex.GetCoverage() != binwatchv1.Coverage_COVERAGE_DEGRADED ||
		ex.GetCoverageReason() != binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED {
		t.Errorf("coverage %v %v, want DEGRADED SSDEEP_FAILED", ex.GetCoverage(), ex.GetCoverageReason())
	}
	// The hasher saw every byte, fed from the same buffers as SHA-256.
	if want := fmt.Sprintf("ssdeep: no digest after %d bytes", len(content)); ex.GetCoverageDetail() != want {
		t.Errorf("CoverageDetail = %q, want %q", ex.GetCoverageDetail(), want)
	}
	if ex.GetRunning().GetSha256() != sha256Hex(content) || ex.GetRunning().GetSsdeep() != "" {
		t.Errorf("digests = %q, %q; want SHA-256 %s and no ssdeep", ex.GetRunning().GetSha256(), ex.GetRunning().GetSsdeep(), sha256Hex(content))
	}
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)

	// The failure belongs to the identity: a second process is a hit.
	res = inspect(t, in, startCmd(t, newCmd(path)))
	if res.CacheHits != 1 || res.Hashed != 0 {
		t.Errorf("second process: %d hits, %d hashed, want 1, 0", res.CacheHits, res.Hashed)
	}
	if res.Executable.GetCoverageReason() != binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED {
		t.Errorf("second process: CoverageReason = %v, want SSDEEP_FAILED", res.Executable.GetCoverageReason())
	}
}

// shortReader returns left bytes and then io.EOF.
type shortReader struct{ left int }

func (r *shortReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

type failingReader struct{}

func (failingReader) Read(p []byte) (int, error) { return 0, errors.New("input/output error") }

func TestHashReadErrors(t *testing.T) {
	in := NewInspector(Options{})
	tests := []struct {
		name       string
		r          io.Reader
		size       int64
		wantDetail string
	}{
		{"short read", &shortReader{left: 100}, 200, "read 100 bytes, but fstat reports 200"},
		{"file grew", &shortReader{left: 300}, 200, "read 201 bytes, but fstat reports 200"},
		{"error", failingReader{}, 200, "reading after 0 of 200 bytes: input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res Result
			d, cacheable := in.hash(tt.r, tt.size, &res)
			if d.reason != binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR || d.detail != tt.wantDetail {
				t.Errorf("hash() = %v %q, want READ_ERROR %q", d.reason, d.detail, tt.wantDetail)
			}
			if d.sha256 != "" || d.ssdeep != "" {
				t.Errorf("hash() digests = %q %q, want none after a read error", d.sha256, d.ssdeep)
			}
			if cacheable {
				t.Errorf("hash() cacheable = true, want false for a read error")
			}
		})
	}
}

func TestLRUEviction(t *testing.T) {
	c := newLRU(2)
	ids := []identity{{ino: 1}, {ino: 2}, {ino: 3}}
	c.put(ids[0], digests{sha256: "a"})
	c.put(ids[1], digests{sha256: "b"})
	// The get makes ids[0] the most recently used entry.
	if _, ok := c.get(ids[0]); !ok {
		t.Fatalf("get(1) missed right after put")
	}
	c.put(ids[2], digests{sha256: "c"})
	if c.len() != 2 {
		t.Errorf("len() = %d, want 2", c.len())
	}
	if _, ok := c.get(ids[1]); ok {
		t.Errorf("get(2) hit, want it evicted as least recently used")
	}
	for _, id := range []identity{ids[0], ids[2]} {
		if _, ok := c.get(id); !ok {
			t.Errorf("get(%d) missed, want a hit", id.ino)
		}
	}
	// A changed ctime is another identity.
	if _, ok := c.get(identity{ino: 1, ctime: 5}); ok {
		t.Errorf("get with another ctime hit, want a miss")
	}
}
