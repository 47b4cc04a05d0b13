package baseline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// formatVersion is the version of the state file's JSON format that Save
// writes. Open also reads version 1, whose alert ids have no host, and
// rejects any other version.
const (
	formatVersion   = 2
	formatVersionV1 = 1
)

// stateFile is the JSON form of the state file. Paths are raw bytes,
// which encoding/json writes as base64, so any path round-trips exactly.
type stateFile struct {
	Version   int             `json:"version"`
	Baselines []baselineEntry `json:"baselines"`
	Alerts    []alertEntry    `json:"alerts"`
}

type baselineEntry struct {
	Host      string    `json:"host"`
	Path      []byte    `json:"path"`
	SHA256    string    `json:"sha256"`
	SSDeep    string    `json:"ssdeep,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// alertEntry is a raised alert id. Host is empty in version 1 and for ids
// loaded from version 1 that no host marked again since.
type alertEntry struct {
	Host     string    `json:"host,omitempty"`
	ID       string    `json:"id"`
	LastSeen time.Time `json:"last_seen"`
}

// Open loads the store saved at path. A missing file gives an empty store.
// A file that cannot be parsed is left in place, and Open returns an error
// that wraps ErrCorrupt and names the path. The directory is created with
// mode 0700 when missing. Entries older than MaxAge are pruned, and the
// least recently seen past MaxEntriesPerHost and MaxEntries are evicted.
func Open(path string, o Options) (*Store, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("baseline: open: empty state file path")
	}
	s := &Store{
		path:      path,
		opts:      opts,
		baselines: newTable[Entry](opts.MaxEntriesPerHost, opts.MaxEntries),
		alerts:    newTable[struct{}](opts.MaxEntriesPerHost, opts.MaxEntries),
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("baseline: open %s: %w", path, err)
	}

	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("baseline: open %s: %w", path, err)
	}
	if err := s.load(data); err != nil {
		return nil, fmt.Errorf("baseline: open %s: %w: %w (move the file away to start with empty baselines)", path, ErrCorrupt, err)
	}

	s.mu.Lock()
	s.prune()
	s.mu.Unlock()
	return s, nil
}

func (s *Store) load(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f stateFile
	if err := dec.Decode(&f); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	if f.Version != formatVersion && f.Version != formatVersionV1 {
		return fmt.Errorf("format version %d, want %d or %d", f.Version, formatVersionV1, formatVersion)
	}
	for i, b := range f.Baselines {
		if b.SHA256 == "" || b.LastSeen.IsZero() || b.FirstSeen.IsZero() {
			return fmt.Errorf("baselines[%d]: missing sha256, first_seen or last_seen", i)
		}
		k := key(b.Host, b.Path)
		if _, ok := s.baselines.get(k); ok {
			return fmt.Errorf("baselines[%d]: duplicate host %q and path %q", i, b.Host, b.Path)
		}
		e := Entry{SHA256: b.SHA256, SSDeep: b.SSDeep, FirstSeen: b.FirstSeen.UTC(), LastSeen: b.LastSeen.UTC()}
		it := s.baselines.insert(b.Host, k, e, e.LastSeen)
		it.saved = e.LastSeen
	}
	for i, a := range f.Alerts {
		if a.ID == "" || a.LastSeen.IsZero() {
			return fmt.Errorf("alerts[%d]: missing id or last_seen", i)
		}
		if f.Version == formatVersionV1 && a.Host != "" {
			return fmt.Errorf("alerts[%d]: host %q in format version %d, which has no alert hosts", i, a.Host, formatVersionV1)
		}
		k := alertKey(a.Host, a.ID)
		if _, ok := s.alerts.get(k); ok {
			return fmt.Errorf("alerts[%d]: duplicate host %q and id %q", i, a.Host, a.ID)
		}
		it := s.alerts.insert(a.Host, k, struct{}{}, a.LastSeen.UTC())
		it.saved = it.seen
	}
	return nil
}

// Save writes the store to its file if it changed since it was loaded or
// last saved, after pruning entries older than MaxAge. The file is
// replaced atomically: a temporary file in the same directory is written
// with mode 0600, synced and renamed over the old one, and the directory
// is synced, so a crash leaves either the old or the new file.
func (s *Store) Save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()

	s.mu.Lock()
	s.prune()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	f := s.snapshot()
	s.dirty = false
	s.mu.Unlock()

	if err := s.write(f); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	return nil
}

// snapshot copies the store into its file form, sorted so that equal
// stores give equal files, and records the saved last-seen times. The
// caller holds s.mu.
func (s *Store) snapshot() *stateFile {
	f := &stateFile{
		Version:   formatVersion,
		Baselines: make([]baselineEntry, 0, s.baselines.len()),
		Alerts:    make([]alertEntry, 0, s.alerts.len()),
	}
	for _, it := range sortedItems(s.baselines) {
		host, path := splitKey(it.key)
		f.Baselines = append(f.Baselines, baselineEntry{
			Host: host, Path: path, SHA256: it.value.SHA256, SSDeep: it.value.SSDeep,
			FirstSeen: it.value.FirstSeen, LastSeen: it.seen,
		})
		it.saved = it.seen
	}
	for _, it := range sortedItems(s.alerts) {
		host, id := splitKey(it.key)
		f.Alerts = append(f.Alerts, alertEntry{Host: host, ID: string(id), LastSeen: it.seen})
		it.saved = it.seen
	}
	return f
}

// sortedItems returns the items of t sorted by key: by the host's length,
// then the host, then the path or alert id.
func sortedItems[V any](t *table[V]) []*item[V] {
	items := make([]*item[V], 0, t.len())
	for _, it := range t.items {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b *item[V]) int { return strings.Compare(a.key, b.key) })
	return items
}

func (s *Store) write(f *stateFile) (err error) {
	data, err := appendStateFile(make([]byte, 0, 384*(len(f.Baselines)+len(f.Alerts))+64), f)
	if err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}

	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already uses 0600, and Chmod makes the mode explicit.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}

	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("baseline: save %s: %w", s.path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("baseline: save %s: sync directory: %w", s.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
