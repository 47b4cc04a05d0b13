package collector

import (
	"context"
	"time"
)

// RescanDelay is the wait between a rescan request and the scan.
const RescanDelay = 2 * time.Second

// ScanReport is the outcome of one iteration of Run. Err is set when the
// scan or its publication failed.
type ScanReport struct {
	Scan    *Scan
	Publish PublishResult
	Err     error
}

// Run scans and publishes every interval until ctx ends, and at once
// whenever rescan receives (a reconnect, say, after which the receiver
// may have missed batches). It calls report after every scan and returns
// ctx's error. A failed scan is reported and retried at the next tick.
func Run(ctx context.Context, s *Scanner, p *Publisher, interval time.Duration,
	rescan <-chan struct{}, report func(ScanReport)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		r := ScanOnce(ctx, s, p)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if report != nil {
			report(r)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		case <-rescan:
			// Other clients, the agent among them, reconnect and
			// resubscribe at about the same time, so a scan sent at once
			// could reach the server before their subscriptions.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(RescanDelay):
			}
			ticker.Reset(interval)
		}
	}
}

// ScanOnce scans once and publishes the result.
func ScanOnce(ctx context.Context, s *Scanner, p *Publisher) ScanReport {
	scan, err := s.Scan(ctx)
	if err != nil {
		return ScanReport{Err: err}
	}
	res, err := p.Publish(ctx, scan)
	return ScanReport{Scan: scan, Publish: res, Err: err}
}
