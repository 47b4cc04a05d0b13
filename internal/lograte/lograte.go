// Package lograte limits how often a repeated log line is written.
package lograte

import (
	"sync"
	"time"
)

// maxKeys bounds the table; past it the table is cleared, which at worst
// lets one extra line per key through.
const maxKeys = 1000

// Limiter lets one event per key through per interval. Callers still
// count every event; only the log line is skipped.
type Limiter struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
}

// New returns a Limiter that allows one event per key per interval.
func New(interval time.Duration) *Limiter {
	return &Limiter{interval: interval, last: map[string]time.Time{}}
}

// Allow reports whether an event for key may be logged now.
func (l *Limiter) Allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.interval {
		return false
	}
	if len(l.last) >= maxKeys {
		clear(l.last)
	}
	l.last[key] = now
	return true
}
