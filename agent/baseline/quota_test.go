package baseline

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFloodingHostKeepsOtherBaselines floods one host with more distinct
// paths than DefaultMaxEntries, with the default options. The other
// host's baselines and alert ids must survive.
func TestFloodingHostKeepsOtherBaselines(t *testing.T) {
	clk := newClock()
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{Now: clk.Now})
	victimPaths := []string{"/usr/bin/ls", "/usr/sbin/sshd", "/usr/lib/systemd/systemd"}
	for _, p := range victimPaths {
		s.Put("victim", []byte(p), Entry{SHA256: shaA})
		s.MarkAlerted("victim", "alert"+p)
	}
	clk.Advance(time.Minute)

	flood := DefaultMaxEntries + 1
	for i := range flood {
		s.Put("flood", []byte(fmt.Sprintf("/tmp/x%d", i)), Entry{SHA256: shaB})
		s.MarkAlerted("flood", fmt.Sprintf("alert%d", i))
		clk.Advance(time.Millisecond)
	}

	for _, p := range victimPaths {
		if got, ok := s.Get("victim", []byte(p)); !ok || got.SHA256 != shaA {
			t.Errorf("Get(victim, %s) after flood = %+v, %v, want the baseline", p, got, ok)
		}
		if s.MarkAlerted("victim", "alert"+p) {
			t.Errorf("MarkAlerted(victim, alert%s) after flood = true, want false", p)
		}
	}
	baselines, alerts := s.HostLen("flood")
	if baselines != DefaultMaxEntriesPerHost {
		t.Errorf("flood host has %d baselines, want %d", baselines, DefaultMaxEntriesPerHost)
	}
	if alerts != DefaultMaxEntriesPerHost {
		t.Errorf("flood host has %d alert ids, want %d", alerts, DefaultMaxEntriesPerHost)
	}
	// The newest of the flood stay.
	if _, ok := s.Get("flood", []byte(fmt.Sprintf("/tmp/x%d", flood-1))); !ok {
		t.Error("newest baseline of the flood host evicted")
	}
	if _, ok := s.Get("flood", []byte("/tmp/x0")); ok {
		t.Error("oldest baseline of the flood host kept")
	}
	want := uint64(2 * (flood - DefaultMaxEntriesPerHost))
	if got := s.Evictions(); got != want {
		t.Errorf("Evictions() = %d, want %d", got, want)
	}
}

func TestHostQuotaEvictsOwnOldest(t *testing.T) {
	clk := newClock()
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{MaxEntriesPerHost: 3, Now: clk.Now})
	for _, p := range []string{"/a", "/b", "/c"} {
		s.Put("h", []byte(p), Entry{SHA256: shaA})
		clk.Advance(time.Minute)
	}
	s.Put("other", []byte("/old"), Entry{SHA256: shaA, LastSeen: clk.Now().Add(-time.Hour)})
	s.Touch("h", []byte("/a")) // /b is now h's least recently seen
	clk.Advance(time.Minute)
	s.Put("h", []byte("/d"), Entry{SHA256: shaA})

	for _, tt := range []struct {
		host, path string
		want       bool
	}{
		{"h", "/a", true}, {"h", "/b", false}, {"h", "/c", true}, {"h", "/d", true},
		{"other", "/old", true},
	} {
		if _, ok := s.Get(tt.host, []byte(tt.path)); ok != tt.want {
			t.Errorf("Get(%s, %s) found = %v, want %v", tt.host, tt.path, ok, tt.want)
		}
	}
	if got := s.Evictions(); got != 1 {
		t.Errorf("Evictions() = %d, want 1", got)
	}
}

func TestTotalBoundEvictsLargestHost(t *testing.T) {
	clk := newClock()
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{MaxEntries: 6, MaxEntriesPerHost: 4, Now: clk.Now})
	put := func(host, path string) {
		t.Helper()
		s.Put(host, []byte(path), Entry{SHA256: shaA})
		clk.Advance(time.Minute)
	}
	put("small", "/s1") // the least recently seen entry of all
	for _, p := range []string{"/b1", "/b2", "/b3", "/b4"} {
		put("big", p)
	}
	put("small", "/s2")
	put("new", "/n1") // 7 entries: big loses /b1
	put("new", "/n2") // big and small have 3 and 2: big loses /b2

	for _, tt := range []struct {
		host, path string
		want       bool
	}{
		{"small", "/s1", true}, {"small", "/s2", true},
		{"big", "/b1", false}, {"big", "/b2", false}, {"big", "/b3", true}, {"big", "/b4", true},
		{"new", "/n1", true}, {"new", "/n2", true},
	} {
		if _, ok := s.Get(tt.host, []byte(tt.path)); ok != tt.want {
			t.Errorf("Get(%s, %s) found = %v, want %v", tt.host, tt.path, ok, tt.want)
		}
	}

	// Now three hosts have 2 entries each. Of those, small has the least
	// recently seen entry, /s1, and loses it to a fourth host.
	put("fourth", "/f1")
	if _, ok := s.Get("small", []byte("/s1")); ok {
		t.Error("Get(small, /s1) found after a tie between equal hosts, want it evicted as the oldest")
	}
	if n := s.Len(); n != 6 {
		t.Errorf("Len = %d, want 6", n)
	}
	if got := s.Evictions(); got != 3 {
		t.Errorf("Evictions() = %d, want 3", got)
	}
}

func TestMarkAlertedKeyedByHost(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "b.json"), Options{MaxEntriesPerHost: 2})
	if !s.MarkAlerted("a", "id") {
		t.Error("MarkAlerted(a, id) first time = false, want true")
	}
	if !s.MarkAlerted("b", "id") {
		t.Error("MarkAlerted(b, id) after MarkAlerted(a, id) = false, want true")
	}
	if s.MarkAlerted("a", "id") {
		t.Error("MarkAlerted(a, id) second time = true, want false")
	}
	if !s.ForgetAlert("b", "id") {
		t.Error("ForgetAlert(b, id) = false, want true")
	}
	if s.MarkAlerted("a", "id") {
		t.Error("MarkAlerted(a, id) after ForgetAlert(b, id) = true, want false")
	}
	// Host b's flood evicts only its own ids.
	for i := range 10 {
		s.MarkAlerted("b", fmt.Sprint(i))
	}
	if s.MarkAlerted("a", "id") {
		t.Error("MarkAlerted(a, id) after host b marked 10 ids = true, want false")
	}
	if _, alerts := s.HostLen("b"); alerts != 2 {
		t.Errorf("host b has %d alert ids, want 2", alerts)
	}
}

func TestEvictionsCountsOpenNotAge(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.json")
	opts := Options{MaxAge: 24 * time.Hour, Now: clk.Now}
	s := openStore(t, path, opts)
	s.Put("h", []byte("/old"), Entry{SHA256: shaA})
	clk.Advance(2 * time.Hour)
	for _, p := range []string{"/a", "/b", "/c"} {
		s.Put("h", []byte(p), Entry{SHA256: shaA})
	}
	s.MarkAlerted("h", "x")
	save(t, s)
	if got := s.Evictions(); got != 0 {
		t.Errorf("Evictions() without a bound reached = %d, want 0", got)
	}

	clk.Advance(23 * time.Hour) // /old is 25 hours old
	opts.MaxEntriesPerHost = 2
	r := openStore(t, path, opts)
	if n := r.Len(); n != 2 {
		t.Errorf("Len after Open with MaxEntriesPerHost 2 = %d, want 2", n)
	}
	if got := r.Evictions(); got != 1 {
		t.Errorf("Evictions() after Open = %d, want 1: /old aged out and one of /a, /b, /c evicted", got)
	}
}

func TestOpenVersion1(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.json")
	seen := clk.Now().Add(-time.Hour).Format(time.RFC3339)
	v1 := `{"version":1,"baselines":[{"host":"h","path":"L2Jpbi94","sha256":"` + shaA +
		`","first_seen":"` + seen + `","last_seen":"` + seen + `"}],` +
		`"alerts":[{"id":"kept","last_seen":"` + seen + `"}]}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, path, Options{Now: clk.Now})
	if got, ok := s.Get("h", []byte("/bin/x")); !ok || got.SHA256 != shaA {
		t.Errorf("Get(h, /bin/x) from version 1 = %+v, %v, want sha256 %s", got, ok, shaA)
	}
	if s.MarkAlerted("h", "kept") {
		t.Error("MarkAlerted(h, kept) of a version 1 id = true, want false")
	}
	if !s.MarkAlerted("h", "new") {
		t.Error("MarkAlerted(h, new) = false, want true")
	}
	if n := s.AlertCount(); n != 2 {
		t.Errorf("AlertCount = %d, want 2", n)
	}
	save(t, s)

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Version != formatVersion {
		t.Errorf("saved version = %d, want %d", f.Version, formatVersion)
	}
	var ids []string
	for _, a := range f.Alerts {
		ids = append(ids, a.Host+"/"+a.ID)
	}
	if want := []string{"h/kept", "h/new"}; !slices.Equal(ids, want) {
		t.Errorf("saved alerts = %v, want %v", ids, want)
	}
}

func TestOpenInvalidPerHostBound(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "b.json"), Options{MaxEntriesPerHost: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxEntriesPerHost") {
		t.Errorf("Open with MaxEntriesPerHost -1 = %v, want an error naming MaxEntriesPerHost", err)
	}
}

// modelEntry is an item of the table's reference model.
type modelEntry struct {
	host string
	seen time.Time
}

// evictModel applies the eviction rule of table.enforce by brute force.
func evictModel(m map[string]modelEntry, maxPerHost, maxTotal int) {
	for {
		count := map[string]int{}
		oldest := map[string]string{}
		for k, e := range m {
			count[e.host]++
			if o, ok := oldest[e.host]; !ok || e.seen.Before(m[o].seen) || e.seen.Equal(m[o].seen) && k < o {
				oldest[e.host] = k
			}
		}
		victim := ""
		for host, n := range count {
			if victim == "" {
				victim = host
				continue
			}
			v, o, vo := count[victim], oldest[host], oldest[victim]
			if n > v || n == v && (m[o].seen.Before(m[vo].seen) || m[o].seen.Equal(m[vo].seen) && o < vo) {
				victim = host
			}
		}
		if victim == "" || count[victim] <= maxPerHost && len(m) <= maxTotal {
			return
		}
		delete(m, oldest[victim])
	}
}

// TestTableMatchesModel runs random operations on a table and on a
// brute-force model of its rules, and compares their items after each.
func TestTableMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const maxPerHost, maxTotal = 5, 12
	tab := newTable[int](maxPerHost, maxTotal)
	model := map[string]modelEntry{}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var evictions uint64
	for step := range 20000 {
		host := fmt.Sprintf("h%d", rng.IntN(4))
		k := key(host, []byte(fmt.Sprint(rng.IntN(10))))
		seen := base.Add(time.Duration(rng.IntN(50)) * time.Second)
		switch op := rng.IntN(10); {
		case op < 6:
			tab.insert(host, k, step, seen)
			model[k] = modelEntry{host, seen}
			before := len(model)
			evictModel(model, maxPerHost, maxTotal)
			evictions += uint64(before - len(model))
			tab.enforce()
		case op < 8:
			if it, ok := tab.get(k); ok {
				tab.setSeen(it, seen)
				model[k] = modelEntry{host, seen}
			}
		case op < 9:
			if it, ok := tab.get(k); ok {
				tab.remove(it)
				delete(model, k)
			}
		default:
			for mk, e := range model {
				if e.seen.Before(seen) {
					delete(model, mk)
				}
			}
			tab.trim(seen)
		}
		if len(tab.items) != len(model) {
			t.Fatalf("step %d: table has %d items, model %d", step, len(tab.items), len(model))
		}
		for mk, e := range model {
			it, ok := tab.items[mk]
			if !ok || !it.seen.Equal(e.seen) || it.host.name != e.host {
				t.Fatalf("step %d: table item %q = %+v, %v, want host %s seen %v", step, mk, it, ok, e.host, e.seen)
			}
		}
		if tab.evicted != evictions {
			t.Fatalf("step %d: table evicted %d, model %d", step, tab.evicted, evictions)
		}
	}
	if evictions < 1000 {
		t.Errorf("model evicted %d items in 20000 steps, want at least 1000 to test eviction", evictions)
	}
}

// fillStore puts n baselines, spread over hosts of at most
// DefaultMaxEntriesPerHost each, with paths and digests of typical size.
func fillStore(b *testing.B, s *Store, n int) {
	b.Helper()
	for i := range n {
		host := fmt.Sprintf("host-%02d", i/DefaultMaxEntriesPerHost)
		path := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexec/program-%06d", i)
		s.Put(host, []byte(path), Entry{SHA256: shaA, SSDeep: "3072:DblyvE2VecD2crUvYpr0meZJfEdjdkIKacl:DyEaeS10VhEdjyIdcl"})
	}
	if s.Len() != n {
		b.Fatalf("Len = %d, want %d", s.Len(), n)
	}
}

// BenchmarkSave measures Save of 100000 baselines after one of them
// changed: snapshot, JSON encoding, write, fsync and rename.
func BenchmarkSave(b *testing.B) {
	clk := newClock()
	path := filepath.Join(b.TempDir(), "b.json")
	s, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	fillStore(b, s, DefaultMaxEntries)
	b.ReportAllocs()
	for b.Loop() {
		s.Put("host-00", []byte("/changed"), Entry{SHA256: shaB})
		if err := s.Save(); err != nil {
			b.Fatal(err)
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(info.Size()), "file-bytes")
}

// BenchmarkSaveUnchanged measures Save of 100000 baselines when nothing
// changed, which the agent does after every completed scan.
func BenchmarkSaveUnchanged(b *testing.B) {
	clk := newClock()
	s, err := Open(filepath.Join(b.TempDir(), "b.json"), Options{Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	fillStore(b, s, DefaultMaxEntries)
	if err := s.Save(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendStateFileMatchesJSON(t *testing.T) {
	at := time.Date(2025, 3, 1, 8, 0, 0, 123456789, time.UTC)
	zone := time.FixedZone("x", -(3*3600 + 30*60))
	files := []*stateFile{
		{Version: formatVersion},
		{Version: formatVersion, Baselines: []baselineEntry{}, Alerts: []alertEntry{}},
		{
			Version: formatVersion,
			Baselines: []baselineEntry{
				{Host: "web-01", Path: []byte("/usr/bin/ls"), SHA256: shaA, SSDeep: "3:uG:uG", FirstSeen: at, LastSeen: at},
				{Host: "", Path: nil, SHA256: shaB, FirstSeen: at.Truncate(time.Second), LastSeen: at.In(zone)},
				{Host: `q"b\s<>&`, Path: []byte{}, SHA256: "x", FirstSeen: time.Time{}, LastSeen: at},
				{Host: "caf\u00e9\u2028\x00\x1f\x7f", Path: []byte("/opt/\xff\xfe\n"), SHA256: "\xff", SSDeep: "\t", FirstSeen: at, LastSeen: at},
			},
			Alerts: []alertEntry{
				{ID: "legacy", LastSeen: at},
				{Host: "h", ID: "<id>", LastSeen: at.In(zone)},
				{Host: "h\xc3", ID: strings.Repeat("a", 300), LastSeen: at},
			},
		},
	}
	for i, f := range files {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendStateFile(nil, f)
		if err != nil {
			t.Fatalf("appendStateFile(files[%d]): %v", i, err)
		}
		if string(got) != string(want) {
			t.Errorf("appendStateFile(files[%d]) =\n%s\nwant\n%s", i, got, want)
		}
	}

	late := &stateFile{Version: formatVersion, Alerts: []alertEntry{{ID: "x", LastSeen: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	if _, err := json.Marshal(late); err == nil {
		t.Fatal("json.Marshal of year 10000 succeeded, want an error")
	}
	if _, err := appendStateFile(nil, late); err == nil {
		t.Error("appendStateFile of year 10000 = nil error, want an error like json.Marshal")
	}
}
