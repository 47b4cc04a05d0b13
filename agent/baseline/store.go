// Package baseline keeps the agent's persistent state: for each host and
// executable path the last known binary, and for each host the ids of
// alerts already raised. Both are bounded in size and age, per host and in
// total, and survive restarts in one state file that is replaced
// atomically.
package baseline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultMaxEntries        = 100000
	DefaultMaxEntriesPerHost = 20000
	DefaultMaxAge            = 90 * 24 * time.Hour
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
	// MaxEntries bounds the baselines of all hosts together and,
	// separately, the alert ids of all hosts. Past it the least recently
	// seen entry of the host with the most entries is evicted. Default
	// DefaultMaxEntries.
	MaxEntries int
	// MaxEntriesPerHost bounds the baselines of one host and, separately,
	// its alert ids. Past it the host's least recently seen entry is
	// evicted, so a host that reports many paths or alerts pushes out only
	// its own entries. Default DefaultMaxEntriesPerHost.
	MaxEntriesPerHost int
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
	if o.MaxEntriesPerHost < 0 {
		return o, fmt.Errorf("baseline: invalid MaxEntriesPerHost %d: want 0 (default %d) or more", o.MaxEntriesPerHost, DefaultMaxEntriesPerHost)
	}
	if o.MaxAge < 0 {
		return o, fmt.Errorf("baseline: invalid MaxAge %s: want 0 (default %s) or more", o.MaxAge, DefaultMaxAge)
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxEntriesPerHost == 0 {
		o.MaxEntriesPerHost = DefaultMaxEntriesPerHost
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

// key joins host and path, or host and alert id, without ambiguity: a
// length prefix ends the host, so any bytes may follow.
func key(host string, path []byte) string {
	var b strings.Builder
	writeKeyHost(&b, host, len(path))
	b.Write(path)
	return b.String()
}

// alertKey is key for an alert id, without copying the id to a []byte.
func alertKey(host, alertID string) string {
	var b strings.Builder
	writeKeyHost(&b, host, len(alertID))
	b.WriteString(alertID)
	return b.String()
}

// writeKeyHost starts a key of host with room for rest more bytes.
func writeKeyHost(b *strings.Builder, host string, rest int) {
	var prefix [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(prefix[:], uint64(len(host)))
	b.Grow(n + len(host) + rest)
	b.Write(prefix[:n])
	b.WriteString(host)
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
// LastSeen with the current time. When host has more than
// MaxEntriesPerHost baselines, its least recently seen is evicted. When
// all hosts together have more than MaxEntries, the least recently seen
// baseline of the host with the most is evicted.
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
	s.baselines.insert(host, key(host, path), e, e.LastSeen)
	s.baselines.enforce()
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

// MarkAlerted records that the alert with alertID was raised for host and
// reports whether this is the first time. A known id has its last-seen
// time refreshed, so an alert stays suppressed while its condition
// persists. An id not marked for MaxAge is pruned, and its alert is raised
// again. Alert ids are bounded per host by MaxEntriesPerHost and in total
// by MaxEntries, evicted as Put evicts baselines.
func (s *Store) MarkAlerted(host, alertID string) (first bool) {
	now := s.now()
	k := alertKey(host, alertID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.alerts.get(k); ok {
		s.refresh(func() { s.alerts.setSeen(it, now) }, it.seen, it.saved, now)
		return false
	}
	first = true
	// A state file of version 1 has alert ids without their host, kept
	// under the empty host until their host marks them again.
	if host != "" && s.alerts.hostLen("") > 0 {
		if it, ok := s.alerts.get(alertKey("", alertID)); ok {
			s.alerts.remove(it)
			first = false
		}
	}
	s.alerts.insert(host, k, struct{}{}, now)
	s.alerts.enforce()
	s.dirty = true
	return first
}

// ForgetAlert removes alertID of host from the raised alerts, so that the
// next MarkAlerted of it reports first again. It is meant for an alert
// that could not be delivered, and reports whether the id was present.
func (s *Store) ForgetAlert(host, alertID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.alerts.get(alertKey(host, alertID))
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

// HostLen returns the number of baselines and of raised alert ids kept
// for host.
func (s *Store) HostLen(host string) (baselines, alerts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baselines.hostLen(host), s.alerts.hostLen(host)
}

// Evictions returns the number of baselines and alert ids evicted since
// Open because a bound (MaxEntries or MaxEntriesPerHost) was reached,
// Open's own evictions included. Entries pruned for age are not counted.
func (s *Store) Evictions() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baselines.evicted + s.alerts.evicted
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// prune removes entries last seen more than MaxAge ago and evicts past
// the bounds. The caller holds s.mu.
func (s *Store) prune() {
	cutoff := s.now().Add(-s.opts.MaxAge)
	n := s.baselines.trim(cutoff)
	n += s.alerts.trim(cutoff)
	if n > 0 {
		s.dirty = true
	}
}
