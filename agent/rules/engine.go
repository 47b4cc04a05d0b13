// Package rules derives integrity alerts from validated process batches:
// coverage_degraded, disk_mismatch and binary_change. Baselines and the
// ids of alerts already raised live in a baseline.Store, so each finding
// raises one alert across scans and agent restarts.
package rules

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/binwatch/binwatch/agent/baseline"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Bounds and default of Config.SimilarityThreshold.
const (
	MinSimilarityThreshold     = 1
	MaxSimilarityThreshold     = 99
	DefaultSimilarityThreshold = 80
)

// Config sets the rules.
type Config struct {
	// SimilarityThreshold is the ssdeep score, 1 to 99, below which a
	// changed binary raises binary_change. A score equal to it or above
	// counts as an update of the same program. The zero value is invalid,
	// so start from DefaultConfig.
	SimilarityThreshold int
	// Now returns the alert time. Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns the configuration with DefaultSimilarityThreshold.
func DefaultConfig() Config {
	return Config{SimilarityThreshold: DefaultSimilarityThreshold}
}

// Validate returns an error naming the setting, its value and the valid
// range when c is not usable.
func (c Config) Validate() error {
	t := c.SimilarityThreshold
	if t < MinSimilarityThreshold || t > MaxSimilarityThreshold {
		return fmt.Errorf("rules: invalid similarity threshold %d: valid range is %d to %d",
			t, MinSimilarityThreshold, MaxSimilarityThreshold)
	}
	return nil
}

// Engine applies the rules to batches. It is safe for concurrent use, and
// evaluates one batch at a time.
type Engine struct {
	threshold int
	now       func() time.Time
	store     *baseline.Store

	mu sync.Mutex
}

// NewEngine returns an engine that keeps baselines and raised alert ids in
// store. It fails when c is invalid or store is nil.
func NewEngine(c Config, store *baseline.Store) (*Engine, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("rules: nil baseline store")
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	return &Engine{threshold: c.SimilarityThreshold, now: now, store: store}, nil
}

// Evaluate applies the rules to b, which must have passed ingest
// validation, and returns the alerts raised for the first time, in record
// order. It updates baselines and marks the returned alerts as raised in
// the store. The caller must deliver or persist the alerts before it calls
// the store's Save, because once the store is saved the same findings
// return no alerts until their ids age out. After a crash before the Save
// they are raised again with the same ids, which JetStream de-duplicates.
func (e *Engine) Evaluate(b *binwatchv1.ProcessBatch) []*binwatchv1.IntegrityAlert {
	e.mu.Lock()
	defer e.mu.Unlock()

	ev := &evaluation{engine: e, batch: b, now: e.now()}
	if b.GetStats().GetPartialVisibility() {
		ev.partialVisibility()
	}
	for _, r := range b.GetRecords() {
		x := r.GetExecutable()
		if x == nil {
			continue
		}
		if x.GetCoverage() == binwatchv1.Coverage_COVERAGE_DEGRADED {
			ev.coverageDegraded(r)
		}
		switch x.GetState() {
		case binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED,
			binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED,
			binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD:
			ev.diskMismatch(r)
		case binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK:
			if x.GetRunning().GetSha256() != "" {
				ev.binaryChange(r)
			}
		}
	}
	return ev.alerts
}

// evaluation is the state of one Evaluate call.
type evaluation struct {
	engine *Engine
	batch  *binwatchv1.ProcessBatch
	now    time.Time
	alerts []*binwatchv1.IntegrityAlert
}

// first marks id as raised for the batch's host and reports whether the
// store had not seen it before.
func (ev *evaluation) first(id string) bool {
	return ev.engine.store.MarkAlerted(ev.batch.GetHostId(), id)
}
