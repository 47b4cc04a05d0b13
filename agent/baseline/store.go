// Package baseline keeps the agent's persistent state: for each host and
// executable path the last known binary, and the ids of alerts already
// raised. Both are bounded in size and age, and survive restarts in one
// state file that is replaced atomically.
package baseline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultMaxEntries = 100000
	DefaultMaxAge     = 90 * 24 * time.Hour
)

// persistInterval is how far Touch and MarkAlerted must move an entry's
// last-seen time past the one in the state file before the store counts
// as changed. Without it every scan would rewrite the file. A last-seen
// time up to this much too old after a restart only affects aging and
// eviction, which work in days.
const persistInterval = time.Hour

// ErrCorrupt is wrapped by the error Open returns for a state file that
// exists but cannot be read as one.
var ErrCorrupt = errors.New("corrupt state file")

// Entry is the baseline of one executable path on one host.
type Entry struct {
	// SHA256 is the lower-case hex SHA-256 of the binary.
	SHA256 string
	// SSDeep is the binary's ssdeep digest, empty when unknown.
	SSDeep string
	// FirstSeen is when this binary was first seen at the path.
	FirstSeen time.Time
	// LastSeen is when the path was last seen running this binary. Aging
	// and eviction use it.
	LastSeen time.Time
}

// Options bounds a Store. Zero values select the defaults.
type Options struct {
	// MaxEntries bounds the baselines and, separately, the alert ids kept.
	// Past it the least recently seen are evicted. Default
	// DefaultMaxEntries.
	MaxEntries int
	// MaxAge is how long an entry is kept after it was last seen. Older
	// entries are pruned by Open and Save. Default DefaultMaxAge.
	MaxAge time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxEntries < 0 {
		return o, fmt.Errorf("baseline: invalid MaxEntries %d: want 0 (default %d) or more", o.MaxEntries, DefaultMaxEntries)
	}
	if o.MaxAge < 0 {
		return o, fmt.Errorf("baseline: invalid MaxAge %s: want 0 (default %s) or more", o.MaxAge, DefaultMaxAge)
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Store holds baselines and raised alert ids in memory and saves them to
// one file. It is safe for concurrent use.
type Store struct {
	path string
	opts Options

	// saveMu serialises Save so that renames happen in snapshot order.
	saveMu sync.Mutex

	mu        sync.Mutex
	baselines *table[Entry]
	alerts    *table[struct{}]
	dirty     bool
}

// key joins host and path without ambiguity: a length prefix ends the
// host, so any bytes may follow as the path.
func key(host string, path []byte) string {
	k := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(host)+len(path)), uint64(len(host)))
	k = append(k, host...)
	k = append(k, path...)
	return string(k)
}

// splitKey reverses key.
func splitKey(k string) (host string, path []byte) {
	n, size := binary.Uvarint([]byte(k))
	rest := k[size:]
	return rest[:n], []byte(rest[n:])
}

func (s *Store) now() time.Time { return s.opts.Now().UTC().Round(0) }

// Get returns the baseline of path on host.
func (s *Store) Get(host string, path []byte) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.baselines.get(key(host, path))
	if !ok {
		return Entry{}, false
	}
	e := it.value
	e.LastSeen = it.seen
	return e, true
}

// Put sets the baseline of path on host to e, filling a zero FirstSeen or
// LastSeen with the current time. When more than MaxEntries baselines
// remain, the least recently seen is evicted.
func (s *Store) Put(host string, path []byte, e Entry) {
	now := s.now()
	if e.FirstSeen.IsZero() {
		e.FirstSeen = now
	}
	if e.LastSeen.IsZero() {
		e.LastSeen = now
	}
	e.FirstSeen = e.FirstSeen.UTC().Round(0)
	e.LastSeen = e.LastSeen.UTC().Round(0)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.baselines.put(key(host, path), e, e.LastSeen)
	s.baselines.trim(time.Time{}, s.opts.MaxEntries)
	s.dirty = true
}

// Touch sets the last-seen time of path's baseline on host to now, if
// there is a baseline and now is later.
func (s *Store) Touch(host string, path []byte) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.baselines.get(key(host, path)); ok {
		s.refresh(func() { s.baselines.setSeen(it, now) }, it.seen, it.saved, now)
	}
}

// refresh runs set when now is after seen and marks the store changed
// when the state file's last-seen time, saved, is persistInterval old.
func (s *Store) refresh(set func(), seen, saved, now time.Time) {
	if !now.After(seen) {
		return
	}
	set()
	if now.Sub(saved) >= persistInterval {
		s.dirty = true
	}
}

// MarkAlerted records that the alert with alertID was raised and reports
// whether this is the first time. A known id has its last-seen time
// refreshed, so an alert stays suppressed while its condition persists.
// An id not marked for MaxAge is pruned, and its alert is raised again.
// Past MaxEntries ids the least recently seen is evicted.
func (s *Store) MarkAlerted(alertID string) (first bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.alerts.get(alertID); ok {
		s.refresh(func() { s.alerts.setSeen(it, now) }, it.seen, it.saved, now)
		return false
	}
	s.alerts.put(alertID, struct{}{}, now)
	s.alerts.trim(time.Time{}, s.opts.MaxEntries)
	s.dirty = true
	return true
}

// ForgetAlert removes alertID from the raised alerts, so that the next
// MarkAlerted of it reports first again. It is meant for an alert that
// could not be delivered, and reports whether the id was present.
func (s *Store) ForgetAlert(alertID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.alerts.get(alertID)
	if !ok {
		return false
	}
	s.alerts.remove(it)
	s.dirty = true
	return true
}

// Len returns the number of baselines.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baselines.len()
}

// AlertCount returns the number of raised alert ids kept.
func (s *Store) AlertCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alerts.len()
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// prune removes entries last seen more than MaxAge ago and evicts past
// MaxEntries. The caller holds s.mu.
func (s *Store) prune() {
	cutoff := s.now().Add(-s.opts.MaxAge)
	n := s.baselines.trim(cutoff, s.opts.MaxEntries)
	n += s.alerts.trim(cutoff, s.opts.MaxEntries)
	if n > 0 {
		s.dirty = true
	}
}
