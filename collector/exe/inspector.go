// Package exe hashes the running executables of processes and decides how
// each running image relates to the file now at its path.
//
// The running image is read through /proc/<pid>/exe, which stays the
// executed file even after its path was unlinked, replaced or hidden in
// another mount namespace. Content digests (SHA-256 and ssdeep) are cached
// by file identity, so many processes of one executable cost one read. The
// state (on disk, replaced, unlinked, memfd) is decided for every process
// on every call.
package exe

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/binwatch/binwatch/collector/procfs"
	"github.com/binwatch/binwatch/internal/fuzzyhash"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// ErrExited is procfs.ErrExited. Inspect's error wraps it when the process
// vanished (or became a zombie) before its image could be opened.
var ErrExited = procfs.ErrExited

// ErrNoExecutable is procfs.ErrNoExecutable. Inspect's error wraps it for a
// kernel thread, which has no image to inspect.
var ErrNoExecutable = procfs.ErrNoExecutable

// Defaults for zero Options fields.
const (
	DefaultProcRoot     = "/proc"
	DefaultMaxFileSize  = 512 << 20
	DefaultCacheEntries = 4096
)

// readBufferSize is the size of each read while hashing.
const readBufferSize = 256 << 10

// Options configures an Inspector. Zero fields take the defaults.
type Options struct {
	// ProcRoot is the procfs mount, usually "/proc".
	ProcRoot string
	// MaxFileSize is the largest file, in bytes, that is read and hashed.
	// A larger file gets no digest at all, not even of a prefix, and
	// coverage TOO_LARGE. Default 512 MiB.
	MaxFileSize int64
	// CacheEntries bounds the digest cache, in file identities.
	// Default 4096.
	CacheEntries int

	// newFuzzy replaces the ssdeep hasher; tests use it to make ssdeep
	// fail, which the real library never does below its input limit.
	newFuzzy func() fuzzyHasher
	// maxFuzzyInput replaces fuzzyhash.MaxInputSize in tests.
	maxFuzzyInput int64
}

// fuzzyHasher is the part of *fuzzyhash.Hash that hashing uses.
type fuzzyHasher interface {
	io.Writer
	Digest() (string, error)
}

// Inspector hashes running executables and classifies their state. It is
// safe for concurrent use: the cache is locked and every call has its own
// read buffer. Concurrent misses on one identity may hash it twice.
type Inspector struct {
	fs            procfs.FS
	procRoot      string
	maxFileSize   int64
	maxFuzzyInput int64
	newFuzzy      func() fuzzyHasher

	// memfdDevs are the devices of memfds made by NewInspector; a running
	// image on one of them is an anonymous memory file.
	memfdDevs []uint64
	// selfMountNS identifies the caller's mount namespace; ok is false
	// when it could not be read.
	selfMountNS fileID

	bufs sync.Pool

	mu    sync.Mutex
	cache *lru
}

// fileID is a (device, inode) pair.
type fileID struct {
	dev, ino uint64
	ok       bool
}

// NewInspector returns an Inspector with the given options. It creates a
// memfd and fstats it once to learn the device of anonymous memory files,
// then closes it.
func NewInspector(o Options) *Inspector {
	if o.ProcRoot == "" {
		o.ProcRoot = DefaultProcRoot
	}
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.CacheEntries <= 0 {
		o.CacheEntries = DefaultCacheEntries
	}
	if o.newFuzzy == nil {
		o.newFuzzy = func() fuzzyHasher { return fuzzyhash.New() }
	}
	if o.maxFuzzyInput <= 0 {
		o.maxFuzzyInput = fuzzyhash.MaxInputSize
	}
	fsys := procfs.NewFS(o.ProcRoot)
	in := &Inspector{
		fs:            fsys,
		procRoot:      fsys.Root(),
		maxFileSize:   o.MaxFileSize,
		maxFuzzyInput: o.maxFuzzyInput,
		newFuzzy:      o.newFuzzy,
		memfdDevs:     memfdDevices(),
		selfMountNS:   statID(fsys.Root() + "/self/ns/mnt"),
		cache:         newLRU(o.CacheEntries),
	}
	in.bufs.New = func() any { return new([readBufferSize]byte) }
	return in
}

// Result is the outcome of one Inspect call.
type Result struct {
	// Executable is the record of the running image.
	Executable *binwatchv1.Executable
	// Hashed counts the files read and hashed by this call: the running
	// image, the file at the path, or both.
	Hashed int
	// CacheHits counts digest lookups found in the cache.
	CacheHits int
	// CacheMisses counts digest lookups that were not in the cache. Each
	// is one hashing attempt, including a file that was too large to read.
	CacheMisses int
	// BytesHashed is the number of bytes read by this call.
	BytesHashed int64
}

// Inspect hashes the running image of process pid and decides its state.
// exePath is the target of /proc/<pid>/exe as ExeLink returns it; when it
// is nil, Inspect reads the link itself. It becomes Executable.Path
// unchanged.
//
// A process that the caller may not inspect (EACCES or EPERM on the exe
// link) gives a record with coverage ACCESS_DENIED and state UNKNOWN, and
// no error. The error wraps ErrExited when the process vanished, and
// ErrNoExecutable for a kernel thread.
func (in *Inspector) Inspect(pid int, exePath []byte) (Result, error) {
	if exePath == nil {
		link, err := in.fs.ExeLink(pid)
		switch {
		case errors.Is(err, fs.ErrPermission):
			return accessDenied(pid, nil, err), nil
		case err != nil:
			return Result{}, err
		}
		exePath = link
	}

	f, err := in.fs.OpenExe(pid)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return accessDenied(pid, exePath, err), nil
	case errors.Is(err, procfs.ErrExited), errors.Is(err, procfs.ErrNoExecutable):
		return Result{}, err
	case err != nil:
		return readError(exePath, fmt.Sprintf("opening the running image: %v", err)), nil
	}
	defer f.Close()

	var st unix.Stat_t
	if err := fstat(f, &st); err != nil {
		return readError(exePath, fmt.Sprintf("fstat of the running image: %v", err)), nil
	}
	ex := &binwatchv1.Executable{Path: exePath, Running: fileHash(&st)}
	res := Result{Executable: ex}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		ex.State = binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN
		ex.StateDetail = fmt.Sprintf("running image is a %s, not a regular file", fileType(st.Mode))
		degrade(ex, binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR, ex.StateDetail)
		return res, nil
	}

	d := in.digestsFor(f, &st, &res)
	d.fill(ex.Running)
	if d.reason != binwatchv1.CoverageReason_COVERAGE_REASON_UNSPECIFIED {
		degrade(ex, d.reason, d.detail)
	} else {
		ex.Coverage = binwatchv1.Coverage_COVERAGE_FULL
	}

	if err := in.classify(pid, &st, ex, &res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// degrade marks the record's coverage as degraded for reason.
func degrade(ex *binwatchv1.Executable, reason binwatchv1.CoverageReason, detail string) {
	ex.Coverage = binwatchv1.Coverage_COVERAGE_DEGRADED
	ex.CoverageReason = reason
	ex.CoverageDetail = detail
}

// accessDenied is the result for a process whose image the caller may not
// open. The state is unknown: the image exists, it is just not readable.
func accessDenied(pid int, path []byte, err error) Result {
	ex := &binwatchv1.Executable{
		Path:        path,
		State:       binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN,
		StateDetail: fmt.Sprintf("permission denied opening the executable of pid %d", pid),
	}
	degrade(ex, binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED, err.Error())
	return Result{Executable: ex}
}

// readError is the result for a running image that could not be opened or
// examined for a reason other than permission.
func readError(path []byte, detail string) Result {
	ex := &binwatchv1.Executable{
		Path:        path,
		State:       binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN,
		StateDetail: detail,
	}
	degrade(ex, binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR, detail)
	return Result{Executable: ex}
}

// fstat runs fstat(2) on f without switching it to blocking mode, which
// os.File.Fd would do.
func fstat(f *os.File, st *unix.Stat_t) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), st) }); err != nil {
		return err
	}
	return serr
}

// fileHash returns the identity part of a FileHash.
func fileHash(st *unix.Stat_t) *binwatchv1.FileHash {
	return &binwatchv1.FileHash{
		Size:    uint64(st.Size),
		Device:  uint64(st.Dev),
		Inode:   st.Ino,
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
		Nlink:   uint64(st.Nlink),
	}
}

// statID stats path, following links, and returns its identity.
func statID(path string) fileID {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, ok: true}
}

// fileType names the file type in mode for state details.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}
