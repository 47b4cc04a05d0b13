package agent

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/agent/ingest"
	"github.com/binwatch/binwatch/agent/rules"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// maxRejectionKeys bounds the set of reported rejections.
const maxRejectionKeys = 10000

// rejectedRecords counts and logs the records that validation removed
// from b. It returns one telemetry_gap alert per host, field and reason,
// the first time each is seen, because those processes went unchecked and
// a host whose records are all rejected must not look clean.
func (a *Agent) rejectedRecords(b *binwatchv1.ProcessBatch, rejected []ingest.RecordError) []*binwatchv1.IntegrityAlert {
	if len(rejected) == 0 {
		return nil
	}
	host := b.HostId
	a.count.updateHost(host, func(h *HostCounters) { h.RecordsRejected += uint64(len(rejected)) })
	var alerts []*binwatchv1.IntegrityAlert
	for _, r := range rejected {
		reason := ingest.Reason(r)
		a.count.update(func(c *Counters) { c.Dropped["record_"+reason]++ })
		field := ""
		var ie *ingest.Error
		if errors.As(r.Err, &ie) {
			field = ie.Field
		}
		if a.limit.Allow("record:" + host + ":" + reason) {
			a.log.Warn("dropped invalid record", "host", host, "pid", r.PID, "reason", reason, "error", r.Err)
		}
		key := host + "\x00" + reason + "\x00" + fieldPattern(field)
		a.mu.Lock()
		seen := a.rejections[key]
		if !seen {
			if len(a.rejections) >= maxRejectionKeys {
				clear(a.rejections)
			}
			a.rejections[key] = true
		}
		a.mu.Unlock()
		if seen {
			continue
		}
		kind := binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP
		alerts = append(alerts, &binwatchv1.IntegrityAlert{
			Id:       rules.AlertID(host, kind, "rejected-record", reason, fieldPattern(field)),
			Kind:     kind,
			Severity: binwatchv1.Severity_SEVERITY_MEDIUM,
			Rule:     "binwatch.telemetry_gap",
			Time:     timestamppb.New(a.cfg.Now()),
			Host:     &binwatchv1.AlertHost{Id: host, Hostname: b.Hostname, BootId: b.BootId},
			Process:  &binwatchv1.AlertProcess{Pid: r.PID},
			Message: fmt.Sprintf("records from host %s rejected as implausible (%s), first pid %d; those processes were not checked",
				host, reason, r.PID),
			Detail: r.Err.Error(),
		})
	}
	return alerts
}

// fieldPattern drops record indexes from a field path, such as
// "records[3].executable.running.size", so that one kind of fault is one
// key whichever record carries it.
func fieldPattern(field string) string {
	out := make([]byte, 0, len(field))
	inIndex := false
	for i := 0; i < len(field); i++ {
		c := field[i]
		switch {
		case c == '[':
			inIndex = true
			out = append(out, '[')
		case c == ']':
			inIndex = false
			out = append(out, ']')
		case inIndex && c >= '0' && c <= '9':
		default:
			out = append(out, c)
		}
	}
	return string(out)
}
