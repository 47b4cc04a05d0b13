package baseline

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	shaA = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	shaB = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
)

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(t *testing.T, path string, o Options) *Store {
	t.Helper()
	s, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func save(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func TestOpenMissingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sub")
	path := filepath.Join(dir, "baseline.json")
	s := openStore(t, path, Options{})
	if n := s.Len(); n != 0 {
		t.Errorf("Len of new store = %d, want 0", n)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("state directory not created: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o700 {
		t.Errorf("state directory mode = %o, want 700", mode)
	}
	save(t, s)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Save of unchanged empty store wrote %s (stat error %v)", path, err)
	}
}

func TestPersistAcrossOpen(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "baseline.json")
	s := openStore(t, path, Options{Now: clk.Now})
	first := clk.Now().Add(-48 * time.Hour)
	s.Put("web-01", []byte("/usr/bin/ls"), Entry{SHA256: shaA, SSDeep: "3:uG:uG", FirstSeen: first})
	s.Put("web-01", []byte("/usr/sbin/sshd"), Entry{SHA256: shaB})
	if !s.MarkAlerted("h", "alert-1") {
		t.Fatal("MarkAlerted(alert-1) on new store = false, want true")
	}
	save(t, s)

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("state file mode = %o, want 600", mode)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory has %d entries, want only the state file: %v", len(entries), entries)
	}

	r := openStore(t, path, Options{Now: clk.Now})
	if n := r.Len(); n != 2 {
		t.Errorf("Len after reopen = %d, want 2", n)
	}
	got, ok := r.Get("web-01", []byte("/usr/bin/ls"))
	want := Entry{SHA256: shaA, SSDeep: "3:uG:uG", FirstSeen: first, LastSeen: clk.Now()}
	if !ok || got != want {
		t.Errorf("Get after reopen = %+v, %v, want %+v, true", got, ok, want)
	}
	if r.MarkAlerted("h", "alert-1") {
		t.Error("MarkAlerted(alert-1) after reopen = true, want false")
	}
	if !r.MarkAlerted("h", "alert-2") {
		t.Error("MarkAlerted(alert-2) after reopen = false, want true")
	}
}

func TestRawPathsRoundTrip(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "baseline.json")
	paths := [][]byte{
		[]byte("/opt/\xff\xfe/bin"),
		[]byte("/tmp/new\nline"),
		[]byte("/tmp/x (deleted)"),
		[]byte("/usr/bin/caf\xc3\xa9"),
		[]byte("/bad/\xc3"),
		[]byte("/nul/a\x00b"),
		{},
	}
	s := openStore(t, path, Options{Now: clk.Now})
	for i, p := range paths {
		s.Put("host", p, Entry{SHA256: fmt.Sprintf("%064x", i)})
	}
	save(t, s)
	r := openStore(t, path, Options{Now: clk.Now})
	if n := r.Len(); n != len(paths) {
		t.Fatalf("Len after reopen = %d, want %d", n, len(paths))
	}
	for i, p := range paths {
		got, ok := r.Get("host", p)
		if want := fmt.Sprintf("%064x", i); !ok || got.SHA256 != want {
			t.Errorf("Get(%q) after reopen = %q, %v, want %q, true", p, got.SHA256, ok, want)
		}
	}
}

func TestHostAndPathKeptApart(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{})
	s.Put("a", []byte("bc"), Entry{SHA256: shaA})
	s.Put("ab", []byte("c"), Entry{SHA256: shaB})
	if got, _ := s.Get("a", []byte("bc")); got.SHA256 != shaA {
		t.Errorf("Get(a, bc) = %q, want %q", got.SHA256, shaA)
	}
	if got, _ := s.Get("ab", []byte("c")); got.SHA256 != shaB {
		t.Errorf("Get(ab, c) = %q, want %q", got.SHA256, shaB)
	}
	if _, ok := s.Get("other", []byte("bc")); ok {
		t.Error("Get of another host's path found an entry")
	}
}

func TestEvictLeastRecentlySeen(t *testing.T) {
	clk := newClock()
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{MaxEntries: 3, Now: clk.Now})
	for _, p := range []string{"/a", "/b", "/c"} {
		s.Put("h", []byte(p), Entry{SHA256: shaA})
		clk.Advance(time.Minute)
	}
	s.Touch("h", []byte("/a")) // /b is now the least recently seen
	clk.Advance(time.Minute)
	s.Put("h", []byte("/d"), Entry{SHA256: shaA})

	if n := s.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	for _, tt := range []struct {
		path string
		want bool
	}{{"/a", true}, {"/b", false}, {"/c", true}, {"/d", true}} {
		if _, ok := s.Get("h", []byte(tt.path)); ok != tt.want {
			t.Errorf("Get(%s) found = %v, want %v", tt.path, ok, tt.want)
		}
	}
}

func TestEvictOnOpenWithSmallerBound(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.json")
	s := openStore(t, path, Options{Now: clk.Now})
	for i := range 5 {
		s.Put("h", []byte{byte('a' + i)}, Entry{SHA256: shaA})
		clk.Advance(time.Second)
	}
	save(t, s)
	r := openStore(t, path, Options{MaxEntries: 2, Now: clk.Now})
	if n := r.Len(); n != 2 {
		t.Errorf("Len after reopen with MaxEntries 2 = %d, want 2", n)
	}
	if _, ok := r.Get("h", []byte("e")); !ok {
		t.Error("most recently seen entry evicted")
	}
}

func TestAging(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.json")
	opts := Options{MaxAge: 10 * 24 * time.Hour, Now: clk.Now}
	s := openStore(t, path, opts)
	s.Put("h", []byte("/old"), Entry{SHA256: shaA})
	s.MarkAlerted("h", "old-alert")
	clk.Advance(6 * 24 * time.Hour)
	s.Put("h", []byte("/new"), Entry{SHA256: shaB})
	s.MarkAlerted("h", "new-alert")
	save(t, s)

	clk.Advance(5 * 24 * time.Hour) // /old is 11 days old, /new 5 days
	r := openStore(t, path, opts)
	if _, ok := r.Get("h", []byte("/old")); ok {
		t.Error("entry older than MaxAge kept by Open")
	}
	if _, ok := r.Get("h", []byte("/new")); !ok {
		t.Error("entry younger than MaxAge pruned by Open")
	}
	if !r.MarkAlerted("h", "old-alert") {
		t.Error("MarkAlerted of an alert id older than MaxAge = false, want true")
	}
	if r.MarkAlerted("h", "new-alert") {
		t.Error("MarkAlerted of an alert id younger than MaxAge = true, want false")
	}

	clk.Advance(6 * 24 * time.Hour) // /new is 11 days old
	save(t, r)
	if n := r.Len(); n != 0 {
		t.Errorf("Len after Save past MaxAge = %d, want 0", n)
	}
}

func TestTouchKeepsEntryAlive(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.json")
	opts := Options{MaxAge: 24 * time.Hour, Now: clk.Now}
	s := openStore(t, path, opts)
	s.Put("h", []byte("/bin/x"), Entry{SHA256: shaA})
	save(t, s)
	for range 5 {
		clk.Advance(20 * time.Hour)
		s.Touch("h", []byte("/bin/x"))
		save(t, s)
	}
	r := openStore(t, path, opts)
	got, ok := r.Get("h", []byte("/bin/x"))
	if !ok {
		t.Fatal("entry touched every 20 h pruned with MaxAge 24 h")
	}
	if !got.LastSeen.Equal(clk.Now()) {
		t.Errorf("LastSeen = %v, want %v", got.LastSeen, clk.Now())
	}
}

func TestMarkAlertedBounded(t *testing.T) {
	clk := newClock()
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{MaxEntries: 2, Now: clk.Now})
	for _, id := range []string{"a", "b", "c"} {
		if !s.MarkAlerted("h", id) {
			t.Errorf("MarkAlerted(%s) first time = false, want true", id)
		}
		clk.Advance(time.Minute)
	}
	if n := s.AlertCount(); n != 2 {
		t.Errorf("AlertCount = %d, want 2", n)
	}
	if s.MarkAlerted("h", "c") {
		t.Error("MarkAlerted(c) second time = true, want false")
	}
	if !s.MarkAlerted("h", "a") {
		t.Error("MarkAlerted(a) after eviction = false, want true")
	}
}

func TestForgetAlert(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{})
	s.MarkAlerted("h", "x")
	if !s.ForgetAlert("h", "x") {
		t.Error("ForgetAlert(x) = false, want true")
	}
	if s.ForgetAlert("h", "x") {
		t.Error("ForgetAlert(x) second time = true, want false")
	}
	if !s.MarkAlerted("h", "x") {
		t.Error("MarkAlerted(x) after ForgetAlert = false, want true")
	}
}

func TestSaveOnlyWhenChanged(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.json")
	s := openStore(t, path, Options{Now: clk.Now})
	s.Put("h", []byte("/bin/x"), Entry{SHA256: shaA})
	s.MarkAlerted("h", "id")
	save(t, s)

	written := func() bool {
		t.Helper()
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		save(t, s)
		_, err := os.Stat(path)
		if err == nil {
			return true
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return false
	}
	if written() {
		t.Error("Save without changes wrote the file")
	}
	clk.Advance(persistInterval / 2)
	s.Touch("h", []byte("/bin/x"))
	s.MarkAlerted("h", "id")
	if written() {
		t.Errorf("Save after Touch and MarkAlerted within %s wrote the file", persistInterval)
	}
	clk.Advance(persistInterval / 2)
	s.Touch("h", []byte("/bin/x"))
	if !written() {
		t.Errorf("Save after Touch %s later did not write the file", persistInterval)
	}
	clk.Advance(persistInterval)
	s.MarkAlerted("h", "id")
	if !written() {
		t.Errorf("Save after MarkAlerted %s later did not write the file", persistInterval)
	}
	s.Put("h", []byte("/bin/x"), Entry{SHA256: shaB})
	if !written() {
		t.Error("Save after Put did not write the file")
	}
}

func TestOpenCorruptFile(t *testing.T) {
	valid := `{"version":2,"baselines":[{"host":"h","path":"L2Jpbi94","sha256":"` + shaA +
		`","first_seen":"2025-01-01T00:00:00Z","last_seen":"2025-01-02T00:00:00Z"}],"alerts":[]}`
	v1 := strings.Replace(valid, `"version":2`, `"version":1`, 1)
	tests := []struct {
		name string
		data string
	}{
		{"garbage", "\x00\x01not json"},
		{"truncated", valid[:len(valid)-20]},
		{"empty", ""},
		{"other version", strings.Replace(valid, `"version":2`, `"version":3`, 1)},
		{"no version", strings.Replace(valid, `"version":2,`, ``, 1)},
		{"unknown field", strings.Replace(valid, `"version":2`, `"version":2,"extra":true`, 1)},
		{"path not base64", strings.Replace(valid, `L2Jpbi94`, `%%%`, 1)},
		{"missing sha256", strings.Replace(valid, shaA, ``, 1)},
		{"trailing data", valid + "{}"},
		{"duplicate alert", strings.Replace(valid, `"alerts":[]`,
			`"alerts":[{"host":"h","id":"x","last_seen":"2025-01-01T00:00:00Z"},{"host":"h","id":"x","last_seen":"2025-01-01T00:00:00Z"}]`, 1)},
		{"duplicate version 1 alert", strings.Replace(v1, `"alerts":[]`,
			`"alerts":[{"id":"x","last_seen":"2025-01-01T00:00:00Z"},{"id":"x","last_seen":"2025-01-01T00:00:00Z"}]`, 1)},
		{"version 1 alert with host", strings.Replace(v1, `"alerts":[]`,
			`"alerts":[{"host":"h","id":"x","last_seen":"2025-01-01T00:00:00Z"}]`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "baseline.json")
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, %v, want an error wrapping ErrCorrupt", s, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("Open error %q does not name %s", err, path)
			}
			data, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(data, []byte(tt.data)) {
				t.Errorf("corrupt state file changed by Open: %q, %v", data, err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "baseline.json")
		if err := os.WriteFile(path, []byte(valid), 0o600); err != nil {
			t.Fatal(err)
		}
		clk := &clock{t: time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC)}
		s := openStore(t, path, Options{Now: clk.Now})
		if got, ok := s.Get("h", []byte("/bin/x")); !ok || got.SHA256 != shaA {
			t.Errorf("Get(h, /bin/x) = %+v, %v, want sha256 %s", got, ok, shaA)
		}
	})
}

func TestSaveFailureKeepsChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "baseline.json")
	s := openStore(t, path, Options{})
	s.Put("h", []byte("/bin/x"), Entry{SHA256: shaA})
	// A directory at the state file's path makes the rename fail.
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	err := s.Save()
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Save over a directory = %v, want an error naming %s", err, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("failed Save left %d entries in the directory, want 1: %v", len(entries), entries)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	save(t, s)
	r := openStore(t, path, Options{})
	if _, ok := r.Get("h", []byte("/bin/x")); !ok {
		t.Error("entry lost after a failed Save and a successful retry")
	}
}

func TestOpenInvalidOptions(t *testing.T) {
	for _, o := range []Options{{MaxEntries: -1}, {MaxAge: -time.Second}} {
		if _, err := Open(filepath.Join(t.TempDir(), "b.json"), o); err == nil {
			t.Errorf("Open with %+v succeeded, want an error", o)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.json")
	s := openStore(t, path, Options{MaxEntries: 50})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := []byte(fmt.Sprintf("/bin/%d-%d", g, i%80))
				s.Put("h", p, Entry{SHA256: shaA})
				s.Get("h", p)
				s.Touch("h", p)
				s.MarkAlerted("h", string(p))
				if i%50 == 0 {
					if err := s.Save(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	save(t, s)
	if n := s.Len(); n != 50 {
		t.Errorf("Len = %d, want 50", n)
	}
	r := openStore(t, path, Options{MaxEntries: 50})
	if n := r.Len(); n != 50 {
		t.Errorf("Len after reopen = %d, want 50", n)
	}
}
