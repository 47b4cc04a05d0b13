package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/agent/baseline"
	"github.com/binwatch/binwatch/agent/ingest"
	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

const (
	stateMemfd    = binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD
	stateOnDisk   = binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK
	stateReplaced = binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED
	stateUnlinked = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED
	stateUnknown  = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN

	reasonAccessDenied = binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED
	reasonTooLarge     = binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE
	reasonPartial      = binwatchv1.CoverageReason_COVERAGE_REASON_PARTIAL_VISIBILITY

	kindTelemetryGap = binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP
)

// hostileHelperEnv makes the test binary, started by a test as a child
// process, run TestHostileHelperProcess's mode instead of the tests.
const hostileHelperEnv = "BINWATCH_HOSTILE_HELPER"

// TestHostileHelperProcess is the entry point of child processes that the
// tests below start from the test binary (the os/exec helper-process
// pattern). Without hostileHelperEnv it returns at once.
func TestHostileHelperProcess(t *testing.T) {
	switch mode := os.Getenv(hostileHelperEnv); mode {
	case "":
		return
	case "memfd-exec":
		// Fileless execution: copy a program into a memfd and execute
		// it from there.
		err := execFromMemfd(os.Getenv("BINWATCH_HOSTILE_SRC"), "evil", "sleep", "600")
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		os.Exit(2)
	}
}

func execFromMemfd(src, name string, argv ...string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		return err
	}
	err = syscall.Exec("/proc/self/fd/"+strconv.Itoa(fd), argv, os.Environ())
	runtime.KeepAlive(f)
	return fmt.Errorf("exec: %w", err)
}

func requireRoot(t *testing.T, task string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s", task)
	}
}

// lookTool returns the path of an external command, or skips the test.
func lookTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found on PATH; install %s", name, pkg)
	}
	return path
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// startCommand starts cmd and kills it at cleanup.
func startCommand(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// waitExeLink waits until the exe link of pid satisfies ok and returns it.
func waitExeLink(t *testing.T, pid int, ok func(link string) bool) string {
	t.Helper()
	var link string
	waitFor(t, fmt.Sprintf("the exe link of pid %d", pid), 5*time.Second, func() bool {
		var err error
		link, err = os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		return err == nil && ok(link)
	})
	return link
}

// findRecord returns the record of pid, or fails the test.
func findRecord(t *testing.T, records []*binwatchv1.ProcessRecord, pid int) *binwatchv1.ProcessRecord {
	t.Helper()
	for _, r := range records {
		if int(r.GetPid()) == pid {
			return r
		}
	}
	t.Fatalf("no record of pid %d among %d records", pid, len(records))
	return nil
}

// awaitScan waits until the agent has evaluated scan seq of collectorID
// on testHost and delivered its alerts, and until the alert subscriber
// has received as many alerts as the agent delivered.
func (p *pipeline) awaitScan(collectorID string, seq uint64, timeout time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.agent.WaitScan(ctx, testHost, collectorID, seq); err != nil {
		p.t.Fatal(err)
	}
	if err := p.agent.WaitDelivered(ctx); err != nil {
		p.t.Fatal(err)
	}
	delivered := p.agent.Counters().AlertsDelivered
	waitFor(p.t, "the subscriber to receive the delivered alerts", time.Until(deadlineOf(ctx)), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return uint64(len(p.alerts)) >= delivered
	})
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// scanWithin runs one scan of the pipeline's collector and fails the test
// when it takes longer than limit, including a scan blocked in a system
// call that a context cannot interrupt. It then waits for the agent.
func (p *pipeline) scanWithin(limit time.Duration) *collector.Scan {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan collector.ScanReport, 1)
	go func() { done <- collector.ScanOnce(ctx, p.scanner, p.pub) }()
	var r collector.ScanReport
	select {
	case r = <-done:
	case <-time.After(limit + time.Second):
		p.t.Fatalf("scan still running after %s", limit)
	}
	if r.Err != nil {
		p.t.Fatalf("scan: %v", r.Err)
	}
	p.awaitScan(p.pub.CollectorID(), r.Scan.Seq, 20*time.Second)
	return r.Scan
}

// quickMaxFileSize caps hashing in tests whose programs are copies of
// small system binaries (sleep, tail, sh): the host's larger executables
// are then reported too large instead of read, which keeps a first scan
// quick under the race detector.
const quickMaxFileSize = 256 << 10

// capHashing replaces the pipeline's collector scanner with one that
// hashes files up to maxFileSize bytes.
func (p *pipeline) capHashing(maxFileSize int64) {
	p.t.Helper()
	s, err := collector.NewScanner(collector.Options{MaxFileSize: maxFileSize})
	if err != nil {
		p.t.Fatalf("NewScanner: %v", err)
	}
	s.OnProcessError(func(pid int, err error) { p.t.Errorf("scan: pid %d: %v", pid, err) })
	p.scanner = s
}

// alertsWhere returns the alerts received so far that match.
func (p *pipeline) alertsWhere(match func(a *binwatchv1.IntegrityAlert) bool) []*binwatchv1.IntegrityAlert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*binwatchv1.IntegrityAlert
	for _, a := range p.alerts {
		if match(a) {
			out = append(out, a)
		}
	}
	return out
}

func coverageAlerts(p *pipeline, reason binwatchv1.CoverageReason) []*binwatchv1.IntegrityAlert {
	return p.alertsWhere(func(a *binwatchv1.IntegrityAlert) bool {
		return a.Kind == kindCoverage && a.CoverageReason == reason
	})
}

func slogTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// syncBuffer is a bytes.Buffer that a logger may write to from other
// goroutines while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestMemfdProcessRaisesOneDiskMismatch(t *testing.T) {
	p := newPipeline(t, "", 80)
	p.capHashing(quickMaxFileSize)
	sleepSum := fileSHA256(t, "/bin/sleep")

	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileHelperProcess$")
	cmd.Env = append(os.Environ(), hostileHelperEnv+"=memfd-exec", "BINWATCH_HOSTILE_SRC=/bin/sleep")
	cmd.Stderr = os.Stderr
	pid := startCommand(t, cmd)
	waitExeLink(t, pid, func(l string) bool { return strings.HasPrefix(l, "/memfd:evil") })

	// An ordinary file in a directory named like a memfd, with the
	// kernel's deletion suffix in its own name, is on disk all the same.
	dir := filepath.Join(t.TempDir(), "memfd:evil")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	decoy := filepath.Join(dir, "sleep (deleted)")
	copyFile(t, "/bin/sleep", decoy)
	decoyPid := startProcess(t, decoy, "600").Process.Pid

	scan := p.scan()
	rec := findRecord(t, scan.Records, pid)
	x := rec.GetExecutable()
	if x.GetState() != stateMemfd {
		t.Errorf("memfd process: state = %v (%q), want MEMFD", x.GetState(), x.GetStateDetail())
	}
	if got := x.GetRunning().GetSha256(); got != sleepSum {
		t.Errorf("memfd process: running sha256 = %s, want /bin/sleep's %s", got, sleepSum)
	}
	if x.GetCoverage() != binwatchv1.Coverage_COVERAGE_FULL {
		t.Errorf("memfd process: coverage = %v %v, want FULL", x.GetCoverage(), x.GetCoverageReason())
	}
	decoyRec := findRecord(t, scan.Records, decoyPid)
	if got := decoyRec.GetExecutable().GetState(); got != stateOnDisk {
		t.Errorf("%s: state = %v (%q), want ON_DISK", decoy, got, decoyRec.GetExecutable().GetStateDetail())
	}

	// A second scan must not repeat the alert.
	p.scan()
	alerts := p.alertsFor(int32(pid), kindDiskMismatch)
	if len(alerts) != 1 {
		t.Fatalf("memfd process: %d disk_mismatch alerts after two scans, want 1: %v", len(alerts), alerts)
	}
	a := alerts[0]
	if a.State != stateMemfd {
		t.Errorf("alert state = %v, want MEMFD", a.State)
	}
	if a.Severity != binwatchv1.Severity_SEVERITY_HIGH {
		t.Errorf("alert severity = %v, want HIGH", a.Severity)
	}
	if got := a.GetProcess().GetHash().GetSha256(); got != sleepSum {
		t.Errorf("alert sha256 = %s, want %s", got, sleepSum)
	}
	if got := p.alertsFor(int32(decoyPid), kindDiskMismatch); len(got) != 0 {
		t.Errorf("%s: %d disk_mismatch alerts, want 0: %v", decoy, len(got), got)
	}
}

// collectorBinary builds binwatch-collector into a directory that every
// user may read, so that it also runs with dropped privileges.
func collectorBinary(t *testing.T) string {
	t.Helper()
	goTool := lookTool(t, "go", "the Go toolchain")
	dir, err := os.MkdirTemp("", "binwatch-collector-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "binwatch-collector")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/binwatch/binwatch/collector/cmd/binwatch-collector").CombinedOutput()
	if err != nil {
		t.Fatalf("go build binwatch-collector: %v\n%s", err, out)
	}
	return bin
}

// dropPrivileges returns the command prefix that runs a program as user
// and group 65534 without capabilities.
func dropPrivileges(setpriv string) []string {
	return []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}
}

// collectedScan is one complete scan as a collector published it.
type collectedScan struct {
	collectorID string
	seq         uint64
	records     []*binwatchv1.ProcessRecord
	stats       *binwatchv1.ScanStats
}

// batchRecorder keeps every batch published on one host's subject.
type batchRecorder struct {
	mu       sync.Mutex
	batches  map[string][]*binwatchv1.ProcessBatch // by collector id
	returned map[string]bool
}

func recordBatches(t *testing.T, url, host string) *batchRecorder {
	t.Helper()
	r := &batchRecorder{batches: map[string][]*binwatchv1.ProcessBatch{}, returned: map[string]bool{}}
	nc := connect(t, url)
	sub, err := nc.Subscribe(schema.ProcessSubject(host), func(m *nats.Msg) {
		b := &binwatchv1.ProcessBatch{}
		if err := proto.Unmarshal(m.Data, b); err != nil {
			t.Errorf("batch on %s does not decode: %v", m.Subject, err)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.batches[b.CollectorId] = append(r.batches[b.CollectorId], b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// next waits for every batch of the first scan of a collector that next
// has not returned yet.
func (r *batchRecorder) next(t *testing.T) collectedScan {
	t.Helper()
	var s collectedScan
	waitFor(t, "a complete scan from a new collector", 20*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for id, bs := range r.batches {
			if r.returned[id] || len(bs) == 0 || uint32(len(bs)) != bs[0].BatchCount {
				continue
			}
			r.returned[id] = true
			s = collectedScan{collectorID: id, seq: bs[0].ScanSeq, stats: bs[0].Stats}
			for _, b := range bs {
				s.records = append(s.records, b.Records...)
			}
			return true
		}
		return false
	})
	return s
}

// runCollector runs the collector binary as argv (a privilege-dropping
// prefix, the binary and its own flags), once, against the pipeline's
// server as testHost, and waits until the agent evaluated its scan.
func (p *pipeline) runCollector(rec *batchRecorder, argv ...string) collectedScan {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv = append(argv, "--nats-url", p.url, "--once", "--host-id", testHost)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	s := rec.next(p.t)
	p.awaitScan(s.collectorID, s.seq, 20*time.Second)
	return s
}

// coverageKeys returns the distinct executables among records degraded
// for reason, named as the coverage_degraded rule names them: by file
// identity when the collector could stat the running image, else by path,
// and by the process when neither could be read.
func coverageKeys(records []*binwatchv1.ProcessRecord, reason binwatchv1.CoverageReason) map[string]int {
	keys := map[string]int{}
	for _, r := range records {
		x := r.GetExecutable()
		if x.GetCoverage() != binwatchv1.Coverage_COVERAGE_DEGRADED || x.GetCoverageReason() != reason {
			continue
		}
		var k string
		switch h := x.GetRunning(); {
		case h != nil:
			k = fmt.Sprintf("file %d:%d:%d:%d:%d", h.Device, h.Inode, h.Size, h.MtimeNs, h.CtimeNs)
		case len(x.GetPath()) > 0:
			k = "path " + string(x.GetPath())
		default:
			k = "name " + r.GetName()
		}
		keys[k]++
	}
	return keys
}

func TestUnprivilegedCollectorReportsAccessDenied(t *testing.T) {
	requireRoot(t, "run root processes that an unprivileged collector may not read")
	setpriv := lookTool(t, "setpriv", "util-linux")
	bin := collectorBinary(t)
	p := newPipeline(t, "", 80)
	rec := recordBatches(t, p.url, testHost)

	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	var pids []int
	for range 3 {
		pids = append(pids, startProcess(t, prog, "600").Process.Pid)
	}

	scan := p.runCollector(rec, append(dropPrivileges(setpriv), bin)...)
	for _, pid := range pids {
		x := findRecord(t, scan.records, pid).GetExecutable()
		if x.GetCoverage() != binwatchv1.Coverage_COVERAGE_DEGRADED || x.GetCoverageReason() != reasonAccessDenied {
			t.Errorf("pid %d: coverage = %v %v, want DEGRADED ACCESS_DENIED", pid, x.GetCoverage(), x.GetCoverageReason())
		}
		if x.GetState() != stateUnknown {
			t.Errorf("pid %d: state = %v (%q), want UNKNOWN", pid, x.GetState(), x.GetStateDetail())
		}
		if x.GetRunning().GetSha256() != "" || x.GetRunning().GetSsdeep() != "" {
			t.Errorf("pid %d: digests %q %q, want none", pid, x.GetRunning().GetSha256(), x.GetRunning().GetSsdeep())
		}
	}
	denied, deniedAny := 0, 0
	for _, r := range scan.records {
		x := r.GetExecutable()
		if x.GetCoverageReason() == reasonAccessDenied {
			deniedAny++
		}
		if len(r.GetUids()) == 0 || r.GetUids()[0] != 0 {
			continue
		}
		if x.GetState() == stateUnlinked {
			t.Errorf("root pid %d %q: state UNLINKED from a collector that may not read it", r.GetPid(), x.GetPath())
		}
		if x.GetCoverageReason() != reasonAccessDenied {
			t.Errorf("root pid %d %q: coverage reason = %v, want ACCESS_DENIED", r.GetPid(), x.GetPath(), x.GetCoverageReason())
		}
		denied++
	}
	// Processes of other users that the collector may not read, from
	// tests running beside this one, count too.
	if got := scan.stats.GetCoverageDegraded()["access_denied"]; got != uint32(deniedAny) {
		t.Errorf("stats.coverage_degraded[access_denied] = %d, want %d, the denied records", got, deniedAny)
	}
	if deniedAny < denied {
		t.Errorf("%d access_denied records, fewer than the %d root processes", deniedAny, denied)
	}
	if got := p.alertsWhere(func(a *binwatchv1.IntegrityAlert) bool { return a.Kind == kindDiskMismatch }); len(got) != 0 {
		t.Errorf("%d disk_mismatch alerts from an unprivileged scan, want 0: %v", len(got), got)
	}

	// One alert per executable and reason. An unprivileged collector can
	// read neither the image nor the exe link of a root process, so the
	// process name is used in place of the executable.
	keys := coverageKeys(scan.records, reasonAccessDenied)
	alerts := coverageAlerts(p, reasonAccessDenied)
	if len(alerts) != len(keys) {
		t.Errorf("%d coverage_degraded ACCESS_DENIED alerts for %d records of %d executables, want %d",
			len(alerts), denied, len(keys), len(keys))
	}
	var progAlerts []*binwatchv1.IntegrityAlert
	for _, pid := range pids {
		progAlerts = append(progAlerts, p.alertsFor(int32(pid), kindCoverage)...)
	}
	if len(progAlerts) != 1 || progAlerts[0].CoverageReason != reasonAccessDenied {
		t.Errorf("three processes of one program: coverage_degraded alerts %v, want one with reason ACCESS_DENIED", progAlerts)
	}

	// Another run of the collector raises alerts only for processes that
	// are new since the first run.
	again := p.runCollector(rec, append(dropPrivileges(setpriv), bin)...)
	newKeys := 0
	for k := range coverageKeys(again.records, reasonAccessDenied) {
		if keys[k] == 0 {
			newKeys++
		}
	}
	if got := coverageAlerts(p, reasonAccessDenied); len(got) != len(alerts)+newKeys {
		t.Errorf("after a second unprivileged scan: %d ACCESS_DENIED alerts, want %d (%d before, %d processes new)",
			len(got), len(alerts)+newKeys, len(alerts), newKeys)
	}
}

func TestPartialVisibilityStatRaisesAlert(t *testing.T) {
	p := newPipeline(t, "", 80)
	p.capHashing(1)
	const detail = "proc at /proc mounted with hidepid=invisible, CAP_SYS_PTRACE missing"
	publish := func(partial bool) {
		t.Helper()
		scan, err := p.scanner.Scan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		scan.Stats.PartialVisibility = partial
		scan.Stats.VisibilityDetail = detail
		if _, err := p.pub.Publish(context.Background(), scan); err != nil {
			t.Fatal(err)
		}
		p.awaitScan(p.pub.CollectorID(), scan.Seq, 20*time.Second)
	}

	publish(false)
	if got := coverageAlerts(p, reasonPartial); len(got) != 0 {
		t.Fatalf("full visibility: %d PARTIAL_VISIBILITY alerts, want 0", len(got))
	}
	publish(true)
	publish(true)
	alerts := coverageAlerts(p, reasonPartial)
	if len(alerts) != 1 {
		t.Fatalf("two partial scans: %d PARTIAL_VISIBILITY alerts, want 1: %v", len(alerts), alerts)
	}
	if got := alerts[0].GetHost().GetId(); got != testHost {
		t.Errorf("alert host = %q, want %q", got, testHost)
	}
	if !strings.Contains(alerts[0].GetDetail(), "hidepid=invisible") {
		t.Errorf("alert detail = %q, want the collector's visibility detail", alerts[0].GetDetail())
	}
}

func TestHostileThingsAtDeletedBinaryPath(t *testing.T) {
	p := newPipeline(t, "", 80)
	p.capHashing(quickMaxFileSize)
	// sparseSize is far over the cap and costs no disk space.
	const sparseSize = 1 << 30

	// longDir is a directory chain of about 3000 bytes, none of them
	// UTF-8, so every detail that quotes the path grows fourfold.
	base := t.TempDir()
	longDir := base
	for range 12 {
		longDir = filepath.Join(longDir, string(bytes.Repeat([]byte{0xff}, 250)))
	}
	if err := os.MkdirAll(longDir, 0o755); err != nil {
		t.Fatal(err)
	}

	type hostile struct {
		name string
		root bool
		// dir is the binary's directory, relative to a new temporary
		// directory unless absolute.
		dir string
		// hardLink keeps a second link to the binary elsewhere.
		hardLink bool
		// place puts something at the deleted binary's path.
		place      func(path string) error
		wantState  binwatchv1.ExecutableState
		wantDetail string
		// wantAlert is whether a disk_mismatch alert is due.
		wantAlert bool
	}
	mkfifo := func(path string) error { return unix.Mkfifo(path, 0o644) }
	// loopParent turns the directory that contained path into a symlink
	// to itself.
	loopParent := func(path string) error {
		dir := filepath.Dir(path)
		if err := os.Remove(dir); err != nil {
			return err
		}
		return os.Symlink(filepath.Base(dir), dir)
	}
	cases := []hostile{
		{name: "fifo", place: mkfifo, wantState: stateReplaced, wantDetail: "fifo at the path", wantAlert: true},
		{name: "symlink to fifo", wantState: stateReplaced, wantDetail: "fifo at the path", wantAlert: true,
			place: func(path string) error {
				if err := mkfifo(path + ".fifo"); err != nil {
					return err
				}
				return os.Symlink(filepath.Base(path)+".fifo", path)
			}},
		{name: "character device", root: true, wantState: stateReplaced, wantDetail: "character device at the path", wantAlert: true,
			place: func(path string) error {
				// The numbers of /dev/null.
				return unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
			}},
		{name: "symlink loop", wantState: stateReplaced, wantDetail: "symlink at the path that loops", wantAlert: true,
			place: func(path string) error { return os.Symlink(filepath.Base(path), path) }},
		{name: "sparse file over the size cap", wantState: stateReplaced, wantAlert: true,
			wantDetail: fmt.Sprintf("file at the path not fully hashed: file is %d bytes, larger than the limit of %d bytes",
				sparseSize, quickMaxFileSize),
			place: func(path string) error {
				if err := os.WriteFile(path, nil, 0o755); err != nil {
					return err
				}
				return os.Truncate(path, sparseSize)
			}},
		// The image has no links left, whatever makes its path fail to
		// resolve.
		{name: "symlink loop as parent directory", dir: "parent", wantState: stateUnlinked,
			wantDetail: "too many levels of symbolic links", wantAlert: true, place: loopParent},
		// A hard link elsewhere keeps the image on disk, so the state is
		// unknown. Its detail quotes the long path and must be cut to fit
		// the agent's bound, or the agent drops the whole batch.
		{name: "long path with a looping parent and a hard link", dir: filepath.Join(longDir, "parent"),
			hardLink: true, wantState: stateUnknown, wantDetail: "... (truncated)", place: loopParent},
	}

	type running struct {
		hostile
		pid  int
		path string
	}
	var procs []running
	for _, c := range cases {
		if c.root && os.Geteuid() != 0 {
			t.Logf("%s: skipped, needs root", c.name)
			continue
		}
		dir := filepath.Join(t.TempDir(), c.dir)
		if filepath.IsAbs(c.dir) {
			dir = c.dir
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "prog")
		copyFile(t, "/bin/sleep", path)
		pid := startProcess(t, path, "600").Process.Pid
		if c.hardLink {
			if err := os.Link(path, filepath.Join(t.TempDir(), "hardlink")); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := c.place(path); err != nil {
			if c.root {
				// Root in a container may still lack CAP_MKNOD.
				t.Logf("%s: skipped: %v", c.name, err)
				continue
			}
			t.Fatalf("%s: %v", c.name, err)
		}
		procs = append(procs, running{c, pid, path})
	}

	scan := p.scanWithin(10 * time.Second)
	p.scanWithin(10 * time.Second)
	for _, r := range procs {
		t.Run(r.name, func(t *testing.T) {
			x := findRecord(t, scan.Records, r.pid).GetExecutable()
			if x.GetState() != r.wantState {
				t.Errorf("state = %v (%q), want %v", x.GetState(), x.GetStateDetail(), r.wantState)
			}
			if !strings.Contains(x.GetStateDetail(), r.wantDetail) {
				t.Errorf("state detail = %q, want it to contain %q", x.GetStateDetail(), r.wantDetail)
			}
			if n := len(x.GetStateDetail()); n > ingest.MaxDetailLen {
				t.Errorf("state detail is %d bytes, want at most %d", n, ingest.MaxDetailLen)
			}
			if got := string(x.GetPath()); got != r.path+" (deleted)" {
				t.Errorf("path = %q, want %q", got, r.path+" (deleted)")
			}
			want := 0
			if r.wantAlert {
				want = 1
			}
			alerts := p.alertsFor(int32(r.pid), kindDiskMismatch)
			if len(alerts) != want {
				t.Fatalf("%d disk_mismatch alerts after two scans, want %d: %v", len(alerts), want, alerts)
			}
			if want == 1 && alerts[0].State != r.wantState {
				t.Errorf("alert state = %v, want %v", alerts[0].State, r.wantState)
			}
		})
	}
	if got := p.agent.Counters().Dropped; len(got) != 0 {
		t.Errorf("agent dropped batches of a real scan: %v", got)
	}
}

func TestExecKeepsPidAndHashesNewImage(t *testing.T) {
	p := newPipeline(t, "", 80)
	p.capHashing(quickMaxFileSize)
	dir := t.TempDir()
	shell := filepath.Join(dir, "shell")
	shellSum := copyFile(t, "/bin/sh", shell)
	tail := filepath.Join(dir, "tail")
	tailSum := copyFile(t, "/usr/bin/tail", tail)

	// The shell waits for a line on stdin, then replaces itself with tail.
	cmd := exec.Command(shell, "-c", `read line; exec "$0" -f /dev/null`, tail)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pid := startCommand(t, cmd)
	waitExeLink(t, pid, func(l string) bool { return l == shell })

	before := findRecord(t, p.scan().Records, pid)
	if got := before.GetExecutable().GetRunning().GetSha256(); got != shellSum {
		t.Fatalf("before exec: sha256 = %s, want the shell's %s", got, shellSum)
	}

	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	waitExeLink(t, pid, func(l string) bool { return l == tail })
	after := findRecord(t, p.scan().Records, pid)
	if after.GetStartTicks() != before.GetStartTicks() {
		t.Errorf("start ticks = %d after exec, want %d as before", after.GetStartTicks(), before.GetStartTicks())
	}
	x := after.GetExecutable()
	if got := x.GetRunning().GetSha256(); got != tailSum {
		t.Errorf("after exec: sha256 = %s, want tail's %s", got, tailSum)
	}
	if got := string(x.GetPath()); got != tail {
		t.Errorf("after exec: path = %q, want %q", got, tail)
	}
	if x.GetState() != stateOnDisk {
		t.Errorf("after exec: state = %v (%q), want ON_DISK", x.GetState(), x.GetStateDetail())
	}
	if got := p.alertsWhere(func(a *binwatchv1.IntegrityAlert) bool { return a.GetProcess().GetPid() == int32(pid) }); len(got) != 0 {
		t.Errorf("%d alerts about pid %d, want 0: %v", len(got), pid, got)
	}
}

func TestTooLargeExecutableOneCoverageAlert(t *testing.T) {
	const maxFileSize = 16 << 10
	p := newPipeline(t, "", 80)
	p.capHashing(maxFileSize)
	prog := filepath.Join(t.TempDir(), "big")
	copyFile(t, "/bin/sleep", prog)
	if st, err := os.Stat(prog); err != nil || st.Size() <= maxFileSize {
		t.Fatalf("stat %s = %v, %v; want a file larger than %d bytes", prog, st, err, maxFileSize)
	}
	var pids []int
	for range 3 {
		pids = append(pids, startProcess(t, prog, "600").Process.Pid)
	}

	scan := p.scan()
	p.scan()
	for _, pid := range pids {
		x := findRecord(t, scan.Records, pid).GetExecutable()
		if x.GetCoverage() != binwatchv1.Coverage_COVERAGE_DEGRADED || x.GetCoverageReason() != reasonTooLarge {
			t.Errorf("pid %d: coverage = %v %v, want DEGRADED TOO_LARGE", pid, x.GetCoverage(), x.GetCoverageReason())
		}
		if x.GetRunning().GetSha256() != "" || x.GetRunning().GetSsdeep() != "" {
			t.Errorf("pid %d: digests %q %q, want none for a file over the cap", pid, x.GetRunning().GetSha256(), x.GetRunning().GetSsdeep())
		}
		if x.GetState() != stateOnDisk {
			t.Errorf("pid %d: state = %v (%q), want ON_DISK", pid, x.GetState(), x.GetStateDetail())
		}
	}
	if got := scan.Stats.GetCoverageDegraded()["too_large"]; got < uint32(len(pids)) {
		t.Errorf("stats.coverage_degraded[too_large] = %d, want at least %d", got, len(pids))
	}
	alerts := p.alertsWhere(func(a *binwatchv1.IntegrityAlert) bool {
		return a.Kind == kindCoverage && a.CoverageReason == reasonTooLarge &&
			string(a.GetProcess().GetExecutableRaw()) == prog
	})
	if len(alerts) != 1 {
		t.Fatalf("%d TOO_LARGE alerts for %d processes of %s over two scans, want 1: %v", len(alerts), len(pids), prog, alerts)
	}
	if h := alerts[0].GetProcess().GetHash(); h.GetSha256() != "" || h.GetSsdeep() != "" {
		t.Errorf("alert hashes = %q %q, want none", h.GetSha256(), h.GetSsdeep())
	}
	// Without a digest there is no baseline, so nothing else fires.
	if got := p.alertsAtPath(prog, kindBinaryChange); len(got) != 0 {
		t.Errorf("%d binary_change alerts, want 0", len(got))
	}
}

func TestHidepidCollectorReportsPartialVisibility(t *testing.T) {
	requireRoot(t, "mount a hidepid=2 proc in a private mount namespace")
	unshare := lookTool(t, "unshare", "util-linux")
	setpriv := lookTool(t, "setpriv", "util-linux")
	lookTool(t, "mount", "mount")
	bin := collectorBinary(t)
	p := newPipeline(t, "", 80)
	rec := recordBatches(t, p.url, testHost)

	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	rootPid := startProcess(t, prog, "600").Process.Pid

	procDir, err := os.MkdirTemp("", "binwatch-proc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(procDir) })
	if err := os.Chmod(procDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A private mount namespace keeps the hidepid mount away from the
	// host. The collector then runs as user 65534 and scans it.
	script := `mount -t proc -o hidepid=2 proc "$1" || exit 97; shift; exec "$@"`
	argv := []string{unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", procDir}
	argv = append(argv, dropPrivileges(setpriv)...)
	argv = append(argv, bin, "--proc", procDir)

	probe := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount -t proc -o hidepid=2 proc "$1"`, "sh", procDir)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("cannot mount a hidepid=2 proc in a private mount namespace: %v: %s", err, out)
	}

	scan := p.runCollector(rec, argv...)
	if !scan.stats.GetPartialVisibility() {
		t.Errorf("stats.partial_visibility = false, want true (detail %q)", scan.stats.GetVisibilityDetail())
	}
	if !strings.Contains(scan.stats.GetVisibilityDetail(), "hidepid=invisible") {
		t.Errorf("stats.visibility_detail = %q, want it to name hidepid=invisible", scan.stats.GetVisibilityDetail())
	}
	for _, r := range scan.records {
		if int(r.GetPid()) == rootPid || r.GetPid() == 1 {
			t.Errorf("hidden root process %d is in the records", r.GetPid())
		}
		if uids := r.GetUids(); len(uids) == 0 || uids[0] != 65534 {
			t.Errorf("pid %d with uids %v is in the records, want only the collector user's processes", r.GetPid(), uids)
		}
	}
	alerts := coverageAlerts(p, reasonPartial)
	if len(alerts) != 1 {
		t.Fatalf("%d PARTIAL_VISIBILITY alerts, want 1: %v", len(alerts), alerts)
	}
	if got := alerts[0].GetHost().GetId(); got != testHost {
		t.Errorf("alert host = %q, want %q", got, testHost)
	}
	if !strings.Contains(alerts[0].GetDetail(), "hidepid=invisible") {
		t.Errorf("alert detail = %q, want it to name hidepid=invisible", alerts[0].GetDetail())
	}
}

// hostileMessage is one message that the agent must drop.
type hostileMessage struct {
	name    string
	subject string
	header  nats.Header
	data    []byte
	// times the message is sent; 0 means once.
	times int
	// reasons lists the drop reasons accepted for it.
	reasons []string
	// record marks a fault in a record: the record is dropped alone,
	// counted as "record_<reason>", and the rest of the batch is kept.
	record bool
}

func TestHostileMessagesDropped(t *testing.T) {
	p := newPipeline(t, "", 80)
	p.capHashing(quickMaxFileSize)
	logs := &syncBuffer{}
	if err := p.agent.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(connect(t, p.url), agent.Config{StateDir: p.stateDir, AlertAck: true},
		slogTextLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	p.agent = a

	// A real record, so that each message below is wrong in one way only.
	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	pid := startProcess(t, prog, "600").Process.Pid
	real, err := p.scanner.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec := findRecord(t, real.Records, pid)
	scanOf := func(seq uint64, recs ...*binwatchv1.ProcessRecord) *collector.Scan {
		return &collector.Scan{Seq: seq, Time: time.Now(), BootID: p.scanner.BootID(), Records: recs,
			Stats: &binwatchv1.ScanStats{ProcessesSeen: uint32(len(recs))}}
	}
	batches, _ := p.pub.Split(scanOf(1, rec), 1<<20)
	base := batches[0]
	if err := ingest.Validate(base, testHost); err != nil {
		t.Fatalf("the unchanged batch is invalid: %v", err)
	}
	mutated := func(change func(b *binwatchv1.ProcessBatch)) []byte {
		b := proto.Clone(base).(*binwatchv1.ProcessBatch)
		change(b)
		data, err := proto.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	batchHeader := nats.Header{}
	batchHeader.Set(schema.HeaderContentType, schema.ContentTypeProtobuf)
	batchHeader.Set(schema.HeaderMessageType, schema.MessageTypeProcessBatch)
	alertHeader := nats.Header{}
	alertHeader.Set(schema.HeaderContentType, schema.ContentTypeProtobuf)
	alertHeader.Set(schema.HeaderMessageType, schema.MessageTypeIntegrityAlert)
	alert, err := proto.Marshal(&binwatchv1.IntegrityAlert{
		Id: strings.Repeat("ab", 32), Kind: kindDiskMismatch, Severity: binwatchv1.Severity_SEVERITY_HIGH,
		Rule: "binwatch.disk_mismatch", Time: timestamppb.Now(),
		Host:    &binwatchv1.AlertHost{Id: testHost, Hostname: "test host"},
		Process: &binwatchv1.AlertProcess{Pid: int32(pid), Executable: prog, ExecutableRaw: []byte(prog)},
	})
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 512)
	rand.NewChaCha8([32]byte{'b', 'w'}).Read(random)

	subject := schema.ProcessSubject(testHost)
	other := schema.ProcessSubject("otherhost")
	firstRecord := func(b *binwatchv1.ProcessBatch) *binwatchv1.ProcessRecord { return b.Records[0] }
	messages := []hostileMessage{
		{name: "empty payload", subject: subject, header: batchHeader, times: 100, reasons: []string{ingest.ReasonEmpty}},
		{name: "random bytes", subject: subject, data: random, reasons: []string{ingest.ReasonDecode, ingest.ReasonUnknownField}},
		{name: "alert as a batch", subject: subject, header: batchHeader, data: alert, reasons: []string{ingest.ReasonUnknownField}},
		{name: "alert with its own headers", subject: subject, header: alertHeader, data: alert, reasons: []string{ingest.ReasonWrongType}},
		{name: "host_id of another host", subject: subject, header: batchHeader, reasons: []string{ingest.ReasonHostMismatch},
			data: mutated(func(b *binwatchv1.ProcessBatch) { b.HostId = "otherhost" })},
		{name: "batch on another host's subject", subject: other, header: batchHeader, reasons: []string{ingest.ReasonHostMismatch},
			data: mutated(func(*binwatchv1.ProcessBatch) {})},
		{name: "subject token with a bad byte", subject: schema.ProcessSubjectPrefix + "test%host", header: batchHeader,
			reasons: []string{ingest.ReasonSubject}, data: mutated(func(*binwatchv1.ProcessBatch) {})},
		{name: "pid -1", record: true, subject: subject, header: batchHeader, reasons: []string{ingest.ReasonFieldRange},
			data: mutated(func(b *binwatchv1.ProcessBatch) { firstRecord(b).Pid = -1 })},
		{name: "pid -1 for another host", record: true, subject: other, header: batchHeader, reasons: []string{ingest.ReasonFieldRange},
			data: mutated(func(b *binwatchv1.ProcessBatch) { b.HostId = "otherhost"; firstRecord(b).Pid = -1 })},
		{name: "10^9 batches claimed", subject: subject, header: batchHeader, reasons: []string{ingest.ReasonFieldRange},
			data: mutated(func(b *binwatchv1.ProcessBatch) { b.BatchCount = 1e9 })},
		{name: "10^9 processes claimed", subject: subject, header: batchHeader, reasons: []string{ingest.ReasonFieldRange},
			data: mutated(func(b *binwatchv1.ProcessBatch) { b.Stats.ProcessesSeen = 1e9 })},
		{name: "batch_index equal to batch_count", subject: subject, header: batchHeader, reasons: []string{ingest.ReasonFieldRange},
			data: mutated(func(b *binwatchv1.ProcessBatch) { b.BatchIndex = b.BatchCount })},
		{name: "8 KiB path", record: true, subject: subject, header: batchHeader, reasons: []string{ingest.ReasonOversizedField},
			data: mutated(func(b *binwatchv1.ProcessBatch) {
				firstRecord(b).Executable.Path = []byte("/" + strings.Repeat("p", 8<<10))
			})},
		{name: "10 KiB name", record: true, subject: subject, header: batchHeader, reasons: []string{ingest.ReasonOversizedField},
			data: mutated(func(b *binwatchv1.ProcessBatch) { firstRecord(b).Name = strings.Repeat("n", 10<<10) })},
		{name: "upper-case sha256", record: true, subject: subject, header: batchHeader, reasons: []string{ingest.ReasonDigestShape},
			data: mutated(func(b *binwatchv1.ProcessBatch) {
				h := firstRecord(b).Executable.Running
				h.Sha256 = strings.ToUpper(h.Sha256)
			})},
		{name: "sha256 of 63 digits", record: true, subject: subject, header: batchHeader, reasons: []string{ingest.ReasonDigestShape},
			data: mutated(func(b *binwatchv1.ProcessBatch) {
				h := firstRecord(b).Executable.Running
				h.Sha256 = h.Sha256[:63]
			})},
		{name: "ssdeep part of 200 characters", record: true, subject: subject, header: batchHeader, reasons: []string{ingest.ReasonDigestShape},
			data: mutated(func(b *binwatchv1.ProcessBatch) {
				firstRecord(b).Executable.Running.Ssdeep = "3:" + strings.Repeat("A", 200) + ":B"
			})},
	}

	// One connection sends everything, then a valid batch of another
	// host, so the agent has handled every message once that batch is
	// evaluated.
	nc := connect(t, p.url)
	want := map[string]uint64{}
	ambiguous := map[string]uint64{} // sent with more than one accepted reason
	// Batches whose only fault is in a record are accepted without it.
	// They all share one scan and batch number, so on each subject all but
	// the first are repeats.
	recordMessages := map[string]uint64{}
	for _, m := range messages {
		times := max(m.times, 1)
		for range times {
			msg := &nats.Msg{Subject: m.subject, Header: m.header, Data: m.data}
			if err := nc.PublishMsg(msg); err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
		}
		if m.record {
			want["record_"+m.reasons[0]] += uint64(times)
			recordMessages[m.subject] += uint64(times)
		} else if len(m.reasons) == 1 {
			want[m.reasons[0]] += uint64(times)
		} else {
			ambiguous[strings.Join(m.reasons, "|")] += uint64(times)
		}
	}
	syncPub, err := collector.NewPublisher(nc, "synchost", "sync host")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncPub.Publish(context.Background(), scanOf(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.WaitScan(ctx, "synchost", syncPub.CollectorID(), 1); err != nil {
		t.Fatal(err)
	}

	for _, n := range recordMessages {
		want["duplicate"] += n - 1
	}
	c := a.Counters()
	got := c.Dropped
	for reasons, n := range ambiguous {
		var sum uint64
		for _, r := range strings.Split(reasons, "|") {
			sum += got[r] - want[r]
		}
		if sum != n {
			t.Errorf("drops for %s beyond the other messages = %d, want %d (dropped %v)", reasons, sum, n, got)
		}
	}
	for reason, n := range want {
		if got[reason] < n {
			t.Errorf("Dropped[%s] = %d, want %d", reason, got[reason], n)
		}
	}
	var total, wantTotal uint64
	for _, n := range got {
		total += n
	}
	for _, n := range want {
		wantTotal += n
	}
	for _, n := range ambiguous {
		wantTotal += n
	}
	if total != wantTotal {
		t.Errorf("%d messages dropped in all, want %d: %v", total, wantTotal, got)
	}
	wantBatches := uint64(1 + len(recordMessages)) // synchost's, and the first of each subject
	if c.BatchesReceived != wantBatches || c.RecordsReceived != 0 {
		t.Errorf("batches, records received = %d, %d; want %d, 0 (the empty batch of synchost and the emptied ones)",
			c.BatchesReceived, c.RecordsReceived, wantBatches)
	}
	if err := a.WaitDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	// Rejected records raise telemetry_gap, one per host, reason and
	// field, and nothing else is raised.
	others := p.alertsWhere(func(a *binwatchv1.IntegrityAlert) bool {
		return a.Kind != binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP
	})
	if len(others) != 0 {
		t.Errorf("alerts other than telemetry_gap: %v", others)
	}
	isGap := func(a *binwatchv1.IntegrityAlert) bool {
		return a.Kind == binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP
	}
	// Delivered means acknowledged by the stream; the subscriber may get
	// the last ones a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for len(p.alertsWhere(isGap)) < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	gaps := p.alertsWhere(isGap)
	// testhost: pid, path, name, sha256 (twice, one field), ssdeep;
	// otherhost: pid.
	if len(gaps) != 6 {
		t.Errorf("%d telemetry_gap alerts for rejected records, want 6: %v", len(gaps), gaps)
	}
	if n := savedBaselines(t, p.stateDir); n != 0 {
		t.Errorf("%d baselines saved after hostile messages, want 0", n)
	}

	// Each reason is logged once, because the repeats fall in the same
	// minute.
	lines := map[string]int{}
	for _, m := range regexp.MustCompile(`msg="dropped invalid message".* reason=(\S+)`).FindAllStringSubmatch(logs.String(), -1) {
		lines[m[1]]++
	}
	for reason := range got {
		if strings.HasPrefix(reason, "record_") || reason == "duplicate" {
			continue // logged with their own messages
		}
		if lines[reason] != 1 {
			t.Errorf("%d log lines for %d drops with reason %s, want 1", lines[reason], got[reason], reason)
		}
	}
	recordLines := regexp.MustCompile(`msg="dropped invalid record"`).FindAllString(logs.String(), -1)
	if len(recordLines) == 0 || uint64(len(recordLines)) >= got["record_field_range"]+got["record_oversized_field"]+got["record_digest_shape"] {
		t.Errorf("%d log lines for rejected records, want some, and fewer than the records", len(recordLines))
	}

	// The agent still accepts a valid batch, and its record sets a
	// baseline.
	if _, err := p.pub.Publish(context.Background(), scanOf(2, rec)); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitScan(ctx, testHost, p.pub.CollectorID(), 2); err != nil {
		t.Fatal(err)
	}
	if got := a.Counters().RecordsReceived; got != 1 {
		t.Errorf("records received after a valid batch = %d, want 1", got)
	}
	// Saves are spaced out while the agent runs; Close saves for sure.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := savedBaselines(t, p.stateDir); n != 1 {
		t.Errorf("%d baselines saved after a valid batch of one record, want 1", n)
	}
}

// savedBaselines opens the agent's saved baseline file and counts its
// entries.
func savedBaselines(t *testing.T, stateDir string) int {
	t.Helper()
	s, err := baseline.Open(filepath.Join(stateDir, "baselines.json"), baseline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Len()
}

func TestSmallMaxPayloadCarriesEveryRecord(t *testing.T) {
	const (
		maxPayload = 16 << 10
		records    = 5000
	)
	srv, err := agent.StartEmbedded(agent.EmbeddedOptions{Listen: "127.0.0.1:0", Name: "small", MaxPayload: maxPayload}, testLogger(t))
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := srv.ClientURL()

	var alertSubjects sync.Map
	sub := connect(t, url)
	if _, err := sub.Subscribe(schema.AlertSubjectAll, func(m *nats.Msg) { alertSubjects.Store(m.Subject, true) }); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(connect(t, url), agent.Config{StateDir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	// 5000 records made from a real one, each with its own pid and start.
	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	pid := startProcess(t, prog, "600").Process.Pid
	scanner, err := collector.NewScanner(collector.Options{MaxFileSize: quickMaxFileSize})
	if err != nil {
		t.Fatal(err)
	}
	real, err := scanner.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	model := findRecord(t, real.Records, pid)
	scan := &collector.Scan{Seq: 1, Time: real.Time, BootID: real.BootID, Stats: real.Stats}
	for i := range records {
		r := proto.Clone(model).(*binwatchv1.ProcessRecord)
		r.Pid = int32(1000 + i)
		r.StartTicks += uint64(i)
		scan.Records = append(scan.Records, r)
	}
	// A record that no batch under the max payload can carry.
	huge := proto.Clone(model).(*binwatchv1.ProcessRecord)
	huge.Pid = 999
	huge.Executable.StateDetail = strings.Repeat("d", 2*maxPayload)
	scan.Records = slices.Insert(scan.Records, records/2, huge)

	pubConn := connect(t, url)
	if got := pubConn.MaxPayload(); got != maxPayload {
		t.Fatalf("server max payload = %d, want %d", got, maxPayload)
	}
	pub, err := collector.NewPublisher(pubConn, testHost, "test host")
	if err != nil {
		t.Fatal(err)
	}
	var dropped []int32
	pub.OnOversized(func(r *binwatchv1.ProcessRecord, err error) { dropped = append(dropped, r.Pid) })
	res, err := pub.Publish(context.Background(), scan)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if res.Records != records || res.Oversized != 1 || !slices.Equal(dropped, []int32{999}) {
		t.Errorf("Publish = %d records, %d oversized, dropped pids %v; want %d, 1, [999]", res.Records, res.Oversized, dropped, records)
	}
	if least := records * proto.Size(model) / maxPayload; res.Batches <= least {
		t.Errorf("Publish sent %d batches, want more than %d", res.Batches, least)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitScan(ctx, testHost, pub.CollectorID(), 1); err != nil {
		t.Fatal(err)
	}
	c := a.Counters()
	if c.BatchesReceived != uint64(res.Batches) {
		t.Errorf("batches received = %d, want %d", c.BatchesReceived, res.Batches)
	}
	if c.RecordsReceived != records {
		t.Errorf("records received = %d, want %d", c.RecordsReceived, records)
	}
	if len(c.Dropped) != 0 || c.SlowConsumer != 0 {
		t.Errorf("dropped %v, slow consumer drops %d; want none", c.Dropped, c.SlowConsumer)
	}
	h := c.Hosts[testHost]
	if h == nil {
		t.Fatalf("no counters for host %s: %v", testHost, c.Hosts)
	}
	if h.Gaps != 0 || h.MissingBatches != 0 {
		t.Errorf("host gaps = %d, missing batches = %d; want 0, 0", h.Gaps, h.MissingBatches)
	}
	if h.RecordsOversize != 1 {
		t.Errorf("host records_oversized = %d, want 1", h.RecordsOversize)
	}
	if err := a.WaitDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := alertSubjects.Load(schema.AlertSubject(kindTelemetryGap, testHost)); ok || c.Alerts["telemetry_gap"] != 0 {
		t.Errorf("a telemetry_gap alert was raised for a complete scan")
	}
}
