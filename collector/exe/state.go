package exe

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/binwatch/binwatch/internal/fuzzyhash"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// deletedSuffix is the text that the kernel appends to the exe link of a
// file whose dentry was unlinked. A file may also carry it in its real name.
const deletedSuffix = " (deleted)"

// maxResolveRetries bounds the retries of openat2, which fails with EAGAIN
// under RESOLVE_IN_ROOT when a rename or mount raced with the lookup.
const maxResolveRetries = 8

// classify sets the state of ex, whose running image has fstat run, by
// comparing the image with the file that its path names now. The identity
// of files decides, and the link text only gives the place to look. The
// error wraps ErrExited when the process vanished.
//
// The kernel writes the exe link relative to the reader's root when the
// file is reachable from it, and relative to the top of the process's mount
// namespace otherwise. So the path is resolved from the caller's root when
// the process shares the caller's mount namespace (this covers chrooted
// processes, whose own root is elsewhere), and from /proc/<pid>/root when it
// does not (a container).
//
// Resolution uses openat2(2) with RESOLVE_IN_ROOT and RESOLVE_NO_MAGICLINKS,
// so symlinks at the path cannot lead out of that root or through /proc
// magic links, and O_PATH, so a fifo or device at the path is only fstat'ed,
// never opened. A regular file is then reopened for reading through
// /proc/self/fd, which opens exactly the inode that was checked.
func (in *Inspector) classify(pid int, run *unix.Stat_t, ex *binwatchv1.Executable, res *Result) error {
	if in.isMemfd(run, ex.Path) {
		setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD, "")
		return nil
	}
	root, err := in.openResolutionRoot(pid)
	if errors.Is(err, ErrExited) {
		return err
	}
	if err != nil {
		setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN, err.Error())
		return nil
	}
	defer unix.Close(root)

	for _, path := range candidatePaths(ex.Path, run.Nlink) {
		fd, st, err := lookup(root, path, 0)
		if err == nil {
			defer unix.Close(fd)
			in.compare(fd, &st, run, ex, res)
			return nil
		}
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
			// Nothing resolves there, but a dangling symlink is something.
			if in.foundSymlink(root, path, ex, "dangling symlink at the path") {
				return nil
			}
		case errors.Is(err, unix.ELOOP):
			// ELOOP: a symlink loop, more than 40 nested symlinks, or a
			// /proc magic link, which RESOLVE_NO_MAGICLINKS rejects.
			if !in.foundSymlink(root, path, ex, "symlink at the path that loops, nests too deep or leads to a /proc magic link") {
				unresolved(ex, run, path, err)
			}
			return nil
		default:
			unresolved(ex, run, path, err)
			return nil
		}
	}

	if run.Nlink == 0 {
		setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED, "")
		return nil
	}
	setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN,
		fmt.Sprintf("nothing at the path, but the running image still has %d links", run.Nlink))
	return nil
}

// unresolved sets the state of an image whose path failed to resolve for a
// reason other than a missing entry, such as a parent directory that is a
// symlink loop. An image with no links left is on disk nowhere, whatever
// blocks the path, so it is unlinked. Reporting it as unknown would let a
// deleted binary hide behind a replaced parent directory. With links left,
// the state is unknown.
func unresolved(ex *binwatchv1.Executable, run *unix.Stat_t, path string, err error) {
	if run.Nlink == 0 {
		setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED,
			fmt.Sprintf("the path does not resolve: %v", err))
		return
	}
	setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN,
		fmt.Sprintf("resolving %q: %v", path, err))
}

// candidatePaths lists the paths to look up, in order. The kernel appends
// " (deleted)" only to an unlinked dentry, so with no links left the file
// was at the path without the suffix. With links left, the suffix may be
// part of the real name, so the exact path comes first. The path without
// the suffix comes second, for an image that was unlinked at its path but
// keeps a hard link elsewhere.
func candidatePaths(link []byte, nlink uint64) []string {
	stripped, deleted := bytes.CutSuffix(link, []byte(deletedSuffix))
	switch {
	case deleted && nlink == 0:
		return []string{string(stripped)}
	case deleted:
		return []string{string(link), string(stripped)}
	}
	return []string{string(link)}
}

// compare sets the state from the file at the path, whose O_PATH
// descriptor is fd and fstat st.
func (in *Inspector) compare(fd int, st, run *unix.Stat_t, ex *binwatchv1.Executable, res *Result) {
	if st.Dev == run.Dev && st.Ino == run.Ino {
		setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK, "")
		return
	}
	ex.OnDisk = fileHash(st)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED, fileType(st.Mode)+" at the path")
		return
	}
	setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED, "")

	f, err := os.OpenFile(in.procRoot+"/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		ex.StateDetail = fmt.Sprintf("file at the path not hashed: %v", err)
		return
	}
	defer f.Close()
	var reopened unix.Stat_t
	if err := fstat(f, &reopened); err != nil || reopened.Dev != st.Dev || reopened.Ino != st.Ino {
		ex.StateDetail = "file at the path not hashed: reopening it gave another file"
		return
	}

	d := in.digestsFor(f, &reopened, res)
	d.fill(ex.OnDisk)
	if d.reason != binwatchv1.CoverageReason_COVERAGE_REASON_UNSPECIFIED {
		ex.StateDetail = "file at the path not fully hashed: " + d.detail
	}
	if ex.Running.GetSsdeep() == "" || ex.OnDisk.Ssdeep == "" {
		return
	}
	score, err := fuzzyhash.Compare(ex.Running.Ssdeep, ex.OnDisk.Ssdeep)
	if err != nil {
		ex.StateDetail = fmt.Sprintf("comparing ssdeep digests: %v", err)
		return
	}
	similarity := int32(score)
	ex.OnDiskSimilarity = &similarity
}

// foundSymlink reports whether the last component of path is a symlink,
// and if so records it as what replaced the image.
func (in *Inspector) foundSymlink(root int, path string, ex *binwatchv1.Executable, detail string) bool {
	fd, st, err := lookup(root, path, unix.O_NOFOLLOW)
	if err != nil {
		return false
	}
	unix.Close(fd)
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return false
	}
	ex.OnDisk = fileHash(&st)
	setState(ex, binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED, detail)
	return true
}

// lookup opens path under root as an O_PATH descriptor and fstats it.
func lookup(root int, path string, flags uint64) (int, unix.Stat_t, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | flags,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	var st unix.Stat_t
	fd, err := unix.Openat2(root, path, &how)
	for i := 0; errors.Is(err, unix.EAGAIN) && i < maxResolveRetries; i++ {
		fd, err = unix.Openat2(root, path, &how)
	}
	if err != nil {
		return -1, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// openResolutionRoot opens, as an O_PATH descriptor, the directory that the
// process's exe link is relative to: the caller's root when the process is
// in the caller's mount namespace, its own root otherwise.
func (in *Inspector) openResolutionRoot(pid int) (int, error) {
	procDir := in.procRoot + "/" + strconv.Itoa(pid)
	dir := procDir + "/root"
	if in.selfMountNS.ok {
		var st unix.Stat_t
		err := unix.Stat(procDir+"/ns/mnt", &st)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return -1, fmt.Errorf("%w: stat %s/ns/mnt: %w", ErrExited, procDir, err)
		}
		if err == nil && uint64(st.Dev) == in.selfMountNS.dev && st.Ino == in.selfMountNS.ino {
			dir = "/"
		}
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return -1, fmt.Errorf("%w: opening %s: %w", ErrExited, dir, err)
	}
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", dir, err)
	}
	return fd, nil
}

// setState sets the state and its detail.
func setState(ex *binwatchv1.Executable, s binwatchv1.ExecutableState, detail string) {
	ex.State = s
	ex.StateDetail = detail
}
