package procfs

import (
	"fmt"
	"os"
	"syscall"
)

// ExeLink returns the target of /proc/<pid>/exe exactly as the kernel
// reports it: raw bytes that may contain spaces, newlines or invalid UTF-8,
// with the kernel's " (deleted)" suffix when the file was unlinked. The path
// is relative to the reader's root. Permission errors match
// fs.ErrPermission; see OpenExe for the other errors.
func (fs FS) ExeLink(pid int) ([]byte, error) {
	target, err := os.Readlink(fs.path(pid, "exe"))
	if err != nil {
		return nil, fs.exeError(pid, err)
	}
	return []byte(target), nil
}

// OpenExe opens /proc/<pid>/exe read-only, non-blocking and without
// becoming a controlling terminal. The file is the process's running image
// even when its path was unlinked, replaced or lives in another mount
// namespace. Errors wrap ErrExited when the process is gone or a zombie,
// and ErrNoExecutable for a kernel thread. They match fs.ErrPermission when
// the kernel denies ptrace read access, for example to a caller without
// CAP_SYS_PTRACE that does not own the process.
func (fs FS) OpenExe(pid int) (*os.File, error) {
	f, err := os.OpenFile(fs.path(pid, "exe"), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fs.exeError(pid, err)
	}
	return f, nil
}

// exeError classifies a failed readlink or open of the exe link. The kernel
// returns ENOENT both for a process that is gone and for one without a
// memory map (a kernel thread, a zombie or a task in the middle of exit),
// so the flags in stat decide between them.
func (fs FS) exeError(pid int, err error) error {
	if !isExited(err) {
		return err
	}
	st, serr := fs.Stat(pid)
	if serr == nil && st.KernelThread() {
		return fmt.Errorf("%w: kernel thread %d: %w", ErrNoExecutable, pid, err)
	}
	return fmt.Errorf("%w: %w", ErrExited, err)
}
