// Package collector scans a host's processes, hashes their running
// executables and publishes the records to NATS as ProcessBatch messages.
package collector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/collector/exe"
	"github.com/binwatch/binwatch/collector/procfs"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Defaults for Options fields left at zero.
const (
	DefaultProcRoot     = "/proc"
	DefaultMaxFileSize  = 512 << 20
	DefaultCacheEntries = 4096
	DefaultMaxArgs      = 64
	DefaultMaxArgBytes  = 4096
)

// Options configures a Scanner.
type Options struct {
	// ProcRoot is the procfs mount to scan.
	ProcRoot string
	// MaxFileSize is the largest executable, in bytes, that is hashed.
	MaxFileSize int64
	// CacheEntries bounds the hash cache, in executables.
	CacheEntries int
	// MaxArgs and MaxArgBytes bound the command line kept per process.
	MaxArgs     int
	MaxArgBytes int
}

func (o *Options) setDefaults() {
	if o.ProcRoot == "" {
		o.ProcRoot = DefaultProcRoot
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = DefaultCacheEntries
	}
	if o.MaxArgs == 0 {
		o.MaxArgs = DefaultMaxArgs
	}
	if o.MaxArgBytes == 0 {
		o.MaxArgBytes = DefaultMaxArgBytes
	}
}

// Scan is the result of one pass over /proc.
type Scan struct {
	Seq     uint64
	Time    time.Time
	BootID  string
	Records []*binwatchv1.ProcessRecord
	Stats   *binwatchv1.ScanStats
}

// Scanner walks /proc and builds process records. A Scanner keeps a hash
// cache between scans; it is not safe for concurrent scans.
type Scanner struct {
	opts      Options
	fs        procfs.FS
	inspector *exe.Inspector
	bootTime  time.Time
	bootID    string
	seq       uint64
	// processError, when set, receives errors about single processes that
	// the scan skipped (it never receives exits).
	processError func(pid int, err error)
}

// NewScanner returns a Scanner for the procfs at opts.ProcRoot. It fails
// when that root has no readable boot time or boot id.
func NewScanner(opts Options) (*Scanner, error) {
	opts.setDefaults()
	fs := procfs.NewFS(opts.ProcRoot)
	bootTime, err := fs.BootTime()
	if err != nil {
		return nil, fmt.Errorf("collector: reading boot time under %s: %w", opts.ProcRoot, err)
	}
	bootID, err := fs.BootID()
	if err != nil {
		return nil, fmt.Errorf("collector: reading boot id under %s: %w", opts.ProcRoot, err)
	}
	in := exe.NewInspector(exe.Options{
		ProcRoot:     opts.ProcRoot,
		MaxFileSize:  opts.MaxFileSize,
		CacheEntries: opts.CacheEntries,
	})
	return &Scanner{opts: opts, fs: fs, inspector: in, bootTime: bootTime, bootID: bootID}, nil
}

// OnProcessError sets a function that receives errors about single
// processes that a scan skipped. Exited processes are counted, not
// reported.
func (s *Scanner) OnProcessError(f func(pid int, err error)) { s.processError = f }

// Scan reads every process once. It returns an error only when /proc
// cannot be listed or ctx ends; a process that fails alone is skipped and
// reported through OnProcessError.
func (s *Scanner) Scan(ctx context.Context) (*Scan, error) {
	start := time.Now()
	pids, err := s.fs.PIDs()
	if err != nil {
		return nil, fmt.Errorf("collector: listing processes: %w", err)
	}
	s.seq++
	scan := &Scan{
		Seq:    s.seq,
		Time:   start,
		BootID: s.bootID,
		Stats: &binwatchv1.ScanStats{
			CoverageDegraded: map[string]uint32{},
			States:           map[string]uint32{},
		},
	}
	vis, err := s.fs.Visibility()
	if err != nil {
		scan.Stats.PartialVisibility = true
		scan.Stats.VisibilityDetail = detailText("visibility unknown: " + err.Error())
	} else if vis.Partial {
		scan.Stats.PartialVisibility = true
		scan.Stats.VisibilityDetail = detailText(vis.Detail)
	}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, res, err := s.record(pid)
		switch {
		case errors.Is(err, procfs.ErrExited):
			scan.Stats.Exited++
			continue
		case errors.Is(err, errKernelThread), errors.Is(err, procfs.ErrNoExecutable):
			scan.Stats.KernelThreads++
			continue
		case err != nil:
			if s.processError != nil {
				s.processError(pid, err)
			}
			continue
		}
		scan.Stats.ProcessesSeen++
		scan.Stats.ExecutablesHashed += uint32(res.Hashed)
		scan.Stats.CacheHits += uint32(res.CacheHits)
		scan.Stats.BytesHashed += uint64(res.BytesHashed)
		x := rec.Executable
		scan.Stats.States[StateName(x.State)]++
		if x.Coverage == binwatchv1.Coverage_COVERAGE_DEGRADED {
			scan.Stats.CoverageDegraded[ReasonName(x.CoverageReason)]++
		}
		scan.Records = append(scan.Records, rec)
	}
	scan.Stats.DurationNs = int64(time.Since(start))
	return scan, nil
}

var errKernelThread = errors.New("kernel thread")

// record builds the record of one process. The exe is inspected before
// the stat is read a second time, so that a pid reused in between is seen
// as an exit instead of as a record mixing two processes.
func (s *Scanner) record(pid int) (*binwatchv1.ProcessRecord, exe.Result, error) {
	st, err := s.fs.Stat(pid)
	if err != nil {
		return nil, exe.Result{}, err
	}
	if st.KernelThread() {
		return nil, exe.Result{}, errKernelThread
	}
	rec := &binwatchv1.ProcessRecord{
		Pid:        int32(pid),
		Ppid:       int32(st.PPID),
		Name:       validText(st.Comm),
		StartTicks: st.StartTicks,
		StartTime:  timestamppb.New(s.startTime(st.StartTicks)),
	}
	uids, err := s.fs.UIDs(pid)
	if err != nil {
		return nil, exe.Result{}, err
	}
	rec.Uids = uids[:]
	rec.Argv, rec.ArgvTruncated, err = s.fs.Cmdline(pid, s.opts.MaxArgs, s.opts.MaxArgBytes)
	if err != nil {
		return nil, exe.Result{}, err
	}
	link, err := s.fs.ExeLink(pid)
	if err != nil && !errors.Is(err, procfs.ErrExited) {
		// The link can be unreadable (access denied) while the process
		// lives; the inspector records why.
		link = nil
	} else if err != nil {
		return nil, exe.Result{}, err
	}
	res, err := s.inspector.Inspect(pid, link)
	if errors.Is(err, procfs.ErrExited) || errors.Is(err, procfs.ErrNoExecutable) {
		return nil, exe.Result{}, err
	}
	if err != nil {
		// The process lives but its executable could not be looked at
		// (a path longer than the kernel returns, say). It is recorded as
		// degraded rather than left out, so it cannot hide this way.
		res = exe.Result{Executable: &binwatchv1.Executable{
			Path:           link,
			State:          binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN,
			StateDetail:    err.Error(),
			Coverage:       binwatchv1.Coverage_COVERAGE_DEGRADED,
			CoverageReason: binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR,
			CoverageDetail: err.Error(),
		}}
	}
	rec.Executable = res.Executable
	rec.Executable.StateDetail = detailText(rec.Executable.StateDetail)
	rec.Executable.CoverageDetail = detailText(rec.Executable.CoverageDetail)
	// A pid whose start time changed was reused during the scan.
	again, err := s.fs.Stat(pid)
	if err != nil {
		return nil, exe.Result{}, err
	}
	if again.StartTicks != st.StartTicks {
		return nil, exe.Result{}, fmt.Errorf("pid %d reused during scan: %w", pid, procfs.ErrExited)
	}
	return rec, res, nil
}

func (s *Scanner) startTime(ticks uint64) time.Time {
	hz := procfs.ClockTicks()
	sec := ticks / hz
	frac := ticks % hz
	return s.bootTime.Add(time.Duration(sec)*time.Second + time.Duration(frac)*time.Second/time.Duration(hz))
}

// BootID returns the kernel's boot id read at start.
func (s *Scanner) BootID() string { return s.bootID }

// validText returns s unchanged when it is valid UTF-8, and otherwise
// quoted like a Go string literal without the quotes. Protobuf string
// fields must be UTF-8, while a process may name itself with any bytes
// and details may quote paths.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// maxDetailLen bounds the free-text fields state_detail, coverage_detail
// and visibility_detail, in bytes. The agent drops a whole batch with a
// longer one (ingest.MaxDetailLen, also 1024), and a detail that quotes a
// path of 4096 non-UTF-8 bytes grows to about 16 KiB.
const maxDetailLen = 1024

// truncatedMark ends a detail that detailText cut.
const truncatedMark = "... (truncated)"

// detailText returns s as validText does, cut at a character boundary
// and marked when it is longer than maxDetailLen bytes.
func detailText(s string) string {
	s = validText(s)
	if len(s) <= maxDetailLen {
		return s
	}
	cut := maxDetailLen - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}
