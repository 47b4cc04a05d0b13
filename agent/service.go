package agent

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/agent/rules"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// startService registers the agent as a NATS micro service whose stats
// carry the counters, and whose "counters" endpoint returns them as JSON
// on CountersSubject.
func (a *Agent) startService() (micro.Service, error) {
	svc, err := micro.AddService(a.nc, micro.Config{
		Name:        a.cfg.ServiceName,
		Version:     Version,
		Description: "binwatch agent: integrity alerts from process records",
		Metadata:    map[string]string{"host_id": a.cfg.HostID},
		StatsHandler: func(*micro.Endpoint) any {
			return a.Counters()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("agent: starting micro service %s: %w", a.cfg.ServiceName, err)
	}
	err = svc.AddEndpoint("counters", micro.HandlerFunc(func(r micro.Request) {
		data, err := json.Marshal(a.Counters())
		if err != nil {
			r.Error("500", err.Error(), nil)
			return
		}
		r.Respond(data)
	}), micro.WithEndpointSubject(CountersSubject(a.cfg.HostID)))
	if err != nil {
		svc.Stop()
		return nil, fmt.Errorf("agent: adding counters endpoint: %w", err)
	}
	return svc, nil
}

// CountersSubject is the subject of the agent's counters endpoint,
// binwatch.agent.<host>.counters, so per-host permissions can allow it.
func CountersSubject(hostID string) string {
	if hostID == "" {
		hostID = "_"
	}
	return "binwatch.agent." + hostID + ".counters"
}

// gapAlert describes lost records of one host. Its id covers the collector
// and the scans, so each gap is reported once.
func (a *Agent) gapAlert(b *binwatchv1.ProcessBatch, g *gap) *binwatchv1.IntegrityAlert {
	kind := binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP
	return &binwatchv1.IntegrityAlert{
		Id: rules.AlertID(b.HostId, kind, g.collectorID,
			strconv.FormatUint(g.fromSeq, 10), strconv.FormatUint(g.toSeq, 10),
			strconv.FormatUint(g.missingBatches, 10)),
		Kind:     kind,
		Severity: binwatchv1.Severity_SEVERITY_MEDIUM,
		Rule:     "binwatch.telemetry_gap",
		Time:     timestamppb.New(a.cfg.Now()),
		Host:     &binwatchv1.AlertHost{Id: b.HostId, Hostname: b.Hostname, BootId: b.BootId},
		Message:  fmt.Sprintf("records lost from host %s: %s", b.HostId, g),
		Detail:   "core NATS dropped process batches (reconnect buffer overflow, slow consumer or server restart); processes in them were not checked",
	}
}
