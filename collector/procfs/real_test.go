package procfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv selects a helper mode when the test binary runs as a child
// process of a test.
const helperEnv = "PROCFS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// runHelper runs one helper mode and returns the exit status.
func runHelper(mode string) int {
	switch mode {
	case "wait-stdin":
		// Run until the parent closes stdin, so the child never outlives
		// the test.
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	case "mount-hidepid":
		// Runs inside a private mount namespace made by unshare(1): mount a
		// proc with hidepid=2, then become the visibility helper under
		// setpriv(1) with the arguments in the environment.
		dir := os.Getenv("PROCFS_TEST_PROC")
		if err := unix.Mount("proc", dir, "proc", 0, "hidepid=2"); err != nil {
			fmt.Fprintf(os.Stderr, "mount proc on %s: %v\n", dir, err)
			return 1
		}
		var argv []string
		if err := json.Unmarshal([]byte(os.Getenv("PROCFS_TEST_ARGV")), &argv); err != nil {
			fmt.Fprintf(os.Stderr, "decoding PROCFS_TEST_ARGV: %v\n", err)
			return 1
		}
		err := syscall.Exec(argv[0], argv, setEnv(os.Environ(), helperEnv, "visibility"))
		fmt.Fprintf(os.Stderr, "exec %q: %v\n", argv, err)
		return 1
	case "visibility":
		fs := NewFS(os.Getenv("PROCFS_TEST_PROC"))
		v, err := fs.Visibility()
		if err != nil {
			fmt.Fprintf(os.Stderr, "Visibility: %v\n", err)
			return 1
		}
		pids, _ := fs.PIDs()
		out := visibilityReport{Visibility: v, PIDs: len(pids), UID: os.Geteuid()}
		if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// visibilityReport is what the visibility helper prints.
type visibilityReport struct {
	Visibility Visibility
	PIDs       int
	UID        int
}

var real = NewFS("/proc")

// startHelper starts the test binary in wait-stdin mode with extra
// arguments and returns it; the test's cleanup ends it.
func startHelper(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"=wait-stdin")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	return cmd
}

// startCopy copies src to dir/name and starts it with args; the test's
// cleanup kills it.
func startCopy(t *testing.T, src, dir, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("reading %s to copy it: %v", src, err)
	}
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, path
}

// exitedPID starts a process, waits for it to be reaped and returns its pid,
// which then names no process (barring reuse of the pid in between).
func exitedPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=wait-stdin")
	if err := cmd.Run(); err != nil {
		t.Fatalf("running helper: %v", err)
	}
	return cmd.Process.Pid
}

func TestStatReal(t *testing.T) {
	// A comm with ") (", a space and a newline, from the executable's name
	// (the kernel keeps the first 15 bytes).
	name := "s) (p\nq"
	cmd, _ := startCopy(t, "/bin/sleep", t.TempDir(), name, "1000")
	pid := cmd.Process.Pid

	got, err := real.Stat(pid)
	if err != nil {
		t.Fatalf("Stat(%d) error = %v", pid, err)
	}
	if got.PID != pid || got.PPID != os.Getpid() || got.Comm != name {
		t.Errorf("Stat(%d) = %+v, want PID %d, PPID %d, Comm %q", pid, got, pid, os.Getpid(), name)
	}
	if !strings.ContainsRune("RSD", rune(got.State)) {
		t.Errorf("Stat(%d).State = %q, want R, S or D", pid, got.State)
	}
	if got.KernelThread() {
		t.Errorf("Stat(%d).KernelThread() = true, want false", pid)
	}

	self, err := real.Stat(os.Getpid())
	if err != nil {
		t.Fatalf("Stat(self) error = %v", err)
	}
	if got.StartTicks < self.StartTicks {
		t.Errorf("Stat(child).StartTicks = %d, want >= the parent's %d", got.StartTicks, self.StartTicks)
	}
	boot, err := real.BootTime()
	if err != nil {
		t.Fatalf("BootTime() error = %v", err)
	}
	start := StartTime(boot, got.StartTicks)
	// btime has one-second resolution and the tick count 10 ms.
	if d := time.Since(start); d < -2*time.Second || d > time.Minute {
		t.Errorf("StartTime(child) = %v, %v before now, want within a minute", start, d)
	}
}

func TestKernelThreadsReal(t *testing.T) {
	pids, err := real.PIDs()
	if err != nil {
		t.Fatalf("PIDs() error = %v", err)
	}
	if !slices.Contains(pids, os.Getpid()) {
		t.Errorf("PIDs() does not contain the test's own pid %d", os.Getpid())
	}
	kthreads, users := 0, 0
	for _, pid := range pids {
		st, err := real.Stat(pid)
		if errors.Is(err, ErrExited) {
			continue
		}
		if err != nil {
			t.Errorf("Stat(%d) error = %v", pid, err)
			continue
		}
		_, err = real.ExeLink(pid)
		switch {
		case errors.Is(err, ErrExited):
		case st.KernelThread():
			kthreads++
			if !errors.Is(err, ErrNoExecutable) {
				t.Errorf("ExeLink(%d) of kernel thread %q error = %v, want ErrNoExecutable", pid, st.Comm, err)
			}
		case errors.Is(err, fs.ErrPermission):
			// The kernel refuses ptrace access to some processes even
			// to root, for example a non-dumpable process whose
			// capabilities exceed the caller's.
			t.Logf("ExeLink(%d) of %q: %v", pid, st.Comm, err)
		default:
			users++
			if err != nil {
				t.Errorf("ExeLink(%d) of %q error = %v, want nil", pid, st.Comm, err)
			}
		}
	}
	if users == 0 {
		t.Errorf("found no user processes, want at least the test itself")
	}
	if kthreads == 0 {
		t.Logf("no kernel threads visible in this pid namespace; only user processes checked")
	}
}

func TestUIDsReal(t *testing.T) {
	got, err := real.UIDs(os.Getpid())
	if err != nil {
		t.Fatalf("UIDs(self) error = %v", err)
	}
	want := [4]uint32{uint32(os.Getuid()), uint32(os.Geteuid()), uint32(os.Geteuid()), uint32(os.Geteuid())}
	if got != want {
		t.Errorf("UIDs(self) = %v, want %v", got, want)
	}
}

func TestCmdlineReal(t *testing.T) {
	args := []string{"plain", "with space", "", "new\nline", "\xff\xfe invalid"}
	cmd := startHelper(t, args...)
	pid := cmd.Process.Pid

	argv, truncated, err := real.Cmdline(pid, 100, 1<<16)
	if err != nil {
		t.Fatalf("Cmdline(%d) error = %v", pid, err)
	}
	want := append([]string{os.Args[0]}, args...)
	var got []string
	for _, a := range argv {
		got = append(got, string(a))
	}
	if !slices.Equal(got, want) || truncated {
		t.Errorf("Cmdline(%d) = %q, %v, want %q, false", pid, got, truncated, want)
	}

	argv, truncated, err = real.Cmdline(pid, 2, 1<<16)
	if err != nil {
		t.Fatalf("Cmdline(%d, 2 args) error = %v", pid, err)
	}
	if len(argv) != 2 || !truncated {
		t.Errorf("Cmdline(%d, 2 args) = %d arguments, truncated %v, want 2, true", pid, len(argv), truncated)
	}

	argv, truncated, err = real.Cmdline(pid, 100, 3)
	if err != nil {
		t.Fatalf("Cmdline(%d, 3 bytes) error = %v", pid, err)
	}
	if len(argv) != 1 || len(argv[0]) != 3 || !truncated {
		t.Errorf("Cmdline(%d, 3 bytes) = %q, %v, want one 3-byte argument, true", pid, argv, truncated)
	}
}

func TestExeLinkReal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sp ace\nnew\xffline (deleted)")
	cmd, path := startCopy(t, "/bin/sleep", dir, "prog", "1000")
	pid := cmd.Process.Pid

	got, err := real.ExeLink(pid)
	if err != nil {
		t.Fatalf("ExeLink(%d) error = %v", pid, err)
	}
	if !bytes.Equal(got, []byte(path)) {
		t.Errorf("ExeLink(%d) = %q, want %q", pid, got, path)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	got, err = real.ExeLink(pid)
	if err != nil {
		t.Fatalf("ExeLink(%d) after unlink error = %v", pid, err)
	}
	if want := path + " (deleted)"; string(got) != want {
		t.Errorf("ExeLink(%d) after unlink = %q, want %q", pid, got, want)
	}

	f, err := real.OpenExe(pid)
	if err != nil {
		t.Fatalf("OpenExe(%d) after unlink error = %v", pid, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("OpenExe(%d) after unlink: nlink %d, mode %o, want 0 and a regular file", pid, st.Nlink, st.Mode)
	}
}

func TestExitedReal(t *testing.T) {
	pid := exitedPID(t)
	checks := map[string]func() error{
		"Stat":    func() error { _, err := real.Stat(pid); return err },
		"UIDs":    func() error { _, err := real.UIDs(pid); return err },
		"Cmdline": func() error { _, _, err := real.Cmdline(pid, 10, 100); return err },
		"ExeLink": func() error { _, err := real.ExeLink(pid); return err },
		"OpenExe": func() error { _, err := real.OpenExe(pid); return err },
	}
	for name, check := range checks {
		if err := check(); !errors.Is(err, ErrExited) {
			t.Errorf("%s(%d) of a reaped process error = %v, want ErrExited", name, pid, err)
		}
	}
}

func TestZombieReal(t *testing.T) {
	// A child that exited but was not waited for is a zombie: its stat is
	// readable, its exe is gone.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=wait-stdin")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Wait() })

	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := real.Stat(pid)
		if err != nil {
			t.Fatalf("Stat(%d) error = %v", pid, err)
		}
		if st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stat(%d).State = %q after 10s, want Z", pid, st.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := real.ExeLink(pid); !errors.Is(err, ErrExited) {
		t.Errorf("ExeLink(%d) of a zombie error = %v, want ErrExited", pid, err)
	}
	argv, _, err := real.Cmdline(pid, 10, 100)
	if err != nil || len(argv) != 0 {
		t.Errorf("Cmdline(%d) of a zombie = %q, %v, want no arguments and no error", pid, argv, err)
	}
}

func TestBootReal(t *testing.T) {
	id, err := real.BootID()
	if err != nil {
		t.Fatalf("BootID() error = %v", err)
	}
	again, err := real.BootID()
	if err != nil || again != id {
		t.Errorf("BootID() again = %q, %v, want %q", again, err, id)
	}
	bt, err := real.BootTime()
	if err != nil {
		t.Fatalf("BootTime() error = %v", err)
	}
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		t.Fatal(err)
	}
	fromUptime := time.Now().Add(-time.Duration(info.Uptime) * time.Second)
	if d := bt.Sub(fromUptime); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("BootTime() = %v, want within 5s of now minus sysinfo uptime, %v", bt, fromUptime)
	}
}

func TestClockTicksMatchesAuxv(t *testing.T) {
	auxv, err := unix.Auxv()
	if err != nil {
		t.Skipf("reading the auxiliary vector: %v", err)
	}
	const atClkTck = 17 // AT_CLKTCK in <elf.h>
	for _, kv := range auxv {
		if kv[0] == atClkTck {
			if got, want := ClockTicks(), uint64(kv[1]); got != want {
				t.Errorf("ClockTicks() = %d, want AT_CLKTCK %d", got, want)
			}
			return
		}
	}
	t.Skip("AT_CLKTCK is not in the auxiliary vector")
}

func TestPIDsMissingRoot(t *testing.T) {
	_, err := NewFS(filepath.Join(t.TempDir(), "missing")).PIDs()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PIDs() on a missing root error = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrExited) {
		t.Errorf("PIDs() on a missing root error = %v matches ErrExited", err)
	}
}
