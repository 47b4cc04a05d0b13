package agent

import (
	"log/slog"
	"sync"
	"time"
)

// alertLogBudget lets up to max alert log lines per host through per
// minute, and logs how many it held back when the next minute starts, so
// a flood of alerts cannot flood the log.
type alertLogBudget struct {
	log *slog.Logger
	max int

	mu    sync.Mutex
	hosts map[string]*alertWindow
}

type alertWindow struct {
	start      time.Time
	logged     int
	suppressed int
}

func newAlertLogBudget(log *slog.Logger, max int) *alertLogBudget {
	return &alertLogBudget{log: log, max: max, hosts: map[string]*alertWindow{}}
}

func (b *alertLogBudget) allow(host string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	w := b.hosts[host]
	if w == nil {
		if len(b.hosts) >= maxCountedHosts {
			clear(b.hosts)
		}
		w = &alertWindow{start: now}
		b.hosts[host] = w
	}
	if now.Sub(w.start) >= time.Minute {
		if w.suppressed > 0 {
			b.log.Warn("alert log lines held back; the alerts were published", "host", host,
				"count", w.suppressed, "max_per_minute", b.max)
		}
		*w = alertWindow{start: now}
	}
	if w.logged >= b.max {
		w.suppressed++
		return false
	}
	w.logged++
	return true
}
