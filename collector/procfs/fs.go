// Package procfs reads the process information that binwatch's collector
// needs from a procfs mount whose root is a parameter, so tests can point it
// at a fake tree. Every read is bounded, and a process that vanishes while it
// is being read yields an error that matches ErrExited.
package procfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// ErrExited is wrapped by the errors of reads that failed because the
// process no longer exists (ENOENT or ESRCH from its /proc entries), or is a
// zombie that has no executable left. Match it with errors.Is.
var ErrExited = errors.New("process exited")

// ErrNoExecutable is wrapped by ExeLink and OpenExe errors for a kernel
// thread, which runs no executable file.
var ErrNoExecutable = errors.New("process has no executable")

// maxSmallFile is the limit for per-process files of known small size
// (stat, status, boot_id).
const maxSmallFile = 64 << 10

// maxTableFile is the limit for files whose size grows with the machine
// (<root>/stat with its per-CPU and interrupt lines, mountinfo).
const maxTableFile = 16 << 20

// FS is a procfs mount. The zero value is not usable; call NewFS.
type FS struct {
	root string
}

// NewFS returns an FS rooted at root, which is usually "/proc".
func NewFS(root string) FS {
	return FS{root: filepath.Clean(root)}
}

// Root returns the cleaned root path.
func (fs FS) Root() string { return fs.root }

// path returns <root>/<pid>/<name>.
func (fs FS) path(pid int, name string) string {
	return fs.root + "/" + strconv.Itoa(pid) + "/" + name
}

// PIDs returns the numeric entries of the root in ascending order. Entries
// whose names are not decimal process ids (self, sys, stat...) are skipped.
func (fs FS) PIDs() ([]int, error) {
	d, err := os.Open(fs.root)
	if err != nil {
		return nil, err
	}
	defer d.Close()

	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", fs.root, err)
	}
	pids := make([]int, 0, len(names))
	for _, name := range names {
		if pid, ok := parsePID(name); ok {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// parsePID accepts only plain decimal digits without a sign or leading
// zero, which is how the kernel names process directories.
func parsePID(s string) (int, bool) {
	if s == "" || len(s) > 10 || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid > 1<<31-1 {
		return 0, false
	}
	return pid, true
}

// isExited reports whether err is the kernel's error for a process that is
// gone (ENOENT or ESRCH).
func isExited(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// processError wraps err with ErrExited when isExited(err) holds.
func processError(err error) error {
	if err != nil && isExited(err) && !errors.Is(err, ErrExited) {
		return fmt.Errorf("%w: %w", ErrExited, err)
	}
	return err
}

// readBounded reads at most max bytes of path and fails when the file is
// longer, so that a corrupt or hostile file never costs unbounded memory.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("reading %s: file larger than %d bytes", path, max)
	}
	return data, nil
}
