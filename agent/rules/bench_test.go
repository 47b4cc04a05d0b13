package rules

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

const (
	benchRecords     = 2000
	benchExecutables = 300
)

// benchBatch returns a 2000-record batch of 300 executables shaped like a
// busy host: most records on disk with full coverage, some with ssdeep
// failed, some replaced or unlinked. Version selects the binaries' content,
// so two versions differ in every SHA-256 and ssdeep digest.
func benchBatch(b *testing.B, version uint64) *binwatchv1.ProcessBatch {
	b.Helper()
	rng := rand.New(rand.NewPCG(version, 7))
	files := make([]*binwatchv1.FileHash, benchExecutables)
	buf := make([]byte, 16<<10)
	for i := range files {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		files[i] = fileHash(uint64(i+1)+version*1000, sha(i+int(version)*1000), digest(b, buf))
	}
	records := make([]*binwatchv1.ProcessRecord, benchRecords)
	for i := range records {
		n := i % benchExecutables
		r := onDisk(int32(i+100), fmt.Sprintf("/usr/lib/app%d/bin/worker", n), files[n])
		switch n % 40 {
		case 0, 1:
			degraded(r, binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED)
		case 2:
			r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED
			r.Executable.OnDisk = files[(n+1)%benchExecutables]
		case 3:
			r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED
		}
		records[i] = r
	}
	return batch(records...)
}

// BenchmarkEvaluate measures a scan in which nothing changed since the
// previous one: every finding is already raised.
func BenchmarkEvaluate(b *testing.B) {
	e, _, _ := newEngine(b, DefaultSimilarityThreshold)
	batch := benchBatch(b, 1)
	e.Evaluate(batch)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Evaluate(batch)
	}
}

// BenchmarkEvaluateAllChanged measures scans that alternate between two
// versions of every binary, so that each scan compares 270 ssdeep pairs
// and moves every baseline.
func BenchmarkEvaluateAllChanged(b *testing.B) {
	e, _, _ := newEngine(b, DefaultSimilarityThreshold)
	batches := []*binwatchv1.ProcessBatch{benchBatch(b, 1), benchBatch(b, 2)}
	e.Evaluate(batches[0])
	e.Evaluate(batches[1])
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		e.Evaluate(batches[i%2])
		i++
	}
}
