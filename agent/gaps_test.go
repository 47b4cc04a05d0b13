package agent

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

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
		duplicate bool
		reset     bool
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
		{"repeated batch is a duplicate", []step{
			{b: batch("c1", 1, 0, 2)},
			{b: batch("c1", 1, 0, 2), duplicate: true},
		}},
		{"older scan resets", []step{
			{b: batch("c1", 5, 0, 1), completed: true},
			{b: batch("c1", 4, 0, 1), completed: true, reset: true},
		}},
		{"forged huge sequence does not lock the collector out", []step{
			{b: batch("c1", 3, 0, 1), completed: true},
			{b: batch("c1", 1<<63, 0, 1), completed: true, gap: true, scans: 1<<63 - 4},
			{b: batch("c1", 4, 0, 1), completed: true, reset: true},
			{b: batch("c1", 5, 0, 1), completed: true},
		}},
		{"changed batch count is a duplicate", []step{
			{b: batch("c1", 1, 0, 2)},
			{b: batch("c1", 1, 1, 3), duplicate: true},
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
				g, completed, duplicate, reset := tr.observe(s.b)
				if (g != nil) != s.gap {
					t.Fatalf("step %d: gap = %v, want gap %v", i, g, s.gap)
				}
				if completed != s.completed || duplicate != s.duplicate || reset != s.reset {
					t.Errorf("step %d: completed, duplicate, reset = %v, %v, %v, want %v, %v, %v",
						i, completed, duplicate, reset, s.completed, s.duplicate, s.reset)
				}
				if g != nil && (g.missingScans != s.scans || g.missingBatches != s.batches) {
					t.Errorf("step %d: gap %s, want %d scans and %d batches missing", i, g, s.scans, s.batches)
				}
			}
		})
	}
}

func TestGapTrackerFloodEvictsOneHost(t *testing.T) {
	tr := newGapTracker()
	real := batch("c1", 1, 0, 2)
	real.HostId = "real"
	tr.observe(real)
	for i := 0; i < maxCountedHosts+100; i++ {
		b := batch("x", 1, 0, 1)
		b.HostId = fmt.Sprintf("fake-%d", i)
		tr.observe(b)
	}
	if len(tr.hosts) > maxCountedHosts {
		t.Fatalf("tracker holds %d hosts, want at most %d", len(tr.hosts), maxCountedHosts)
	}
	// Most floods leave the real host's progress; when it survives, its
	// half-received scan still completes without a false gap.
	if _, ok := tr.hosts["real"]; ok {
		rest := batch("c1", 1, 1, 2)
		rest.HostId = "real"
		if g, completed, _, _ := tr.observe(rest); g != nil || !completed {
			t.Errorf("after the flood: gap %v, completed %v, want no gap and completed", g, completed)
		}
	}
}

func TestAlertLogBudget(t *testing.T) {
	b := newAlertLogBudget(slog.New(slog.NewTextHandler(io.Discard, nil)), 3)
	allowed := 0
	for i := 0; i < 10; i++ {
		if b.allow("h") {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("allowed %d of 10 lines, want 3", allowed)
	}
	if !b.allow("other") {
		t.Error("another host's first line was held back")
	}
	b.hosts["h"].start = b.hosts["h"].start.Add(-time.Minute)
	if !b.allow("h") {
		t.Error("first line of a new minute was held back")
	}
}
