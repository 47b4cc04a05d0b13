package collector

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/binwatch/binwatch/agent/ingest"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// pfKthread is PF_KTHREAD from include/linux/sched.h, repeated here so
// that the test judges kernel threads without the procfs package.
const pfKthread = 0x00200000

// kernelThreadFlag reads the flags field of /proc/<pid>/stat and reports
// whether PF_KTHREAD is set, and whether the process still exists.
func kernelThreadFlag(t *testing.T, pid int32) (kthread, exists bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return false, false
	}
	// The comm may contain spaces and parentheses; the fields after the
	// last ')' are state, ppid, pgrp, session, tty_nr, tpgid, flags.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 7 {
		t.Fatalf("/proc/%d/stat has %d fields after the comm: %q", pid, len(fields), data)
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	if err != nil {
		t.Fatalf("/proc/%d/stat flags %q: %v", pid, fields[6], err)
	}
	return flags&pfKthread != 0, true
}

func TestScanSkipsKernelThreads(t *testing.T) {
	// kthreadd is pid 2 in the initial pid namespace. In a container's
	// pid namespace no kernel thread is visible.
	if comm, err := os.ReadFile("/proc/2/comm"); err != nil || strings.TrimSpace(string(comm)) != "kthreadd" {
		t.Skip("no kernel threads in this pid namespace: /proc/2 is not kthreadd")
	}

	// A one-byte cap leaves every executable unread, so the scan is
	// quick. Skipping kernel threads does not depend on hashing.
	s, err := NewScanner(Options{MaxFileSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	scan, err := s.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if scan.Stats.KernelThreads == 0 {
		t.Errorf("stats.kernel_threads = 0, want the kernel threads of this host counted")
	}
	if got := int(scan.Stats.ProcessesSeen); got != len(scan.Records) {
		t.Errorf("stats.processes_seen = %d, want %d, the number of records", got, len(scan.Records))
	}

	for _, r := range scan.Records {
		if r.GetPid() == 2 {
			t.Errorf("record of pid 2, kthreadd: %v", r)
		}
		// Usermode helpers that the kernel starts are children of kthreadd
		// too, but run a real executable and lack the flag.
		if r.GetPpid() != 2 {
			continue
		}
		if kthread, exists := kernelThreadFlag(t, r.GetPid()); kthread && exists {
			t.Errorf("record of kernel thread %d (%s)", r.GetPid(), r.GetName())
		}
	}
}

// startCopy copies /bin/sleep to path, starts n processes of it and waits
// until each runs the copy. They are killed at cleanup.
func startCopy(t *testing.T, path string, n int) []int {
	t.Helper()
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for range n {
		cmd := exec.Command(path, "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		pid := cmd.Process.Pid
		deadline := time.Now().Add(5 * time.Second)
		for {
			link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
			if err == nil && link == path {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d does not run %s: exe link %q, %v", pid, path, link, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		pids = append(pids, pid)
	}
	return pids
}

func TestScanTooLargeCostsOneAttempt(t *testing.T) {
	const maxFileSize = 16 << 10
	path := filepath.Join(t.TempDir(), "big")
	pids := startCopy(t, path, 3)
	s, err := NewScanner(Options{MaxFileSize: maxFileSize})
	if err != nil {
		t.Fatal(err)
	}

	// The per-process results show what each record cost; a whole scan
	// mixes in every other process of the host.
	var hashed, misses, hits int
	var bytesHashed int64
	for _, pid := range pids {
		rec, res, err := s.record(pid)
		if err != nil {
			t.Fatalf("record(%d): %v", pid, err)
		}
		hashed += res.Hashed
		misses += res.CacheMisses
		hits += res.CacheHits
		bytesHashed += res.BytesHashed
		x := rec.GetExecutable()
		if x.GetCoverageReason() != binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE {
			t.Errorf("pid %d: coverage = %v %v, want DEGRADED TOO_LARGE", pid, x.GetCoverage(), x.GetCoverageReason())
		}
		if x.GetRunning().GetSha256() != "" || x.GetRunning().GetSsdeep() != "" {
			t.Errorf("pid %d: digests %q %q, want none", pid, x.GetRunning().GetSha256(), x.GetRunning().GetSsdeep())
		}
	}
	if hashed != 0 || misses != 1 || hits != len(pids)-1 || bytesHashed != 0 {
		t.Errorf("%d processes of a file over the cap: %d hashed, %d misses, %d hits, %d bytes; want 0, 1, %d, 0",
			len(pids), hashed, misses, hits, bytesHashed, len(pids)-1)
	}

	scan, err := s.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := scan.Stats.CoverageDegraded["too_large"]; got < uint32(len(pids)) {
		t.Errorf("stats.coverage_degraded[too_large] = %d, want at least %d", got, len(pids))
	}
	if scan.Stats.CacheHits < uint32(len(pids)) {
		t.Errorf("stats.cache_hits = %d, want at least %d: the file's outcome is cached", scan.Stats.CacheHits, len(pids))
	}
}

func TestDetailText(t *testing.T) {
	long := strings.Repeat("é", maxDetailLen) // two bytes each
	tests := []struct {
		name, in string
		wantLen  int // 0: the input's length
		wantCut  bool
	}{
		{name: "short", in: "fifo at the path"},
		{name: "at the bound", in: strings.Repeat("a", maxDetailLen)},
		{name: "over the bound", in: strings.Repeat("a", maxDetailLen+1), wantLen: maxDetailLen, wantCut: true},
		{name: "multi-byte characters", in: long, wantCut: true},
		{name: "invalid UTF-8 quoted, then cut", in: strings.Repeat("\xff", maxDetailLen), wantLen: maxDetailLen, wantCut: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := detailText(tt.in)
			if len(got) > maxDetailLen {
				t.Errorf("len(detailText(%.20q...)) = %d, want at most %d", tt.in, len(got), maxDetailLen)
			}
			if tt.wantLen != 0 && len(got) != tt.wantLen {
				t.Errorf("len(detailText(%.20q...)) = %d, want %d", tt.in, len(got), tt.wantLen)
			}
			if !utf8.ValidString(got) {
				t.Errorf("detailText(%.20q...) = %.40q..., not valid UTF-8", tt.in, got)
			}
			if cut := strings.HasSuffix(got, truncatedMark); cut != tt.wantCut {
				t.Errorf("detailText(%.20q...) ends with %q: %v, want %v", tt.in, truncatedMark, cut, tt.wantCut)
			}
			if !tt.wantCut && got != validText(tt.in) {
				t.Errorf("detailText(%.20q...) = %.40q..., want the input unchanged", tt.in, got)
			}
		})
	}
}

func TestDetailBoundWithinAgentBound(t *testing.T) {
	if maxDetailLen > ingest.MaxDetailLen {
		t.Errorf("maxDetailLen = %d, want at most the agent's ingest.MaxDetailLen %d", maxDetailLen, ingest.MaxDetailLen)
	}
}

// TestScanRecordsUnreadableLongPath runs a binary whose path is longer
// than the kernel's 4096-byte limit, so /proc/<pid>/exe cannot be read.
// The process must still be recorded, as degraded, not left out.
func TestScanRecordsUnreadableLongPath(t *testing.T) {
	root := t.TempDir()
	component := strings.Repeat("d", 200)
	dir, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	const depth = 22 // 22 * 201 bytes is past 4096
	for i := 0; i < depth; i++ {
		if err := unix.Mkdirat(int(dir.Fd()), component, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Openat(int(dir.Fd()), component, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		dir.Close()
		dir = os.NewFile(uintptr(fd), component)
	}
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Openat(int(dir.Fd()), "sleep", unix.O_CREAT|unix.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "sleep")
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dir.Close()

	// Shells cd by the full path, which is too long. The test binary in
	// helper mode walks down one relative step at a time and execs.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), deepExecEnv+"="+component+":"+strconv.Itoa(depth))
	cmd.Dir = root
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not exec sleep", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}

	s, err := NewScanner(Options{})
	if err != nil {
		t.Fatal(err)
	}
	scan, err := s.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var rec *binwatchv1.ProcessRecord
	for _, r := range scan.Records {
		if r.Pid == int32(pid) {
			rec = r
		}
	}
	if rec == nil {
		t.Fatalf("pid %d with a %d-byte executable path is missing from the scan", pid, depth*201)
	}
	x := rec.Executable
	if x.Coverage != binwatchv1.Coverage_COVERAGE_DEGRADED || x.CoverageReason == binwatchv1.CoverageReason_COVERAGE_REASON_UNSPECIFIED {
		t.Errorf("coverage = %v %v, want DEGRADED with a reason", x.Coverage, x.CoverageReason)
	}
	if x.State == binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK && x.GetRunning().GetSha256() == "" {
		t.Errorf("state ON_DISK without a digest: %+v", x)
	}
}

// deepExecEnv makes the test binary, in TestMain, change into
// "<component>" <depth> times and exec ./sleep there.
const deepExecEnv = "BINWATCH_TEST_DEEP_EXEC"

func TestMain(m *testing.M) {
	if v := os.Getenv(deepExecEnv); v != "" {
		component, depthText, _ := strings.Cut(v, ":")
		depth, _ := strconv.Atoi(depthText)
		for i := 0; i < depth; i++ {
			if err := os.Chdir(component); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
		err := syscall.Exec("./sleep", []string{"sleep", "600"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}
