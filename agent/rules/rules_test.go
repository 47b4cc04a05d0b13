package rules

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/agent/baseline"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

const (
	coverage = binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED
	mismatch = binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH
	change   = binwatchv1.AlertKind_ALERT_KIND_BINARY_CHANGE
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		threshold int
		valid     bool
	}{
		{-1, false}, {0, false}, {1, true}, {80, true}, {99, true}, {100, false},
	}
	for _, tt := range tests {
		err := Config{SimilarityThreshold: tt.threshold}.Validate()
		if (err == nil) != tt.valid {
			t.Errorf("Config{SimilarityThreshold: %d}.Validate() = %v, want valid %v", tt.threshold, err, tt.valid)
			continue
		}
		if err == nil {
			continue
		}
		msg := err.Error()
		for _, part := range []string{"similarity threshold", strconv.Itoa(tt.threshold), "1 to 99"} {
			if !strings.Contains(msg, part) {
				t.Errorf("Validate error %q does not contain %q", msg, part)
			}
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestNewEngineRejects(t *testing.T) {
	_, store, _ := newEngine(t, 80)
	if _, err := NewEngine(Config{}, store); err == nil {
		t.Error("NewEngine with threshold 0 succeeded")
	}
	if _, err := NewEngine(DefaultConfig(), nil); err == nil {
		t.Error("NewEngine with nil store succeeded")
	}
}

func TestCoverageDegraded(t *testing.T) {
	e, _, _ := newEngine(t, 80)
	ssdeepFailed := binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED
	readError := binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR
	denied := binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED
	unknownState := func(pid int32, path string) *binwatchv1.ProcessRecord {
		r := degraded(onDisk(pid, path, nil), denied)
		r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN
		return r
	}
	steps := []struct {
		name  string
		batch *binwatchv1.ProcessBatch
		want  []binwatchv1.AlertKind
	}{
		{"two processes of one executable", batch(
			degraded(onDisk(10, "/usr/bin/big", fileHash(1, "", "")), readError),
			degraded(onDisk(11, "/usr/bin/big", fileHash(1, "", "")), readError),
		), []binwatchv1.AlertKind{coverage}},
		{"next scan", batch(
			degraded(onDisk(10, "/usr/bin/big", fileHash(1, "", "")), readError),
			degraded(onDisk(12, "/usr/bin/big", fileHash(1, "", "")), readError),
		), nil},
		{"same file other reason", batch(
			degraded(onDisk(10, "/usr/bin/big", fileHash(1, "", "")), binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE),
		), []binwatchv1.AlertKind{coverage}},
		{"new file at path", batch(
			degraded(onDisk(13, "/usr/bin/big", fileHash(2, "", "")), readError),
		), []binwatchv1.AlertKind{coverage}},
		{"unstatable executable", batch(unknownState(20, "/opt/secret"), unknownState(21, "/opt/secret")),
			[]binwatchv1.AlertKind{coverage}},
		{"unstatable executable again", batch(unknownState(22, "/opt/secret")), nil},
		{"ssdeep failed", batch(degraded(onDisk(30, "/bin/sh", fileHash(3, sha(3), "")), ssdeepFailed)),
			[]binwatchv1.AlertKind{coverage}},
		{"ssdeep failed again", batch(degraded(onDisk(31, "/bin/sh", fileHash(3, sha(3), "")), ssdeepFailed)), nil},
	}
	for _, s := range steps {
		wantAlerts(t, s.name, e.Evaluate(s.batch), s.want...)
	}

	a := e.Evaluate(batch(degraded(onDisk(40, "/usr/lib/x\nlog", fileHash(4, sha(4), "")), ssdeepFailed)))
	wantAlerts(t, "fields", a, coverage)
	got := a[0]
	if got.GetSeverity() != binwatchv1.Severity_SEVERITY_MEDIUM {
		t.Errorf("severity = %v, want MEDIUM", got.GetSeverity())
	}
	if got.GetCoverageReason() != ssdeepFailed {
		t.Errorf("coverage_reason = %v, want %v", got.GetCoverageReason(), ssdeepFailed)
	}
	if got.GetRule() != "binwatch.coverage_degraded" {
		t.Errorf("rule = %q, want binwatch.coverage_degraded", got.GetRule())
	}
	if want := `coverage degraded for pid 40 /usr/lib/x\nlog: ssdeep failed`; got.GetMessage() != want {
		t.Errorf("message = %q, want %q", got.GetMessage(), want)
	}
	if !strings.Contains(got.GetDetail(), "detail of COVERAGE_REASON_SSDEEP_FAILED") {
		t.Errorf("detail %q does not carry the record's coverage detail", got.GetDetail())
	}
}

func TestPartialVisibility(t *testing.T) {
	e, _, _ := newEngine(t, 80)
	scan := func(bootID, detail string) *binwatchv1.ProcessBatch {
		b := batch(onDisk(1, "/sbin/init", fileHash(1, sha(1), "3:uG:uG")))
		b.BootId = bootID
		b.Stats.PartialVisibility = true
		b.Stats.VisibilityDetail = detail
		return b
	}
	steps := []struct {
		name  string
		batch *binwatchv1.ProcessBatch
		want  []binwatchv1.AlertKind
	}{
		{"first batch", scan("aa", "hidepid=2"), []binwatchv1.AlertKind{coverage}},
		{"second batch of scan", scan("aa", "hidepid=2"), nil},
		{"other detail", scan("aa", "hidepid=invisible"), []binwatchv1.AlertKind{coverage}},
		{"after reboot", scan("bb", "hidepid=2"), []binwatchv1.AlertKind{coverage}},
		{"full visibility", batch(onDisk(1, "/sbin/init", fileHash(1, sha(1), "3:uG:uG"))), nil},
	}
	for _, s := range steps {
		wantAlerts(t, s.name, e.Evaluate(s.batch), s.want...)
	}
	a := e.Evaluate(scan("cc", "line\nbreak"))
	wantAlerts(t, "fields", a, coverage)
	if r := a[0].GetCoverageReason(); r != binwatchv1.CoverageReason_COVERAGE_REASON_PARTIAL_VISIBILITY {
		t.Errorf("coverage_reason = %v, want PARTIAL_VISIBILITY", r)
	}
	if a[0].GetProcess() != nil {
		t.Errorf("partial visibility alert names a process: %v", a[0].GetProcess())
	}
	if d := a[0].GetDetail(); strings.Contains(d, "\n") || !strings.Contains(d, `line\nbreak`) {
		t.Errorf("detail = %q, want the escaped visibility detail on one line", d)
	}
}

func TestDiskMismatch(t *testing.T) {
	e, _, _ := newEngine(t, 80)
	runSSDeep, diskSSDeep, score := similarPair(t, 1, 99)
	replaced := func(pid int32, diskSHA string) *binwatchv1.ProcessRecord {
		r := onDisk(pid, "/usr/sbin/sshd", fileHash(5, sha(5), runSSDeep))
		r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED
		r.Executable.OnDisk = fileHash(6, diskSHA, diskSSDeep)
		return r
	}
	unlinked := func(pid int32) *binwatchv1.ProcessRecord {
		r := onDisk(pid, "/tmp/dropper (deleted)", fileHash(7, sha(7), "3:uG:uG"))
		r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED
		r.Executable.Running.Nlink = 0
		return r
	}
	memfd := func(pid int32) *binwatchv1.ProcessRecord {
		r := onDisk(pid, "/memfd:x (deleted)", fileHash(8, sha(8), "3:uG:uG"))
		r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD
		return r
	}

	a := e.Evaluate(batch(replaced(100, sha(6)), unlinked(101), memfd(102), replaced(103, sha(6))))
	wantAlerts(t, "first scan", a, mismatch, mismatch, mismatch)
	for _, al := range a {
		if al.GetSeverity() != binwatchv1.Severity_SEVERITY_HIGH {
			t.Errorf("%s: severity = %v, want HIGH", al.GetMessage(), al.GetSeverity())
		}
	}
	rep := a[0]
	if rep.GetState() != binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED {
		t.Errorf("state = %v, want REPLACED", rep.GetState())
	}
	wantDisk := &binwatchv1.Hashes{Sha256: sha(6), Ssdeep: diskSSDeep}
	if !proto.Equal(rep.GetOnDisk(), wantDisk) {
		t.Errorf("on_disk = %v, want %v", rep.GetOnDisk(), wantDisk)
	}
	if rep.Similarity == nil || int(rep.GetSimilarity()) != score {
		t.Errorf("similarity = %v, want %d", rep.Similarity, score)
	}
	if want := "pid 100 runs /usr/sbin/sshd, but another file is now at that path"; rep.GetMessage() != want {
		t.Errorf("message = %q, want %q", rep.GetMessage(), want)
	}
	if a[1].GetOnDisk() != nil || a[1].Similarity != nil {
		t.Errorf("unlinked alert carries on_disk %v or similarity %v", a[1].GetOnDisk(), a[1].Similarity)
	}

	wantAlerts(t, "second scan", e.Evaluate(batch(replaced(100, sha(6)), unlinked(101), memfd(104))))
	wantAlerts(t, "path replaced again", e.Evaluate(batch(replaced(100, sha(9)))), mismatch)

	noDigest := replaced(105, sha(10))
	noDigest.Executable.OnDisk.Ssdeep = ""
	noDigest.Executable.OnDiskSimilarity = nil
	a = e.Evaluate(batch(noDigest))
	wantAlerts(t, "on-disk file without ssdeep", a, mismatch)
	if a[0].Similarity != nil {
		t.Errorf("similarity = %d without an on-disk ssdeep digest, want none", a[0].GetSimilarity())
	}
	if !strings.Contains(a[0].GetDetail(), "similarity unknown") {
		t.Errorf("detail %q does not say the similarity is unknown", a[0].GetDetail())
	}
}

func TestBinaryChange(t *testing.T) {
	const path = "/usr/bin/tool"
	oldSSDeep, newSSDeep, score := similarPair(t, 2, 60)
	e, store, _ := newEngine(t, score+1)
	run := func(pid int32, inode uint64, n int, ssdeep string) *binwatchv1.ProcessBatch {
		return batch(onDisk(pid, path, fileHash(inode, sha(n), ssdeep)))
	}

	wantAlerts(t, "first sighting", e.Evaluate(run(1, 1, 1, oldSSDeep)))
	if got, ok := store.Get(testHost, []byte(path)); !ok || got.SHA256 != sha(1) {
		t.Fatalf("baseline after first sighting = %+v, %v, want sha256 %s", got, ok, sha(1))
	}
	wantAlerts(t, "same binary", e.Evaluate(run(2, 1, 1, oldSSDeep)))

	a := e.Evaluate(run(3, 2, 2, newSSDeep))
	wantAlerts(t, "changed binary", a, change)
	al := a[0]
	if want := (&binwatchv1.Hashes{Sha256: sha(1), Ssdeep: oldSSDeep}); !proto.Equal(al.GetPrevious(), want) {
		t.Errorf("previous = %v, want %v", al.GetPrevious(), want)
	}
	if want := (&binwatchv1.Hashes{Sha256: sha(2), Ssdeep: newSSDeep}); !proto.Equal(al.GetProcess().GetHash(), want) {
		t.Errorf("process.hash = %v, want %v", al.GetProcess().GetHash(), want)
	}
	if al.Similarity == nil || int(al.GetSimilarity()) != score {
		t.Errorf("similarity = %v, want %d", al.Similarity, score)
	}
	if int(al.GetSimilarityThreshold()) != score+1 {
		t.Errorf("similarity_threshold = %d, want %d", al.GetSimilarityThreshold(), score+1)
	}
	if al.GetSeverity() != binwatchv1.Severity_SEVERITY_MEDIUM {
		t.Errorf("severity = %v, want MEDIUM", al.GetSeverity())
	}
	if !strings.Contains(al.GetMessage(), "pid 3") || !strings.Contains(al.GetMessage(), path) {
		t.Errorf("message %q does not name pid 3 and %s", al.GetMessage(), path)
	}
	if got, _ := store.Get(testHost, []byte(path)); got.SHA256 != sha(2) {
		t.Errorf("baseline after alert = %s, want the new binary %s", got.SHA256, sha(2))
	}

	wantAlerts(t, "changed binary keeps running", e.Evaluate(run(4, 2, 2, newSSDeep)))
	wantAlerts(t, "old binary back", e.Evaluate(run(5, 1, 1, oldSSDeep)), change)
	wantAlerts(t, "same change again", e.Evaluate(run(6, 2, 2, newSSDeep)))

	a = e.Evaluate(run(7, 3, 3, ""))
	wantAlerts(t, "binary without ssdeep", a, change)
	if a[0].Similarity != nil {
		t.Errorf("similarity = %d without a new ssdeep digest, want none", a[0].GetSimilarity())
	}
	if !strings.Contains(a[0].GetDetail(), "similarity unknown") {
		t.Errorf("detail %q does not say the similarity is unknown", a[0].GetDetail())
	}
	wantAlerts(t, "digest arrives for the same binary", e.Evaluate(run(8, 3, 3, oldSSDeep)))
	if got, _ := store.Get(testHost, []byte(path)); got.SSDeep != oldSSDeep {
		t.Errorf("baseline ssdeep = %q, want it filled in with %q", got.SSDeep, oldSSDeep)
	}
}

func TestBinaryChangeThreshold(t *testing.T) {
	const path = "/usr/bin/tool"
	oldSSDeep, newSSDeep, score := similarPair(t, 2, 98)
	tests := []struct {
		name      string
		threshold int
		want      []binwatchv1.AlertKind
	}{
		{"similarity equals threshold", score, nil},
		{"similarity below threshold by one", score + 1, []binwatchv1.AlertKind{change}},
		{"similarity above threshold", score - 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, store, _ := newEngine(t, tt.threshold)
			wantAlerts(t, "first sighting", e.Evaluate(batch(onDisk(1, path, fileHash(1, sha(1), oldSSDeep)))))
			wantAlerts(t, "update", e.Evaluate(batch(onDisk(2, path, fileHash(2, sha(2), newSSDeep)))), tt.want...)
			if got, _ := store.Get(testHost, []byte(path)); got.SHA256 != sha(2) {
				t.Errorf("baseline = %s, want it moved to %s", got.SHA256, sha(2))
			}
			wantAlerts(t, "next scan", e.Evaluate(batch(onDisk(3, path, fileHash(2, sha(2), newSSDeep)))))
		})
	}
}

func TestBinaryChangeIgnoresOtherStates(t *testing.T) {
	e, store, _ := newEngine(t, 80)
	r := onDisk(1, "/usr/bin/x", fileHash(1, sha(1), "3:uG:uG"))
	r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN
	noSHA := degraded(onDisk(2, "/usr/bin/y", fileHash(2, "", "")), binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE)
	e.Evaluate(batch(r, noSHA))
	if n := store.Len(); n != 0 {
		t.Errorf("baselines after records without state ON_DISK or SHA-256 = %d, want 0", n)
	}
}

func TestBaselinesAndAlertsSurviveRestart(t *testing.T) {
	const path = "/usr/bin/tool"
	e, store, statePath := newEngine(t, 80)
	mem := onDisk(9, "/memfd:a (deleted)", fileHash(9, sha(9), "3:uG:uG"))
	mem.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD
	wantAlerts(t, "before restart", e.Evaluate(batch(onDisk(1, path, fileHash(1, sha(1), "3:uG:uG")), mem)), mismatch)
	if err := store.Save(); err != nil {
		t.Fatal(err)
	}

	later := testNow.Add(time.Hour)
	store2, err := baseline.Open(statePath, baseline.Options{Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := NewEngine(Config{SimilarityThreshold: 80, Now: func() time.Time { return later }}, store2)
	if err != nil {
		t.Fatal(err)
	}
	// The binary changed while nothing ran it, and the memfd process is
	// still running.
	a := e2.Evaluate(batch(onDisk(2, path, fileHash(2, sha(2), "")), mem))
	wantAlerts(t, "after restart", a, change)
	if !a[0].GetTime().AsTime().Equal(later) {
		t.Errorf("alert time = %v, want %v", a[0].GetTime().AsTime(), later)
	}
}

func TestAlertCommonFields(t *testing.T) {
	e, _, _ := newEngine(t, 80)
	r := onDisk(4242, "/opt/\xff\xfeapp\n", fileHash(1, sha(1), "3:uG:uG"))
	r.Name = "app"
	r.Executable.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED
	b := batch(r)
	a := e.Evaluate(b)
	wantAlerts(t, "unlinked", a, mismatch)
	al := a[0]
	if al.GetId() != AlertID(testHost, mismatch, "EXECUTABLE_STATE_UNLINKED", identity(r.Executable.Running)[0], sha(1), "", "") {
		t.Errorf("id = %s, want the AlertID of state, running identity and on-disk file", al.GetId())
	}

	if al.GetRule() != "binwatch.disk_mismatch" {
		t.Errorf("rule = %q, want binwatch.disk_mismatch", al.GetRule())
	}
	if !al.GetTime().AsTime().Equal(testNow) {
		t.Errorf("time = %v, want %v", al.GetTime().AsTime(), testNow)
	}
	wantHost := &binwatchv1.AlertHost{Id: testHost, Hostname: b.Hostname, BootId: b.BootId}
	if !proto.Equal(al.GetHost(), wantHost) {
		t.Errorf("host = %v, want %v", al.GetHost(), wantHost)
	}
	wantProcess := &binwatchv1.AlertProcess{
		Pid: 4242, StartTicks: r.StartTicks, StartTime: r.StartTime, Name: "app",
		Executable: `/opt/\xff\xfeapp\n`, ExecutableRaw: []byte("/opt/\xff\xfeapp\n"),
		Hash: &binwatchv1.Hashes{Sha256: sha(1), Ssdeep: "3:uG:uG"},
	}
	if !proto.Equal(al.GetProcess(), wantProcess) {
		t.Errorf("process = %v, want %v", al.GetProcess(), wantProcess)
	}
	if al.GetProcess().GetStartTime() == r.GetStartTime() {
		t.Error("alert shares its start time message with the batch")
	}
	if strings.Contains(al.GetMessage(), "\n") || !strings.Contains(al.GetMessage(), `pid 4242 runs /opt/\xff\xfeapp\n`) {
		t.Errorf("message = %q, want one line naming pid 4242 and the escaped path", al.GetMessage())
	}
}

func TestPathText(t *testing.T) {
	tests := []struct {
		path []byte
		want string
	}{
		{[]byte("/usr/bin/ls"), "/usr/bin/ls"},
		{[]byte("/tmp/x (deleted)"), "/tmp/x (deleted)"},
		{[]byte("/opt/café/日本"), "/opt/café/日本"},
		{[]byte("/tmp/a\nb"), `/tmp/a\nb`},
		{[]byte("/tmp/\t\r\x00\x1b"), `/tmp/\t\r\x00\x1b`},
		{[]byte("/bad/\xff\xc3"), `/bad/\xff\xc3`},
		{[]byte(`/q/"x"\y`), `/q/\"x\"\\y`},
		{[]byte("/z/\u200b\u00a0"), `/z/\u200b\u00a0`},
		{nil, ""},
	}
	for _, tt := range tests {
		got := PathText(tt.path)
		if got != tt.want {
			t.Errorf("PathText(%q) = %q, want %q", tt.path, got, tt.want)
		}
		back, err := strconv.Unquote(`"` + got + `"`)
		if err != nil || back != string(tt.path) {
			t.Errorf("Unquote of PathText(%q) = %q, %v, want the path back", tt.path, back, err)
		}
	}
}

func TestAlertID(t *testing.T) {
	// The golden value was computed outside Go with Python's hashlib from the
	// documented layout, so it checks the layout as well as stability.
	const golden = "6c49b2da298204c1b5acef14808feee88cf2cad88d3448c70ff9c6f46b7df151"
	if got := AlertID("web-01", change, "/usr/bin/ls", sha(1), sha(2)); got != golden {
		t.Errorf("AlertID(web-01, binary_change, /usr/bin/ls, ...) = %s, want %s", got, golden)
	}
	distinct := map[string]string{
		"ab|c":        AlertID("h", change, "ab", "c"),
		"a|bc":        AlertID("h", change, "a", "bc"),
		"abc":         AlertID("h", change, "abc"),
		"other kind":  AlertID("h", mismatch, "ab", "c"),
		"other host":  AlertID("g", change, "ab", "c"),
		"host in key": AlertID("", change, "h", "ab", "c"),
	}
	seen := map[string]string{}
	for name, id := range distinct {
		if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Errorf("AlertID %s = %q, want 64 lower-case hex digits", name, id)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("AlertID %s equals AlertID %s: %s", name, other, id)
		}
		seen[id] = name
	}
}

func TestCoverageWithoutPathKeyedByName(t *testing.T) {
	e, _, _ := newEngine(t, 80)
	denied := func(pid int32, name string) *binwatchv1.ProcessRecord {
		return &binwatchv1.ProcessRecord{
			Pid: pid, Name: name, StartTicks: uint64(pid) * 10, Uids: []uint32{0, 0, 0, 0},
			Executable: &binwatchv1.Executable{
				State:          binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN,
				Coverage:       binwatchv1.Coverage_COVERAGE_DEGRADED,
				CoverageReason: binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED,
			},
		}
	}
	got := e.Evaluate(batch(denied(10, "sshd"), denied(11, "cron"), denied(12, "sshd")))
	wantAlerts(t, "two unreadable programs, three processes", got, coverage, coverage)
	if want := "coverage degraded for pid 10: access denied"; got[0].GetMessage() != want {
		t.Errorf("message = %q, want %q", got[0].GetMessage(), want)
	}
	wantAlerts(t, "the same programs again", e.Evaluate(batch(denied(10, "sshd"), denied(11, "cron"))))
	wantAlerts(t, "another unreadable program", e.Evaluate(batch(denied(13, "nginx"))), coverage)
}
