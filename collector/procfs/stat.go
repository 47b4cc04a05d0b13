package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// pfKthread is PF_KTHREAD from include/linux/sched.h: the kernel sets it in
// the flags of every kernel thread.
const pfKthread = 0x00200000

// Stat holds the fields of /proc/<pid>/stat that the collector uses.
type Stat struct {
	PID  int
	PPID int
	// Comm is the kernel's name of the task, as raw bytes in a string. It
	// may contain spaces, parentheses and newlines.
	Comm  string
	State byte
	// Flags is the task's PF_* flags word.
	Flags uint64
	// StartTicks is the start time in clock ticks (see ClockTicks) after
	// boot.
	StartTicks uint64
}

// KernelThread reports whether the task is a kernel thread, from the
// PF_KTHREAD flag that the kernel sets for its own threads. It does not
// depend on whether the exe link can be read.
func (s Stat) KernelThread() bool { return s.Flags&pfKthread != 0 }

// Stat reads and parses /proc/<pid>/stat.
func (fs FS) Stat(pid int) (Stat, error) {
	path := fs.path(pid, "stat")
	data, err := readBounded(path, maxSmallFile)
	if err != nil {
		return Stat{}, processError(err)
	}
	s, err := parseStat(data)
	if err != nil {
		return Stat{}, fmt.Errorf("parsing %s: %w", path, err)
	}
	return s, nil
}

// statFieldsAfterComm is how many fields parseStat needs after the comm:
// state (field 3) through starttime (field 22).
const statFieldsAfterComm = 20

// parseStat parses the text of /proc/<pid>/stat. The comm is everything
// between the first '(' and the last ')', because the kernel prints it
// unescaped and the fields after it are all numbers or a state letter.
func parseStat(data []byte) (Stat, error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 2 || data[open-1] != ' ' {
		return Stat{}, errors.New("missing \"pid (\" prefix")
	}
	if end < open {
		return Stat{}, errors.New("missing ')' after comm")
	}
	pid, ok := parsePID(string(data[:open-1]))
	if !ok {
		return Stat{}, fmt.Errorf("invalid pid %q", data[:open-1])
	}

	rest := data[end+1:]
	if len(rest) == 0 || rest[0] != ' ' {
		return Stat{}, errors.New("missing fields after comm")
	}
	fields := bytes.Fields(rest)
	if len(fields) < statFieldsAfterComm {
		return Stat{}, fmt.Errorf("got %d fields after comm, want at least %d", len(fields), statFieldsAfterComm)
	}
	if len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("invalid state %q", fields[0])
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil || ppid < 0 {
		return Stat{}, fmt.Errorf("invalid ppid %q", fields[1])
	}
	flags, err := strconv.ParseUint(string(fields[6]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("invalid flags %q", fields[6])
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("invalid starttime %q", fields[19])
	}
	return Stat{
		PID:        pid,
		PPID:       ppid,
		Comm:       string(data[open+1 : end]),
		State:      fields[0][0],
		Flags:      flags,
		StartTicks: start,
	}, nil
}

// ClockTicks returns USER_HZ, the unit of the tick counts in /proc/<pid>/stat
// (sysconf(_SC_CLK_TCK)). The kernel fixes it at 100 on every architecture
// that Go supports on Linux; only alpha and ia64 used another value.
func ClockTicks() uint64 { return 100 }

// StartTime converts a start time in clock ticks after boot to wall-clock
// time, given the boot time from BootTime.
func StartTime(boot time.Time, ticks uint64) time.Time {
	hz := ClockTicks()
	sec := ticks / hz
	nsec := (ticks % hz) * uint64(time.Second) / hz
	return boot.Add(time.Duration(sec)*time.Second + time.Duration(nsec))
}
