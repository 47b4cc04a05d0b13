package exe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/binwatch/binwatch/collector/procfs"
	"github.com/binwatch/binwatch/internal/fuzzyhash"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// helperEnv selects a helper mode when the test binary runs as a child
// process of a test. The other EXE_TEST_* variables are its arguments.
const helperEnv = "EXE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper runs one helper mode.
func runHelper(mode string) error {
	switch mode {
	case "memfd":
		// Copy an executable into a memfd and execute it from there:
		// fileless execution.
		data, err := os.ReadFile(os.Getenv("EXE_TEST_SRC"))
		if err != nil {
			return err
		}
		fd, err := unix.MemfdCreate("payload", unix.MFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("memfd_create: %w", err)
		}
		if _, err := unix.Write(fd, data); err != nil {
			return err
		}
		return syscall.Exec("/proc/self/fd/"+strconv.Itoa(fd), []string{"sleep", "1000"}, os.Environ())
	case "chroot-wait":
		// Chroot away from the test binary, then wait for stdin to close.
		if err := unix.Chroot(os.Getenv("EXE_TEST_ROOT")); err != nil {
			return fmt.Errorf("chroot: %w", err)
		}
		if err := os.Chdir("/"); err != nil {
			return err
		}
		fmt.Println("ready")
		_, err := io.Copy(io.Discard, os.Stdin)
		return err
	case "mntns-exec":
		// Inside a private mount namespace, put a copy of the executable
		// on a tmpfs that only this namespace has, and execute it.
		dir := os.Getenv("EXE_TEST_DIR")
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
		path := filepath.Join(dir, "bin", "sleep")
		if err := copyFile(os.Getenv("EXE_TEST_SRC"), path); err != nil {
			return err
		}
		return syscall.Exec(path, []string{"sleep", "1000"}, os.Environ())
	case "chroot-inspect":
		return chrootInspect()
	case "inspect":
		// Inspect a process by pid, once reading the link and once with
		// the link given, and print both records.
		pid, err := strconv.Atoi(os.Getenv("EXE_TEST_PID"))
		if err != nil {
			return err
		}
		in := NewInspector(Options{})
		var out helperReport
		for _, path := range [][]byte{nil, []byte(os.Getenv("EXE_TEST_LINK"))} {
			res, err := in.Inspect(pid, path)
			if err != nil {
				return err
			}
			out.Records = append(out.Records, mustJSON(res.Executable))
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// chrootInspect runs inside a private mount namespace. It starts a copy of
// sleep at <root>/memfd:x/sleep, chroots the inspector into <root> so that
// the kernel writes the exe link as "/memfd:x/sleep", and inspects it
// before and after deleting the file.
func chrootInspect() error {
	root := os.Getenv("EXE_TEST_ROOT")
	if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", 0, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	cmd := exec.Command(filepath.Join(root, "memfd:x", "sleep"), "1000")
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}

	pid := cmd.Process.Pid
	in := NewInspector(Options{})
	var out helperReport
	link, err := procfs.NewFS("/proc").ExeLink(pid)
	if err != nil {
		return err
	}
	out.Link = string(link)
	for _, step := range []func() error{
		func() error { return nil },
		func() error { return os.Remove("/memfd:x/sleep") },
	} {
		if err := step(); err != nil {
			return err
		}
		res, err := in.Inspect(pid, nil)
		if err != nil {
			return err
		}
		out.Records = append(out.Records, mustJSON(res.Executable))
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// helperReport is what the inspecting helpers print.
type helperReport struct {
	Link    string
	Records []json.RawMessage
}

func mustJSON(ex *binwatchv1.Executable) json.RawMessage {
	data, err := protojson.Marshal(ex)
	if err != nil {
		panic(err)
	}
	return data
}

// decodeRecords decodes the records of a helper's report.
func decodeRecords(t *testing.T, out []byte) (helperReport, []*binwatchv1.Executable) {
	t.Helper()
	var rep helperReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("decoding helper output %q: %v", out, err)
	}
	var exs []*binwatchv1.Executable
	for _, raw := range rep.Records {
		ex := new(binwatchv1.Executable)
		if err := protojson.Unmarshal(raw, ex); err != nil {
			t.Fatalf("decoding record %s: %v", raw, err)
		}
		exs = append(exs, ex)
	}
	return rep, exs
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// sleepBinary returns the path and content of the sleep(1) executable that
// tests copy and run.
func sleepBinary(t *testing.T) (string, []byte) {
	t.Helper()
	path, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("sleep(1) not found")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("reading %s: %v", path, err)
	}
	return path, data
}

// startSleep writes content to dir/name and runs it as "sleep 1000"; the
// test's cleanup kills it.
func startSleep(t *testing.T, content []byte, dir, name string) (int, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o755); err != nil {
		t.Fatal(err)
	}
	return startCmd(t, exec.Command(path, "1000")), path
}

// startCmd starts cmd and kills it in the test's cleanup.
func startCmd(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// waitLink polls the exe link of pid until ok accepts it.
func waitLink(t *testing.T, pid int, ok func(string) bool) string {
	t.Helper()
	fs := procfs.NewFS("/proc")
	deadline := time.Now().Add(10 * time.Second)
	for {
		link, err := fs.ExeLink(pid)
		if err == nil && ok(string(link)) {
			return string(link)
		}
		if time.Now().After(deadline) {
			t.Fatalf("exe link of pid %d = %q, %v after 10s, want an accepted link", pid, link, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inspect runs in.Inspect with the link of pid and fails the test when it
// does not return within 10 seconds or returns an error.
func inspect(t *testing.T, in *Inspector, pid int) Result {
	t.Helper()
	link, err := procfs.NewFS("/proc").ExeLink(pid)
	if err != nil {
		t.Fatalf("ExeLink(%d) error = %v", pid, err)
	}
	res, err := inspectWithin(t, in, pid, link)
	if err != nil {
		t.Fatalf("Inspect(%d, %q) error = %v", pid, link, err)
	}
	if !bytes.Equal(res.Executable.GetPath(), link) {
		t.Errorf("Inspect(%d).Path = %q, want %q", pid, res.Executable.GetPath(), link)
	}
	return res
}

// inspectWithin runs in.Inspect and fails the test when it does not return
// within 10 seconds, which is how a blocking open of a fifo would show.
func inspectWithin(t *testing.T, in *Inspector, pid int, link []byte) (Result, error) {
	t.Helper()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := in.Inspect(pid, link)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Inspect(%d, %q) did not return within 10s", pid, link)
		return Result{}, nil
	}
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func ssdeepOf(t *testing.T, data []byte) string {
	t.Helper()
	h := fuzzyhash.New()
	h.Write(data)
	d, err := h.Digest()
	if err != nil {
		t.Fatalf("fuzzyhash digest: %v", err)
	}
	return d
}

// checkFull fails unless ex has full coverage.
func checkFull(t *testing.T, ex *binwatchv1.Executable) {
	t.Helper()
	if ex.GetCoverage() != binwatchv1.Coverage_COVERAGE_FULL {
		t.Errorf("Coverage = %v (%v: %q), want FULL", ex.GetCoverage(), ex.GetCoverageReason(), ex.GetCoverageDetail())
	}
}

// checkState fails unless ex has state want.
func checkState(t *testing.T, ex *binwatchv1.Executable, want binwatchv1.ExecutableState) {
	t.Helper()
	if ex.GetState() != want {
		t.Errorf("State = %v (%q), want %v", ex.GetState(), ex.GetStateDetail(), want)
	}
}

// worldReadableCopy copies the test binary into a new directory that any
// user may enter, for helpers that run under another uid.
func worldReadableCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "exe-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "exe.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// requireRoot skips the test unless it runs as root.
func requireRoot(t *testing.T, action string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s", action)
	}
}

// runHelperCmd runs cmd with a 30-second limit and returns its stdout.
func runHelperCmd(t *testing.T, name string, args []string, env ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s %q: %v\nstderr: %s", name, args, err, stderr.Bytes())
	}
	return out
}

// isExited reports whether err is ErrExited, for table checks.
func isExited(err error) bool { return errors.Is(err, ErrExited) }

// newCmd returns "path 1000", another process of the same sleep binary.
func newCmd(path string) *exec.Cmd { return exec.Command(path, "1000") }
