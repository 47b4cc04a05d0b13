package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// outbox keeps alerts on disk until the server acknowledges them, so an
// alert raised while NATS or the hub is unreachable survives a restart.
// Each alert is one file named after its id; ids are hex digests.
type outbox struct {
	dir string
	max int

	mu      sync.Mutex
	pending map[string]*binwatchv1.IntegrityAlert
	order   []string // insertion order, oldest first
}

func openOutbox(dir string, max int) (*outbox, []error, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating outbox %s: %w", dir, err)
	}
	o := &outbox{dir: dir, max: max, pending: map[string]*binwatchv1.IntegrityAlert{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading outbox %s: %w", dir, err)
	}
	type loaded struct {
		id    string
		alert *binwatchv1.IntegrityAlert
		mod   int64
	}
	var all []loaded
	var problems []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("reading pending alert %s: %w", path, err))
			continue
		}
		a := &binwatchv1.IntegrityAlert{}
		if err := protojson.Unmarshal(data, a); err != nil || a.Id != id {
			problems = append(problems, fmt.Errorf("pending alert %s is corrupt, moved aside: %v", path, err))
			os.Rename(path, path+".corrupt")
			continue
		}
		info, _ := e.Info()
		var mod int64
		if info != nil {
			mod = info.ModTime().UnixNano()
		}
		all = append(all, loaded{id, a, mod})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].mod != all[j].mod {
			return all[i].mod < all[j].mod
		}
		return all[i].id < all[j].id
	})
	for _, l := range all {
		o.pending[l.id] = l.alert
		o.order = append(o.order, l.id)
	}
	return o, problems, nil
}

// add stores a on disk. When the outbox is full the oldest pending alert
// is removed and returned, so the caller can count and log it.
func (o *outbox) add(a *binwatchv1.IntegrityAlert) (*binwatchv1.IntegrityAlert, error) {
	data, err := protojson.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encoding alert %s: %w", a.Id, err)
	}
	if err := writeFileAtomic(o.dir, a.Id+".json", data); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[a.Id]; !ok {
		o.order = append(o.order, a.Id)
	}
	o.pending[a.Id] = a
	var evicted *binwatchv1.IntegrityAlert
	if len(o.order) > o.max {
		id := o.order[0]
		evicted = o.pending[id]
		o.removeLocked(id)
	}
	return evicted, nil
}

// snapshot returns the pending alerts, oldest first.
func (o *outbox) snapshot() []*binwatchv1.IntegrityAlert {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*binwatchv1.IntegrityAlert, 0, len(o.order))
	for _, id := range o.order {
		out = append(out, o.pending[id])
	}
	return out
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.order)
}

// remove deletes a delivered alert.
func (o *outbox) remove(id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeLocked(id)
}

func (o *outbox) removeLocked(id string) error {
	if _, ok := o.pending[id]; !ok {
		return nil
	}
	delete(o.pending, id)
	for i, x := range o.order {
		if x == id {
			o.order = append(o.order[:i], o.order[i+1:]...)
			break
		}
	}
	err := os.Remove(filepath.Join(o.dir, id+".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing delivered alert %s: %w", id, err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data: a temporary file in the
// same directory is written, synced and renamed, then the directory is
// synced, so a crash leaves the old or the new content.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
