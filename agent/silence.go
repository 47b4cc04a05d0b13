package agent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/agent/rules"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Silence detection: a host whose collector stops sending complete scans
// (stopped, crashed, or stuck in a hung file system) must not look clean.
const (
	// silenceFactor times a host's last interval between scans, with
	// silenceFloor at least, is how long the agent waits for the next one.
	silenceFactor = 3
	silenceFloor  = 3 * time.Second
	// silenceCheck is how often hosts are checked.
	silenceCheck = time.Second
)

// hostScans is when a host's last two complete scans arrived.
type hostScans struct {
	hostname, bootID string
	collectorID      string
	seq              uint64
	last, previous   time.Time
	reported         bool // the current silence has raised its alert
}

// noteScan records a complete scan of b's host.
func (a *Agent) noteScan(b *binwatchv1.ProcessBatch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.scans[b.HostId]
	if h == nil {
		if len(a.scans) >= maxCountedHosts {
			for k := range a.scans {
				delete(a.scans, k)
				break
			}
		}
		h = &hostScans{}
		a.scans[b.HostId] = h
	}
	h.hostname, h.bootID, h.collectorID, h.seq = b.Hostname, b.BootId, b.CollectorId, b.ScanSeq
	h.previous, h.last = h.last, a.cfg.Now()
	h.reported = false
}

// silentHosts returns an alert for each host whose next scan is overdue,
// once per silence. A host needs two scans before its interval is known.
func (a *Agent) silentHosts(now time.Time) []*binwatchv1.IntegrityAlert {
	a.mu.Lock()
	defer a.mu.Unlock()
	var alerts []*binwatchv1.IntegrityAlert
	for host, h := range a.scans {
		if h.reported || h.previous.IsZero() {
			continue
		}
		wait := max(silenceFactor*h.last.Sub(h.previous), silenceFloor)
		if now.Sub(h.last) < wait {
			continue
		}
		h.reported = true
		kind := binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP
		alerts = append(alerts, &binwatchv1.IntegrityAlert{
			Id:       rules.AlertID(host, kind, "silent", h.collectorID, strconv.FormatUint(h.seq, 10)),
			Kind:     kind,
			Severity: binwatchv1.Severity_SEVERITY_MEDIUM,
			Rule:     "binwatch.telemetry_gap",
			Time:     timestamppb.New(now),
			Host:     &binwatchv1.AlertHost{Id: host, Hostname: h.hostname, BootId: h.bootID},
			Message: fmt.Sprintf("no scan from host %s since %s (scan %d); its processes are not being checked",
				host, h.last.UTC().Format(time.RFC3339), h.seq),
			Detail: fmt.Sprintf("scans arrived %s apart before; the collector may be stopped, unable to reach NATS, or stuck reading a file",
				h.last.Sub(h.previous).Round(time.Millisecond)),
		})
	}
	return alerts
}

// watchSilence raises telemetry_gap for overdue hosts until ctx ends.
func (a *Agent) watchSilence(ctx context.Context) {
	tick := time.NewTicker(silenceCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, al := range a.silentHosts(a.cfg.Now()) {
			a.count.updateHost(al.GetHost().GetId(), func(h *HostCounters) { h.Gaps++ })
			a.log.Warn("host silent", "host", al.GetHost().GetId(), "message", al.Message)
			a.enqueue(al)
		}
	}
}
