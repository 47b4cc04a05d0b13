package agent_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

const (
	kindDiskMismatch = binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH
	kindBinaryChange = binwatchv1.AlertKind_ALERT_KIND_BINARY_CHANGE
	kindCoverage     = binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED
)

// similarCopy returns sleep's bytes with one word of its usage text
// changed: a different SHA-256 that ssdeep scores at 100.
func similarCopy(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("Usage:"))
	if i < 0 {
		t.Fatal(`/bin/sleep has no "Usage:" text to change`)
	}
	copy(data[i:], "USAGE:")
	return data
}

func TestReplacedByRenameRaisesOneDiskMismatch(t *testing.T) {
	p := newPipeline(t, "", 80)
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	oldSum := copyFile(t, "/bin/sleep", prog)
	cmd := startProcess(t, prog, "600")
	pid := int32(cmd.Process.Pid)

	p.scan()
	if got := p.alertsFor(pid, kindDiskMismatch); len(got) != 0 {
		t.Fatalf("before the replacement: %d disk_mismatch alerts, want 0: %v", len(got), got)
	}

	newSum := copyFile(t, "/usr/bin/tail", prog+".new")
	if err := os.Rename(prog+".new", prog); err != nil {
		t.Fatal(err)
	}
	p.scan()
	got := p.alertsFor(pid, kindDiskMismatch)
	if len(got) != 1 {
		t.Fatalf("after the replacement: %d disk_mismatch alerts, want 1: %v", len(got), got)
	}
	a := got[0]
	if a.State != binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED {
		t.Errorf("state = %v, want REPLACED", a.State)
	}
	if a.Severity != binwatchv1.Severity_SEVERITY_HIGH {
		t.Errorf("severity = %v, want HIGH", a.Severity)
	}
	if a.GetProcess().GetHash().GetSha256() != oldSum {
		t.Errorf("running sha256 = %s, want the old file's %s", a.GetProcess().GetHash().GetSha256(), oldSum)
	}
	if a.GetOnDisk().GetSha256() != newSum {
		t.Errorf("on-disk sha256 = %s, want the new file's %s", a.GetOnDisk().GetSha256(), newSum)
	}
	if a.Similarity == nil {
		t.Error("similarity is missing, want the score between running and on-disk file")
	}

	p.scan()
	p.scan()
	if got := p.alertsFor(pid, kindDiskMismatch); len(got) != 1 {
		t.Errorf("after two more scans: %d disk_mismatch alerts, want still 1", len(got))
	}
}

func TestUnlinkedRaisesDiskMismatch(t *testing.T) {
	p := newPipeline(t, "", 80)
	prog := filepath.Join(t.TempDir(), "gone")
	sum := copyFile(t, "/bin/sleep", prog)
	cmd := startProcess(t, prog, "600")
	if err := os.Remove(prog); err != nil {
		t.Fatal(err)
	}
	p.scan()
	got := p.alertsFor(int32(cmd.Process.Pid), kindDiskMismatch)
	if len(got) != 1 {
		t.Fatalf("%d disk_mismatch alerts, want 1", len(got))
	}
	if got[0].State != binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED {
		t.Errorf("state = %v, want UNLINKED", got[0].State)
	}
	if got[0].GetProcess().GetHash().GetSha256() != sum {
		t.Errorf("running sha256 = %s, want %s", got[0].GetProcess().GetHash().GetSha256(), sum)
	}
}

func TestBinaryChangeBelowThreshold(t *testing.T) {
	p := newPipeline(t, "", 80)
	prog := filepath.Join(t.TempDir(), "prog")
	oldSum := copyFile(t, "/bin/sleep", prog)
	first := startProcess(t, prog, "600")
	p.scan()
	first.Process.Kill()
	first.Wait()

	newSum := copyFile(t, "/usr/bin/tail", prog)
	startProcess(t, prog, "-f", "/dev/null")
	p.scan()
	got := p.alertsAtPath(prog, kindBinaryChange)
	if len(got) != 1 {
		t.Fatalf("%d binary_change alerts, want 1", len(got))
	}
	a := got[0]
	if a.GetPrevious().GetSha256() != oldSum {
		t.Errorf("previous sha256 = %s, want %s", a.GetPrevious().GetSha256(), oldSum)
	}
	if a.GetProcess().GetHash().GetSha256() != newSum {
		t.Errorf("current sha256 = %s, want %s", a.GetProcess().GetHash().GetSha256(), newSum)
	}
	if a.GetPrevious().GetSsdeep() == "" || a.GetProcess().GetHash().GetSsdeep() == "" {
		t.Errorf("ssdeep digests missing: previous %q, current %q", a.GetPrevious().GetSsdeep(), a.GetProcess().GetHash().GetSsdeep())
	}
	if a.Similarity == nil || *a.Similarity >= 80 {
		t.Errorf("similarity = %v, want a score below 80", a.Similarity)
	}
	if a.SimilarityThreshold != 80 {
		t.Errorf("similarity threshold = %d, want 80", a.SimilarityThreshold)
	}

	p.scan()
	if got := p.alertsAtPath(prog, kindBinaryChange); len(got) != 1 {
		t.Errorf("after another scan: %d binary_change alerts, want still 1", len(got))
	}
}

func TestBinaryChangeAtOrAboveThresholdIsQuiet(t *testing.T) {
	p := newPipeline(t, "", 80)
	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	first := startProcess(t, prog, "600")
	p.scan()
	first.Process.Kill()
	first.Wait()

	writeExecutable(t, prog, similarCopy(t))
	startProcess(t, prog, "600")
	p.scan()
	if got := p.alertsAtPath(prog, kindBinaryChange); len(got) != 0 {
		t.Errorf("%d binary_change alerts for a change scored 100, want 0: %v", len(got), got)
	}
}

func TestBaselinesSurviveAgentRestart(t *testing.T) {
	state := t.TempDir()
	p := newPipeline(t, state, 80)
	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	first := startProcess(t, prog, "600")
	p.scan()
	first.Process.Kill()
	first.Wait()

	// While the agent is down, a dissimilar binary is put at the path; it
	// only runs once the agent is back.
	if err := p.agent.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "/usr/bin/tail", prog)
	p.startAgent(80)
	startProcess(t, prog, "-f", "/dev/null")
	p.scan()
	if got := p.alertsAtPath(prog, kindBinaryChange); len(got) != 1 {
		t.Fatalf("%d binary_change alerts after the restart, want 1", len(got))
	}
}

func TestProcessesExitingDuringScan(t *testing.T) {
	p := newPipeline(t, "", 80)
	p.scan() // warm the cache so the next scans are quick
	prog := filepath.Join(t.TempDir(), "short")
	copyFile(t, "/bin/true", prog)

	var stop atomic.Bool
	var started sync.Map
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			cmd := exec.Command(prog)
			if err := cmd.Start(); err != nil {
				t.Errorf("starting %s: %v", prog, err)
				return
			}
			started.Store(int32(cmd.Process.Pid), true)
			cmd.Wait()
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	scans := 0
	for time.Now().Before(deadline) || scans < 2 {
		p.scan()
		scans++
	}
	stop.Store(true)
	wg.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.alerts {
		if _, ok := started.Load(a.GetProcess().GetPid()); ok {
			t.Errorf("alert about a short-lived process: %v %s", a.Kind, a.Message)
		}
		if bytes.Equal(a.GetProcess().GetExecutableRaw(), []byte(prog)) {
			t.Errorf("alert about %s: %v %s", prog, a.Kind, a.Message)
		}
	}
}

func TestUnusualPathReachesAlertExactly(t *testing.T) {
	p := newPipeline(t, "", 80)
	name := "bad\xff\xfe name\nline"
	prog := filepath.Join(t.TempDir(), name)
	copyFile(t, "/bin/sleep", prog)
	cmd := startProcess(t, prog, "600")
	if err := os.Remove(prog); err != nil {
		t.Fatal(err)
	}
	p.scan()
	got := p.alertsFor(int32(cmd.Process.Pid), kindDiskMismatch)
	if len(got) != 1 {
		t.Fatalf("%d disk_mismatch alerts, want 1", len(got))
	}
	a := got[0]
	wantRaw := prog + " (deleted)"
	if string(a.GetProcess().GetExecutableRaw()) != wantRaw {
		t.Errorf("executable_raw = %q, want %q", a.GetProcess().GetExecutableRaw(), wantRaw)
	}
	text := a.GetProcess().GetExecutable()
	if strings.Contains(text, "\n") || !utf8.ValidString(text) {
		t.Errorf("executable text %q is not an escaped, one-line rendering", text)
	}
	if !strings.Contains(text, `\xff\xfe name\nline`) {
		t.Errorf("executable text %q does not show the escaped bytes", text)
	}
	if !utf8.ValidString(a.GetProcess().GetName()) {
		t.Errorf("process name %q is not valid UTF-8", a.GetProcess().GetName())
	}
}

// TestSsdeepFailureRaisesOneCoverageAlert sends the records of a real scan
// in which the collector could compute SHA-256 but not ssdeep for one
// running copy of sleep, as the exe package reports an ssdeep failure, and
// expects one coverage_degraded alert over two scans.
func TestSsdeepFailureRaisesOneCoverageAlert(t *testing.T) {
	p := newPipeline(t, "", 80)
	prog := filepath.Join(t.TempDir(), "prog")
	copyFile(t, "/bin/sleep", prog)
	cmd := startProcess(t, prog, "600")
	pid := int32(cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 2 {
		scan, err := p.scanner.Scan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range scan.Records {
			if r.Pid != pid {
				continue
			}
			found = true
			x := r.Executable
			if x.GetRunning().GetSha256() == "" {
				t.Fatal("the scan has no SHA-256 for the test process")
			}
			x.Running.Ssdeep = ""
			x.Coverage = binwatchv1.Coverage_COVERAGE_DEGRADED
			x.CoverageReason = binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED
			x.CoverageDetail = "ssdeep digest failed"
		}
		if !found {
			t.Fatalf("pid %d missing from the scan", pid)
		}
		if _, err := p.pub.Publish(ctx, scan); err != nil {
			t.Fatal(err)
		}
		if err := p.agent.WaitScan(ctx, testHost, p.pub.CollectorID(), scan.Seq); err != nil {
			t.Fatal(err)
		}
		if err := p.agent.WaitDelivered(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the coverage_degraded alert", 5*time.Second, func() bool {
		return len(p.alertsFor(pid, kindCoverage)) > 0
	})
	got := p.alertsFor(pid, kindCoverage)
	if len(got) != 1 {
		t.Fatalf("%d coverage_degraded alerts over two scans, want 1", len(got))
	}
	if got[0].CoverageReason != binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED {
		t.Errorf("coverage reason = %v, want SSDEEP_FAILED", got[0].CoverageReason)
	}
	if got[0].GetProcess().GetHash().GetSha256() == "" {
		t.Error("the alert lacks the SHA-256 that was computed")
	}
}
