package agent

import (
	"testing"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func batch(collector string, seq uint64, index, count uint32) *binwatchv1.ProcessBatch {
	return &binwatchv1.ProcessBatch{HostId: "h", CollectorId: collector, ScanSeq: seq, BatchIndex: index, BatchCount: count}
}

func TestGapTracker(t *testing.T) {
	type step struct {
		b         *binwatchv1.ProcessBatch
		gap       bool
		completed bool
		stale     bool
		// For a gap: missing whole scans and batches.
		scans, batches uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"complete scans in order", []step{
			{b: batch("c1", 1, 0, 2)},
			{b: batch("c1", 1, 1, 2), completed: true},
			{b: batch("c1", 2, 0, 1), completed: true},
		}},
		{"skipped scans", []step{
			{b: batch("c1", 1, 0, 1), completed: true},
			{b: batch("c1", 4, 0, 1), completed: true, gap: true, scans: 2},
		}},
		{"missing batch closed by the next scan", []step{
			{b: batch("c1", 1, 0, 3)},
			{b: batch("c1", 1, 2, 3)},
			{b: batch("c1", 2, 0, 1), completed: true, gap: true, batches: 1},
		}},
		{"missing batches and scans together", []step{
			{b: batch("c1", 1, 0, 3)},
			{b: batch("c1", 3, 0, 1), completed: true, gap: true, batches: 2, scans: 1},
		}},
		{"repeated batch is stale", []step{
			{b: batch("c1", 1, 0, 2)},
			{b: batch("c1", 1, 0, 2), stale: true},
		}},
		{"older scan is stale", []step{
			{b: batch("c1", 5, 0, 1), completed: true},
			{b: batch("c1", 4, 0, 1), stale: true},
		}},
		{"changed batch count is stale", []step{
			{b: batch("c1", 1, 0, 2)},
			{b: batch("c1", 1, 1, 3), stale: true},
		}},
		{"collector restart is no gap", []step{
			{b: batch("c1", 9, 0, 1), completed: true},
			{b: batch("c2", 1, 0, 1), completed: true},
		}},
		{"collector restart leaves an incomplete scan", []step{
			{b: batch("c1", 9, 0, 2)},
			{b: batch("c2", 1, 0, 1), completed: true, gap: true, batches: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newGapTracker()
			for i, s := range tc.steps {
				g, completed, stale := tr.observe(s.b)
				if (g != nil) != s.gap {
					t.Fatalf("step %d: gap = %v, want gap %v", i, g, s.gap)
				}
				if completed != s.completed || stale != s.stale {
					t.Errorf("step %d: completed, stale = %v, %v, want %v, %v", i, completed, stale, s.completed, s.stale)
				}
				if g != nil && (g.missingScans != s.scans || g.missingBatches != s.batches) {
					t.Errorf("step %d: gap %s, want %d scans and %d batches missing", i, g, s.scans, s.batches)
				}
			}
		})
	}
}
