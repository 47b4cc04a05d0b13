// Package agent consumes process records from NATS, keeps per-host
// baselines, derives integrity alerts and publishes them on
// integrity.<kind>.<host>. It can also run an embedded nats-server.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/binwatch/binwatch/agent/baseline"
	"github.com/binwatch/binwatch/agent/ingest"
	"github.com/binwatch/binwatch/agent/rules"
	"github.com/binwatch/binwatch/internal/lograte"
	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Version is reported by the micro service.
var Version = "0.1.0"

// saveInterval is the shortest time between two saves of the baselines.
const saveInterval = 5 * time.Second

// maxAlertLinesPerMinute bounds the alert lines logged per host.
const maxAlertLinesPerMinute = 100

// Defaults for Config fields left at zero.
const (
	DefaultSimilarityThreshold = 80
	DefaultMaxPendingAlerts    = 100000
	// DefaultPendingLimit bounds the messages buffered for the subscription
	// before NATS drops them as a slow consumer.
	DefaultPendingLimit = 65536
)

// Config configures an Agent.
type Config struct {
	// StateDir contains baselines and the outbox of undelivered alerts.
	StateDir string
	// SimilarityThreshold is the binary_change threshold, 1 to 99.
	SimilarityThreshold int
	// Subject is the subscription, binwatch.process.* unless set.
	Subject string
	// AlertAck makes alert delivery wait for a JetStream acknowledgement,
	// retrying until one arrives. Without it alerts are published once on
	// core NATS.
	AlertAck bool
	// MaxPendingAlerts bounds the outbox.
	MaxPendingAlerts int
	// PendingLimit bounds the subscription's buffer, in messages.
	PendingLimit int
	// ServiceName is the NATS micro service name; empty disables it.
	ServiceName string
	// HostID is reported in the service metadata.
	HostID string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Agent evaluates process batches received on NATS. Start begins work and
// Close ends it; an Agent is not restarted.
type Agent struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	store  *baseline.Store
	engine *rules.Engine
	outbox *outbox
	count  *counters
	gaps   *gapTracker
	limit  *lograte.Limiter
	// alertLog bounds the log lines of alerts per host; every alert is
	// still published and counted.
	alertLog *alertLogBudget
	lastSave time.Time

	mu         sync.Mutex
	done       map[scanKey]bool // completed scans, for WaitScan
	rejections map[string]bool  // reported rejected-record kinds
	scans      map[string]*hostScans
	progress   chan struct{} // closed and replaced when a scan completes

	sub     *nats.Subscription
	svc     micro.Service
	wake    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
}

type scanKey struct {
	host, collectorID string
	seq               uint64
}

// New opens the agent's state in cfg.StateDir. It does not subscribe yet.
func New(nc *nats.Conn, cfg Config, logger *slog.Logger) (*Agent, error) {
	if cfg.SimilarityThreshold == 0 {
		cfg.SimilarityThreshold = DefaultSimilarityThreshold
	}
	if cfg.Subject == "" {
		cfg.Subject = schema.ProcessSubjectAll
	}
	if cfg.MaxPendingAlerts == 0 {
		cfg.MaxPendingAlerts = DefaultMaxPendingAlerts
	}
	if cfg.PendingLimit == 0 {
		cfg.PendingLimit = DefaultPendingLimit
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rc := rules.Config{SimilarityThreshold: cfg.SimilarityThreshold, Now: cfg.Now}
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	store, err := baseline.Open(filepath.Join(cfg.StateDir, "baselines.json"), baseline.Options{Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	engine, err := rules.NewEngine(rc, store)
	if err != nil {
		return nil, err
	}
	ob, problems, err := openOutbox(filepath.Join(cfg.StateDir, "outbox"), cfg.MaxPendingAlerts)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		logger.Error("outbox entry skipped", "error", p)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return &Agent{
		cfg: cfg, nc: nc, js: js, log: logger, store: store, engine: engine,
		outbox: ob, count: newCounters(), gaps: newGapTracker(),
		limit: lograte.New(time.Minute), done: map[scanKey]bool{}, rejections: map[string]bool{},
		scans:    map[string]*hostScans{},
		alertLog: newAlertLogBudget(logger, maxAlertLinesPerMinute),
		progress: make(chan struct{}), wake: make(chan struct{}, 1),
	}, nil
}

// Start subscribes to process records, starts alert delivery and, when
// configured, the micro service.
func (a *Agent) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	sub, err := a.nc.Subscribe(a.cfg.Subject, a.handle)
	if err != nil {
		cancel()
		return fmt.Errorf("agent: subscribing to %s: %w", a.cfg.Subject, err)
	}
	if err := sub.SetPendingLimits(a.cfg.PendingLimit, -1); err != nil {
		cancel()
		return fmt.Errorf("agent: setting pending limits: %w", err)
	}
	a.sub = sub
	fctx, fcancel := context.WithTimeout(ctx, publishTimeout)
	defer fcancel()
	if err := a.nc.FlushWithContext(fctx); err != nil {
		cancel()
		return fmt.Errorf("agent: confirming subscription to %s: %w", a.cfg.Subject, err)
	}
	if a.cfg.ServiceName != "" {
		svc, err := a.startService()
		if err != nil {
			cancel()
			return err
		}
		a.svc = svc
	}
	if n := a.outbox.len(); n > 0 {
		a.log.Info("resending undelivered alerts", "count", n)
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.deliverLoop(ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.watchSilence(ctx)
	}()
	a.log.Info("agent started", "subject", a.cfg.Subject, "state_dir", a.cfg.StateDir,
		"similarity_threshold", a.cfg.SimilarityThreshold, "alert_ack", a.cfg.AlertAck)
	return nil
}

// Close stops the subscription and delivery, and saves the state. It is
// safe to call more than once.
func (a *Agent) Close() error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var errs []error
	if a.sub != nil {
		if err := a.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	if a.svc != nil {
		if err := a.svc.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if err := a.store.Save(); err != nil {
		errs = append(errs, err)
	}
	a.log.Info("agent stopped", "alerts_pending", a.outbox.len())
	return errors.Join(errs...)
}

// Counters returns a copy of the running totals.
func (a *Agent) Counters() Counters {
	c := a.count.snapshot()
	c.AlertsPending = a.outbox.len()
	c.BaselineEvictions = a.store.Evictions()
	if a.sub != nil {
		if n, err := a.sub.Dropped(); err == nil {
			c.SlowConsumer = uint64(n)
		}
	}
	return c
}

// Connected reports whether the agent's NATS connection is up.
func (a *Agent) Connected() bool { return a.nc.IsConnected() }

// Pending returns the number of received messages not yet evaluated.
func (a *Agent) Pending() int {
	if a.sub == nil {
		return 0
	}
	n, _, err := a.sub.Pending()
	if err != nil {
		return 0
	}
	return n
}

// handle processes one message. NATS calls it from one goroutine per
// subscription, so batches are evaluated in arrival order.
func (a *Agent) handle(m *nats.Msg) {
	res, err := ingest.DecodeBatch(m.Subject, m.Header, m.Data)
	if err != nil {
		reason := ingest.Reason(err)
		a.count.update(func(c *Counters) { c.Dropped[reason]++ })
		if a.limit.Allow("drop:" + reason) {
			a.log.Warn("dropped invalid message", "subject", m.Subject, "bytes", len(m.Data),
				"reason", reason, "error", err)
		}
		return
	}
	batch := res.Batch
	host := batch.HostId
	// Rejected records are counted and reported even in a batch that
	// turns out to be a repeat, so that none goes unnoticed.
	rejectionAlerts := a.rejectedRecords(batch, res.Rejected)
	for _, al := range rejectionAlerts {
		a.enqueue(al)
	}
	g, completed, duplicate, reset := a.gaps.observe(batch)
	if duplicate {
		a.count.updateHost(host, func(h *HostCounters) { h.Drops++ })
		a.count.update(func(c *Counters) { c.Dropped["duplicate"]++ })
		if a.limit.Allow("duplicate:" + host) {
			a.log.Warn("dropped repeated batch", "host", host, "scan", batch.ScanSeq,
				"batch", batch.BatchIndex, "collector", batch.CollectorId)
		}
		return
	}
	if reset {
		// Evaluated like any batch: the rules are idempotent, and dropping
		// would let one forged sequence number blind the agent.
		a.count.updateHost(host, func(h *HostCounters) { h.SequenceResets++ })
		if a.limit.Allow("reset:" + host) {
			a.log.Warn("scan sequence went back; a batch was replayed or forged", "host", host,
				"scan", batch.ScanSeq, "collector", batch.CollectorId)
		}
	}
	a.count.update(func(c *Counters) {
		c.BatchesReceived++
		c.RecordsReceived += uint64(len(batch.Records))
	})
	var alerts []*binwatchv1.IntegrityAlert
	if g != nil {
		a.count.updateHost(host, func(h *HostCounters) {
			h.Gaps++
			h.MissingBatches += g.missingBatches
		})
		a.log.Warn("telemetry gap", "host", host, "gap", g.String())
		alerts = append(alerts, a.gapAlert(batch, g))
	}
	alerts = append(alerts, a.engine.Evaluate(batch)...)
	a.count.updateHost(host, func(h *HostCounters) {
		h.Records += uint64(len(batch.Records))
		if completed {
			addScanStats(h, batch.Stats)
		}
	})
	for _, al := range alerts {
		a.enqueue(al)
	}
	if (len(alerts) > 0 || completed) && time.Since(a.lastSave) >= saveInterval {
		// Saving rewrites the whole file, so it is done at most once per
		// saveInterval and at Close. Alerts are already in the outbox, so a
		// crash in between can only repeat an alert, with the same id.
		a.lastSave = time.Now()
		if err := a.store.Save(); err != nil && a.limit.Allow("save") {
			a.log.Error("saving baselines failed", "path", a.store.Path(), "error", err)
		}
	}
	if completed {
		a.noteScan(batch)
		a.count.update(func(c *Counters) { c.Scans++ })
		a.markDone(scanKey{host, batch.CollectorId, batch.ScanSeq})
	}
}

func addScanStats(h *HostCounters, s *binwatchv1.ScanStats) {
	if s == nil {
		return
	}
	h.Scans++
	h.CacheHits += uint64(s.CacheHits)
	h.Hashed += uint64(s.ExecutablesHashed)
	h.BytesHashed += s.BytesHashed
	h.RecordsOversize += uint64(s.RecordsOversized)
	for k, v := range s.CoverageDegraded {
		h.Coverage[k] += uint64(v)
	}
	for k, v := range s.States {
		h.States[k] += uint64(v)
	}
}

func (a *Agent) enqueue(al *binwatchv1.IntegrityAlert) {
	kind := schema.KindToken(al.Kind)
	a.count.update(func(c *Counters) { c.Alerts[kind]++ })
	a.count.updateHost(al.GetHost().GetId(), func(h *HostCounters) { h.Alerts[kind]++ })
	if a.alertLog.allow(al.GetHost().GetId()) {
		a.log.Warn("integrity alert", "kind", kind, "host", al.GetHost().GetId(), "id", al.Id,
			"pid", al.GetProcess().GetPid(), "executable", al.GetProcess().GetExecutable(), "message", al.Message)
	}
	evicted, err := a.outbox.add(al)
	if err != nil {
		// The alert is still published from memory below, but would not
		// survive a restart.
		a.log.Error("storing alert in outbox failed", "id", al.Id, "error", err)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.publishAlert(context.Background(), al); err != nil {
				a.log.Error("publishing alert failed", "id", al.Id, "error", err)
			}
		}()
		return
	}
	if evicted != nil {
		a.count.update(func(c *Counters) { c.AlertsEvicted++ })
		a.log.Error("outbox full, oldest undelivered alert dropped", "id", evicted.Id,
			"kind", schema.KindToken(evicted.Kind), "host", evicted.GetHost().GetId(), "max", a.cfg.MaxPendingAlerts)
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Agent) markDone(k scanKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.done) >= 4*maxCountedHosts {
		for k := range a.done {
			delete(a.done, k)
			break
		}
	}
	a.done[k] = true
	close(a.progress)
	a.progress = make(chan struct{})
}

// WaitScan blocks until every batch of scan seq from the collector with
// collectorID on host has been evaluated, or ctx ends.
func (a *Agent) WaitScan(ctx context.Context, host, collectorID string, seq uint64) error {
	k := scanKey{host, collectorID, seq}
	for {
		a.mu.Lock()
		ok := a.done[k]
		ch := a.progress
		a.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for scan %d of host %s: %w", seq, host, ctx.Err())
		case <-ch:
		}
	}
}

// WaitAnyScan blocks until any scan has been evaluated completely, or ctx
// ends.
func (a *Agent) WaitAnyScan(ctx context.Context) error {
	for {
		a.mu.Lock()
		ok := len(a.done) > 0
		ch := a.progress
		a.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a scan: %w", ctx.Err())
		case <-ch:
		}
	}
}
