package collector

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// ServiceName is the NATS micro service name of the collector.
const ServiceName = "binwatch-collector"

// CountersSubject is the subject of the collector's counters endpoint,
// binwatch.collector.<host>.counters, so per-host permissions can allow it.
func CountersSubject(hostID string) string {
	return "binwatch.collector." + hostID + ".counters"
}

// Totals are the collector's counters since start.
type Totals struct {
	Scans            uint64            `json:"scans"`
	ScanErrors       uint64            `json:"scan_errors"`
	Records          uint64            `json:"records"`
	Batches          uint64            `json:"batches"`
	CacheHits        uint64            `json:"cache_hits"`
	Hashed           uint64            `json:"executables_hashed"`
	BytesHashed      uint64            `json:"bytes_hashed"`
	Exited           uint64            `json:"exited"`
	Coverage         map[string]uint64 `json:"coverage_degraded_by_reason"`
	States           map[string]uint64 `json:"states"`
	RecordsOversized uint64            `json:"records_oversized"`
	LastScan         uint64            `json:"last_scan_seq"`
}

// Service serves Totals as a NATS micro service: in the stats of every
// endpoint (so `nats service stats binwatch-collector --json` shows them)
// and as JSON from the "counters" endpoint on CountersSubject.
type Service struct {
	mu  sync.Mutex
	t   Totals
	svc micro.Service
}

// StartService registers the collector's micro service on nc.
func StartService(nc *nats.Conn, hostID, version string) (*Service, error) {
	s := &Service{t: Totals{Coverage: map[string]uint64{}, States: map[string]uint64{}}}
	svc, err := micro.AddService(nc, micro.Config{
		Name:         ServiceName,
		Version:      version,
		Description:  "binwatch collector: process records of one host",
		Metadata:     map[string]string{"host_id": hostID},
		StatsHandler: func(*micro.Endpoint) any { return s.Totals() },
	})
	if err != nil {
		return nil, fmt.Errorf("collector: starting micro service: %w", err)
	}
	err = svc.AddEndpoint("counters", micro.HandlerFunc(func(r micro.Request) {
		data, err := json.Marshal(s.Totals())
		if err != nil {
			r.Error("500", err.Error(), nil)
			return
		}
		r.Respond(data)
	}), micro.WithEndpointSubject(CountersSubject(hostID)))
	if err != nil {
		svc.Stop()
		return nil, fmt.Errorf("collector: adding counters endpoint: %w", err)
	}
	s.svc = svc
	return s, nil
}

// Record adds one scan's report to the totals.
func (s *Service) Record(r ScanReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Err != nil {
		s.t.ScanErrors++
	}
	s.t.Batches += uint64(r.Publish.Batches)
	s.t.Records += uint64(r.Publish.Records)
	if r.Scan == nil {
		return
	}
	st := r.Scan.Stats
	s.t.Scans++
	s.t.LastScan = r.Scan.Seq
	s.t.CacheHits += uint64(st.CacheHits)
	s.t.Hashed += uint64(st.ExecutablesHashed)
	s.t.BytesHashed += st.BytesHashed
	s.t.Exited += uint64(st.Exited)
	s.t.RecordsOversized += uint64(r.Publish.Oversized)
	for k, v := range st.CoverageDegraded {
		s.t.Coverage[k] += uint64(v)
	}
	for k, v := range st.States {
		s.t.States[k] += uint64(v)
	}
}

// Totals returns a copy of the counters.
func (s *Service) Totals() Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.t
	t.Coverage = maps.Clone(s.t.Coverage)
	t.States = maps.Clone(s.t.States)
	return t
}

// Stop deregisters the service.
func (s *Service) Stop() error {
	if s.svc == nil {
		return nil
	}
	return s.svc.Stop()
}
