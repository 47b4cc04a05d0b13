package exe

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/binwatch/binwatch/collector/procfs"
	"github.com/binwatch/binwatch/internal/fuzzyhash"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func TestInspectOnDisk(t *testing.T) {
	_, content := sleepBinary(t)
	pid, path := startSleep(t, content, t.TempDir(), "prog")
	in := NewInspector(Options{})

	res := inspect(t, in, pid)
	ex := res.Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	checkFull(t, ex)
	if got, want := ex.GetRunning().GetSha256(), sha256Hex(content); got != want {
		t.Errorf("Running.Sha256 = %s, want %s", got, want)
	}
	if got, want := ex.GetRunning().GetSsdeep(), ssdeepOf(t, content); got != want {
		t.Errorf("Running.Ssdeep = %s, want %s", got, want)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	r := ex.GetRunning()
	if r.GetInode() != st.Ino || r.GetDevice() != uint64(st.Dev) || r.GetSize() != uint64(len(content)) || r.GetNlink() != 1 {
		t.Errorf("Running identity = inode %d, device %d, size %d, nlink %d; want %d, %d, %d, 1",
			r.GetInode(), r.GetDevice(), r.GetSize(), r.GetNlink(), st.Ino, st.Dev, len(content))
	}
	if r.GetMtimeNs() != st.Mtim.Nano() || r.GetCtimeNs() != st.Ctim.Nano() {
		t.Errorf("Running times = mtime %d, ctime %d; want %d, %d", r.GetMtimeNs(), r.GetCtimeNs(), st.Mtim.Nano(), st.Ctim.Nano())
	}
	if ex.GetOnDisk() != nil || ex.OnDiskSimilarity != nil {
		t.Errorf("OnDisk = %v, similarity %v, want none for an on-disk image", ex.GetOnDisk(), ex.OnDiskSimilarity)
	}
	if res.Hashed != 1 || res.CacheMisses != 1 || res.CacheHits != 0 || res.BytesHashed != int64(len(content)) {
		t.Errorf("Inspect counts = %d hashed, %d misses, %d hits, %d bytes; want 1, 1, 0, %d",
			res.Hashed, res.CacheMisses, res.CacheHits, res.BytesHashed, len(content))
	}
}

// modified returns content with a run of bytes in the middle changed, so
// the result is similar but not equal.
func modified(content []byte) []byte {
	out := bytes.Clone(content)
	mid := len(out) / 2
	for i := mid; i < mid+64 && i < len(out); i++ {
		out[i] ^= 0x5a
	}
	return out
}

func TestInspectReplacedByRename(t *testing.T) {
	_, content := sleepBinary(t)
	dir := t.TempDir()
	pid, path := startSleep(t, content, dir, "prog")
	replacement := modified(content)
	tmp := filepath.Join(dir, "prog.new")
	if err := os.WriteFile(tmp, replacement, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}

	res := inspect(t, NewInspector(Options{}), pid)
	ex := res.Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED)
	checkFull(t, ex)
	if got, want := ex.GetRunning().GetSha256(), sha256Hex(content); got != want {
		t.Errorf("Running.Sha256 = %s, want the old file's %s", got, want)
	}
	if got, want := ex.GetOnDisk().GetSha256(), sha256Hex(replacement); got != want {
		t.Errorf("OnDisk.Sha256 = %s, want the new file's %s", got, want)
	}
	oldDigest, newDigest := ssdeepOf(t, content), ssdeepOf(t, replacement)
	if got := ex.GetOnDisk().GetSsdeep(); got != newDigest {
		t.Errorf("OnDisk.Ssdeep = %s, want %s", got, newDigest)
	}
	if ex.OnDiskSimilarity == nil {
		t.Fatalf("OnDiskSimilarity = nil, want a score")
	}
	want, err := fuzzyhash.Compare(oldDigest, newDigest)
	if err != nil {
		t.Fatal(err)
	}
	if got := ex.GetOnDiskSimilarity(); int(got) != want || got <= 0 {
		t.Errorf("OnDiskSimilarity = %d, want %d (and above 0 for a 64-byte change)", got, want)
	}
	if res.Hashed != 2 {
		t.Errorf("Inspect hashed %d files, want 2 (running and on-disk)", res.Hashed)
	}
}

func TestInspectUnlinked(t *testing.T) {
	_, content := sleepBinary(t)
	pid, path := startSleep(t, content, t.TempDir(), "prog")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	res := inspect(t, NewInspector(Options{}), pid)
	ex := res.Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED)
	checkFull(t, ex)
	if got, want := string(ex.GetPath()), path+" (deleted)"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	if got := ex.GetRunning().GetNlink(); got != 0 {
		t.Errorf("Running.Nlink = %d, want 0", got)
	}
	if got, want := ex.GetRunning().GetSha256(), sha256Hex(content); got != want {
		t.Errorf("Running.Sha256 = %s, want %s", got, want)
	}
}

func TestInspectHardLinkLeft(t *testing.T) {
	// The path was unlinked, but another name keeps the image: the link
	// count is 1, so the state is not unlinked.
	_, content := sleepBinary(t)
	dir := t.TempDir()
	pid, path := startSleep(t, content, dir, "prog")
	if err := os.Link(path, filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ex := inspect(t, NewInspector(Options{}), pid).Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN)
	if want := "still has 1 links"; !strings.Contains(ex.GetStateDetail(), want) {
		t.Errorf("StateDetail = %q, want it to contain %q", ex.GetStateDetail(), want)
	}
}

func TestInspectDeletedSuffix(t *testing.T) {
	_, content := sleepBinary(t)
	t.Run("real name with suffix", func(t *testing.T) {
		// nlink is 1, so " (deleted)" is part of the name.
		pid, _ := startSleep(t, content, t.TempDir(), "prog (deleted)")
		ex := inspect(t, NewInspector(Options{}), pid).Executable
		checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	})
	t.Run("real name with suffix unlinked", func(t *testing.T) {
		pid, path := startSleep(t, content, t.TempDir(), "prog (deleted)")
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		ex := inspect(t, NewInspector(Options{}), pid).Executable
		checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED)
		if got, want := string(ex.GetPath()), path+" (deleted)"; got != want {
			t.Errorf("Path = %q, want %q", got, want)
		}
	})
	t.Run("decoy named like the link", func(t *testing.T) {
		// A file named "prog (deleted)" must not pass for the unlinked
		// "prog": with no links left, only "prog" is looked up.
		dir := t.TempDir()
		pid, path := startSleep(t, content, dir, "prog")
		if err := os.WriteFile(path+" (deleted)", content, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		ex := inspect(t, NewInspector(Options{}), pid).Executable
		checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED)
	})
}

func TestInspectRawPath(t *testing.T) {
	_, content := sleepBinary(t)
	dir := filepath.Join(t.TempDir(), "sp ace\nnew\xffline\x01")
	pid, path := startSleep(t, content, dir, "pr\xfe\xffog")
	ex := inspect(t, NewInspector(Options{}), pid).Executable
	if !bytes.Equal(ex.GetPath(), []byte(path)) {
		t.Errorf("Path = %q, want %q", ex.GetPath(), path)
	}
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)

	// With a nil path Inspect reads the link itself, byte for byte.
	res, err := NewInspector(Options{}).Inspect(pid, nil)
	if err != nil {
		t.Fatalf("Inspect(%d, nil) error = %v", pid, err)
	}
	if !bytes.Equal(res.Executable.GetPath(), []byte(path)) {
		t.Errorf("Inspect(%d, nil).Path = %q, want %q", pid, res.Executable.GetPath(), path)
	}
}

func TestInspectMemfd(t *testing.T) {
	src, content := sleepBinary(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=memfd", "EXE_TEST_SRC="+src)
	pid := startCmd(t, cmd)
	waitLink(t, pid, func(l string) bool { return strings.HasPrefix(l, "/memfd:payload") })

	ex := inspect(t, NewInspector(Options{}), pid).Executable
	checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD)
	checkFull(t, ex)
	if got, want := ex.GetRunning().GetSha256(), sha256Hex(content); got != want {
		t.Errorf("Running.Sha256 = %s, want %s", got, want)
	}
	if ex.GetOnDisk() != nil {
		t.Errorf("OnDisk = %v, want none for a memfd", ex.GetOnDisk())
	}
}

func TestInspectMemfdNamedDirectory(t *testing.T) {
	// An ordinary file under a directory called "memfd:x" is on disk, and
	// once deleted it is unlinked, not a memfd.
	_, content := sleepBinary(t)
	pid, path := startSleep(t, content, filepath.Join(t.TempDir(), "memfd:x"), "sleep")
	in := NewInspector(Options{})
	checkState(t, inspect(t, in, pid).Executable, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	checkState(t, inspect(t, in, pid).Executable, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED)
}

func TestInspectWhatReplacedDeletedBinary(t *testing.T) {
	_, content := sleepBinary(t)
	other := modified(content)
	tests := []struct {
		name       string
		root       bool
		make       func(t *testing.T, path string)
		wantDetail string
		wantHashes bool
	}{
		{name: "fifo", wantDetail: "fifo at the path", make: func(t *testing.T, path string) {
			if err := unix.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink to fifo", wantDetail: "fifo at the path", make: func(t *testing.T, path string) {
			if err := unix.Mkfifo(path+".fifo", 0o644); err != nil {
				t.Fatal(err)
			}
			symlink(t, filepath.Base(path)+".fifo", path)
		}},
		{name: "symlink loop", wantDetail: "symlink at the path that loops", make: func(t *testing.T, path string) {
			symlink(t, filepath.Base(path), path)
		}},
		{name: "symlink to magic link", wantDetail: "symlink at the path that loops, nests too deep or leads to a /proc magic link", make: func(t *testing.T, path string) {
			symlink(t, "/proc/self/fd/0", path)
		}},
		{name: "dangling symlink", wantDetail: "dangling symlink at the path", make: func(t *testing.T, path string) {
			symlink(t, "missing", path)
		}},
		{name: "symlink to regular file", wantHashes: true, make: func(t *testing.T, path string) {
			if err := os.WriteFile(path+".real", other, 0o755); err != nil {
				t.Fatal(err)
			}
			symlink(t, path+".real", path)
		}},
		{name: "directory", wantDetail: "directory at the path", make: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "socket", wantDetail: "socket at the path", make: func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Skipf("listening on a unix socket: %v", err)
			}
			t.Cleanup(func() { l.Close() })
		}},
		{name: "sparse file over the limit", wantDetail: "file at the path not fully hashed: file is 1073741824 bytes, larger than the limit of 536870912 bytes", make: func(t *testing.T, path string) {
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(1 << 30); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "character device", root: true, wantDetail: "character device at the path", make: func(t *testing.T, path string) {
			// Same numbers as /dev/null.
			if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
				t.Skipf("mknod: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				requireRoot(t, "create a device node")
			}
			pid, path := startSleep(t, content, t.TempDir(), "prog")
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			tt.make(t, path)

			ex := inspect(t, NewInspector(Options{}), pid).Executable
			checkState(t, ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED)
			checkFull(t, ex)
			if !strings.Contains(ex.GetStateDetail(), tt.wantDetail) {
				t.Errorf("StateDetail = %q, want it to contain %q", ex.GetStateDetail(), tt.wantDetail)
			}
			if ex.GetOnDisk().GetInode() == 0 {
				t.Errorf("OnDisk = %v, want the identity of what is at the path", ex.GetOnDisk())
			}
			gotHashes := ex.GetOnDisk().GetSha256() != ""
			if gotHashes != tt.wantHashes {
				t.Errorf("OnDisk.Sha256 = %q, want hashes %v", ex.GetOnDisk().GetSha256(), tt.wantHashes)
			}
			if tt.wantHashes && ex.GetOnDisk().GetSha256() != sha256Hex(other) {
				t.Errorf("OnDisk.Sha256 = %s, want %s", ex.GetOnDisk().GetSha256(), sha256Hex(other))
			}
		})
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func TestInspectExited(t *testing.T) {
	_, content := sleepBinary(t)
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, content, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	in := NewInspector(Options{})
	for _, link := range [][]byte{nil, []byte(path)} {
		if _, err := in.Inspect(pid, link); !isExited(err) {
			t.Errorf("Inspect(%d, %q) of a reaped process error = %v, want ErrExited", pid, link, err)
		}
	}
}

func TestInspectKernelThread(t *testing.T) {
	fs := procfs.NewFS("/proc")
	st, err := fs.Stat(2)
	if err != nil || !st.KernelThread() {
		t.Skip("pid 2 is not a kernel thread in this pid namespace")
	}
	_, err = NewInspector(Options{}).Inspect(2, nil)
	if !errors.Is(err, procfs.ErrNoExecutable) {
		t.Errorf("Inspect(2, nil) of kernel thread %q error = %v, want procfs.ErrNoExecutable", st.Comm, err)
	}
}

func TestCandidatePaths(t *testing.T) {
	tests := []struct {
		link  string
		nlink uint64
		want  []string
	}{
		{"/bin/a", 1, []string{"/bin/a"}},
		{"/bin/a", 0, []string{"/bin/a"}},
		{"/bin/a (deleted)", 0, []string{"/bin/a"}},
		{"/bin/a (deleted)", 2, []string{"/bin/a (deleted)", "/bin/a"}},
		{"/bin/a (deleted) (deleted)", 0, []string{"/bin/a (deleted)"}},
	}
	for _, tt := range tests {
		got := candidatePaths([]byte(tt.link), tt.nlink)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("candidatePaths(%q, %d) = %q, want %q", tt.link, tt.nlink, got, tt.want)
		}
	}
}
