package exe

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func TestInspectAccessDenied(t *testing.T) {
	requireRoot(t, "run a helper as another user against a root process")
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv(1) not found; install util-linux")
	}
	_, content := sleepBinary(t)
	pid, path := startSleep(t, content, t.TempDir(), "prog")
	bin := worldReadableCopy(t)

	out := runHelperCmd(t, setpriv,
		[]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin},
		helperEnv+"=inspect", "EXE_TEST_PID="+strconv.Itoa(pid), "EXE_TEST_LINK="+path)
	_, records := decodeRecords(t, out)
	if len(records) != 2 {
		t.Fatalf("helper printed %d records, want 2", len(records))
	}
	wantPaths := []string{"", path}
	for i, ex := range records {
		if ex.GetCoverage() != binwatchv1.Coverage_COVERAGE_DEGRADED ||
			ex.GetCoverageReason() != binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED {
			t.Errorf("record %d: coverage %v %v (%q), want DEGRADED ACCESS_DENIED", i, ex.GetCoverage(), ex.GetCoverageReason(), ex.GetCoverageDetail())
		}
		// Access denied is neither a kernel thread nor an unlinked file.
		checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN)
		if !strings.Contains(ex.GetStateDetail(), "permission denied") {
			t.Errorf("record %d: StateDetail = %q, want it to say permission denied", i, ex.GetStateDetail())
		}
		if string(ex.GetPath()) != wantPaths[i] {
			t.Errorf("record %d: Path = %q, want %q", i, ex.GetPath(), wantPaths[i])
		}
		if ex.GetRunning().GetSha256() != "" {
			t.Errorf("record %d: Running.Sha256 = %q, want none", i, ex.GetRunning().GetSha256())
		}
	}
}

func TestInspectChrootedProcess(t *testing.T) {
	// The kernel writes the exe link of a chrooted process relative to
	// the reader's root, so it is resolved from the inspector's root, not
	// the process's.
	requireRoot(t, "chroot")
	root := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=chroot-wait", "EXE_TEST_ROOT="+root)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("chroot helper printed %q, %v, want ready", line, err)
	}

	// The state is under test, not the digests of the large test binary,
	// so a 1-byte limit skips hashing it.
	pid := cmd.Process.Pid
	ex := inspect(t, NewInspector(Options{MaxFileSize: 1}), pid).Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if string(ex.GetPath()) != exe {
		t.Errorf("Path = %q, want the test binary %q", ex.GetPath(), exe)
	}
}

func TestInspectOtherMountNamespace(t *testing.T) {
	// A process whose executable sits on a mount that only its own mount
	// namespace has, as in a container: resolved in /proc/<pid>/root.
	requireRoot(t, "create a mount namespace")
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) not found; install util-linux")
	}
	src, content := sleepBinary(t)
	dir := t.TempDir()
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=mntns-exec", "EXE_TEST_DIR="+dir, "EXE_TEST_SRC="+src)
	pid := startCmd(t, cmd)
	want := filepath.Join(dir, "bin", "sleep")
	waitLink(t, pid, func(l string) bool { return l == want })
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Fatalf("stat %s in the test's namespace: %v, want not found", want, err)
	}

	in := NewInspector(Options{})
	ex := inspect(t, in, pid).Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	if ex.GetRunning().GetSha256() != sha256Hex(content) {
		t.Errorf("Running.Sha256 = %s, want %s", ex.GetRunning().GetSha256(), sha256Hex(content))
	}

	// Delete the file inside the process's namespace.
	if err := os.Remove(filepath.Join("/proc", strconv.Itoa(pid), "root", want)); err != nil {
		t.Fatal(err)
	}
	ex = inspect(t, in, pid).Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED)
}

func TestInspectMemfdPrefixedPathOnDisk(t *testing.T) {
	// An inspector chrooted into a directory that holds "memfd:x/sleep"
	// reads the exe link as "/memfd:x/sleep", the text of a real memfd.
	// The device decides: the file is on disk, then unlinked.
	requireRoot(t, "mount proc and chroot")
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) not found; install util-linux")
	}
	src, _ := sleepBinary(t)
	root := t.TempDir()
	if err := copyFile(src, filepath.Join(root, "memfd:x", "sleep")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}

	out := runHelperCmd(t, unshare, []string{"--mount", "--propagation", "private", os.Args[0]},
		helperEnv+"=chroot-inspect", "EXE_TEST_ROOT="+root)
	rep, records := decodeRecords(t, out)
	if rep.Link != "/memfd:x/sleep" {
		t.Fatalf("exe link seen by the chrooted inspector = %q, want %q", rep.Link, "/memfd:x/sleep")
	}
	if len(records) != 2 {
		t.Fatalf("helper printed %d records, want 2", len(records))
	}
	checkState(t, records[0], binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	checkState(t, records[1], binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED)
	if got := string(records[1].GetPath()); got != "/memfd:x/sleep (deleted)" {
		t.Errorf("Path after deletion = %q, want %q", got, "/memfd:x/sleep (deleted)")
	}
}

func TestInspectMemfdFallbackWithoutProbe(t *testing.T) {
	// Without a probed memfd device, the link text and a link count of 0
	// decide; an ordinary file under "memfd:x" still has links.
	src, content := sleepBinary(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=memfd", "EXE_TEST_SRC="+src)
	memfdPID := startCmd(t, cmd)
	waitLink(t, memfdPID, func(l string) bool { return strings.HasPrefix(l, "/memfd:payload") })
	diskPID, _ := startSleep(t, content, filepath.Join(t.TempDir(), "memfd:x"), "sleep")

	in := NewInspector(Options{})
	in.memfdDevs = nil
	checkState(t, inspect(t, in, memfdPID).Executable, binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD)
	checkState(t, inspect(t, in, diskPID).Executable, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
}
