package agent

import (
	"fmt"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// gap is a stretch of records the agent did not receive from one
// collector instance.
type gap struct {
	collectorID string
	// fromSeq and toSeq are the first and last scan with missing batches.
	fromSeq, toSeq uint64
	// missingBatches counts lost batches of partly received scans; whole
	// missing scans are counted in missingScans.
	missingBatches uint64
	missingScans   uint64
}

func (g gap) String() string {
	return fmt.Sprintf("collector %s: scans %d to %d: %d whole scans and %d batches missing",
		g.collectorID, g.fromSeq, g.toSeq, g.missingScans, g.missingBatches)
}

// scanProgress is the part of one host's newest scan that has arrived.
type scanProgress struct {
	collectorID string
	seq         uint64
	count       uint32
	seen        map[uint32]bool
}

func (p *scanProgress) complete() bool { return uint32(len(p.seen)) == p.count }

// gapTracker finds missing batches and scans per host from the collector
// id, scan sequence and batch index of each batch. Batches of one
// collector arrive in order over one NATS connection, so a batch of a
// newer scan closes the older one.
type gapTracker struct {
	hosts map[string]*scanProgress
}

func newGapTracker() *gapTracker { return &gapTracker{hosts: map[string]*scanProgress{}} }

// observe records b and returns a gap when b shows that batches were lost,
// and whether b completes its scan. A repeated batch of the current scan
// returns duplicate. A batch of an older scan than the newest seen returns
// reset: the collector's sequence went back, which only a forged or
// replayed batch can cause, so tracking starts over from b rather than
// ignoring the collector's later batches for good.
func (t *gapTracker) observe(b *binwatchv1.ProcessBatch) (g *gap, completed, duplicate, reset bool) {
	p := t.hosts[b.HostId]
	if p == nil || p.collectorID != b.CollectorId {
		// A new collector instance starts its own sequence. What the old
		// one left incomplete is a gap.
		if p != nil && !p.complete() {
			g = &gap{collectorID: p.collectorID, fromSeq: p.seq, toSeq: p.seq,
				missingBatches: uint64(p.count) - uint64(len(p.seen))}
		}
		if p == nil && len(t.hosts) >= maxCountedHosts {
			t.evictOne()
		}
		p = t.start(b)
		t.hosts[b.HostId] = p
		return g, t.mark(p, b), false, false
	}
	switch {
	case b.ScanSeq < p.seq:
		p = t.start(b)
		t.hosts[b.HostId] = p
		return nil, t.mark(p, b), false, true
	case b.ScanSeq == p.seq:
		if p.seen[b.BatchIndex] || b.BatchCount != p.count {
			return nil, false, true, false
		}
		return nil, t.mark(p, b), false, false
	}
	// A newer scan: what the previous one lacks, and any scans skipped
	// in between, are lost.
	missing := gap{collectorID: p.collectorID, fromSeq: p.seq, toSeq: b.ScanSeq - 1}
	if !p.complete() {
		missing.missingBatches = uint64(p.count) - uint64(len(p.seen))
	} else {
		missing.fromSeq = p.seq + 1
	}
	missing.missingScans = b.ScanSeq - p.seq - 1
	if missing.missingBatches > 0 || missing.missingScans > 0 {
		g = &missing
	}
	p = t.start(b)
	t.hosts[b.HostId] = p
	return g, t.mark(p, b), false, false
}

// evictOne removes one host, chosen at random by map iteration, so that a
// flood of made-up host ids costs the real hosts one entry at a time
// instead of all their state at once.
func (t *gapTracker) evictOne() {
	for host := range t.hosts {
		delete(t.hosts, host)
		return
	}
}

func (t *gapTracker) start(b *binwatchv1.ProcessBatch) *scanProgress {
	return &scanProgress{collectorID: b.CollectorId, seq: b.ScanSeq, count: b.BatchCount, seen: map[uint32]bool{}}
}

func (t *gapTracker) mark(p *scanProgress, b *binwatchv1.ProcessBatch) bool {
	p.seen[b.BatchIndex] = true
	return p.complete()
}
