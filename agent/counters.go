package agent

import (
	"maps"
	"sync"
)

// Counters are the agent's running totals since start, served by the
// NATS micro service and printed by --once.
type Counters struct {
	BatchesReceived uint64            `json:"batches_received"`
	RecordsReceived uint64            `json:"records_received"`
	Scans           uint64            `json:"scans_completed"`
	Dropped         map[string]uint64 `json:"dropped_by_reason"`
	Alerts          map[string]uint64 `json:"alerts_by_kind"`
	AlertsDelivered uint64            `json:"alerts_delivered"`
	AlertsEvicted   uint64            `json:"alerts_evicted"`
	AlertsPending   int               `json:"alerts_pending"`
	SlowConsumer    uint64            `json:"slow_consumer_drops"`
	// BaselineEvictions counts baselines and alert ids removed because a
	// bound was reached; a path evicted this way is baselined again.
	BaselineEvictions uint64                   `json:"baseline_evictions"`
	Hosts             map[string]*HostCounters `json:"hosts"`
}

// HostCounters are per-host totals, from the collector's scan stats.
type HostCounters struct {
	Scans           uint64            `json:"scans"`
	Records         uint64            `json:"records"`
	CacheHits       uint64            `json:"cache_hits"`
	Hashed          uint64            `json:"executables_hashed"`
	BytesHashed     uint64            `json:"bytes_hashed"`
	Coverage        map[string]uint64 `json:"coverage_degraded_by_reason"`
	States          map[string]uint64 `json:"states"`
	Alerts          map[string]uint64 `json:"alerts_by_kind"`
	Drops           uint64            `json:"drops"`
	Gaps            uint64            `json:"gaps"`
	MissingBatches  uint64            `json:"missing_batches"`
	RecordsOversize uint64            `json:"records_oversized"`
	SequenceResets  uint64            `json:"sequence_resets"`
	RecordsRejected uint64            `json:"records_rejected"`
}

type counters struct {
	mu sync.Mutex
	c  Counters
}

func newCounters() *counters {
	return &counters{c: Counters{
		Dropped: map[string]uint64{},
		Alerts:  map[string]uint64{},
		Hosts:   map[string]*HostCounters{},
	}}
}

func (c *counters) host(id string) *HostCounters {
	h := c.c.Hosts[id]
	if h == nil {
		h = &HostCounters{Coverage: map[string]uint64{}, States: map[string]uint64{}, Alerts: map[string]uint64{}}
		c.c.Hosts[id] = h
	}
	return h
}

// maxCountedHosts bounds the per-host table, so that a flood of made-up
// host tokens cannot grow it without limit.
const maxCountedHosts = 10000

func (c *counters) update(f func(c *Counters)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.c)
}

func (c *counters) updateHost(id string, f func(h *HostCounters)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.c.Hosts[id]; !ok && len(c.c.Hosts) >= maxCountedHosts {
		id = "_other"
	}
	f(c.host(id))
}

func (c *counters) snapshot() Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.c
	s.Dropped = maps.Clone(c.c.Dropped)
	s.Alerts = maps.Clone(c.c.Alerts)
	s.Hosts = make(map[string]*HostCounters, len(c.c.Hosts))
	for id, h := range c.c.Hosts {
		hc := *h
		hc.Coverage = maps.Clone(h.Coverage)
		hc.States = maps.Clone(h.States)
		hc.Alerts = maps.Clone(h.Alerts)
		s.Hosts[id] = &hc
	}
	return s
}
