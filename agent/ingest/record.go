package ingest

import (
	"bytes"
	"fmt"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// recordField names the fields of record i in error messages. The name is
// formatted only when a check fails, so valid batches build no strings.
type recordField struct{ i int }

func (f recordField) name(field string) string {
	return fmt.Sprintf("records[%d].%s", f.i, field)
}

// checkRecord checks one record on its own. It accepts every value that a
// real process and the collector can produce, because a local user
// controls much of a record.
func checkRecord(r *binwatchv1.ProcessRecord, f recordField) error {
	if pid := r.GetPid(); pid < 1 || pid > MaxPID {
		return reject(ReasonFieldRange, f.name("pid"), "%d, want 1 to %d", pid, MaxPID)
	}
	if ppid := r.GetPpid(); ppid < 0 || ppid > MaxPID {
		return reject(ReasonFieldRange, f.name("ppid"), "%d, want 0 to %d", ppid, MaxPID)
	}
	if n := len(r.GetName()); n > MaxNameLen {
		return reject(ReasonOversizedField, f.name("name"), "%d bytes, want at most %d", n, MaxNameLen)
	}
	if n := len(r.GetUids()); n > MaxUIDs {
		return reject(ReasonOversizedField, f.name("uids"), "%d uids, want at most %d", n, MaxUIDs)
	}
	// The collector derives start_time from the boot time that it read at
	// start, so a clock step since then moves start_time by as much, even
	// past scan_time. Only a timestamp that cannot be encoded in an alert
	// is rejected.
	if ts := r.GetStartTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return reject(ReasonFieldRange, f.name("start_time"), "invalid timestamp: %s", quote(err.Error()))
		}
	}

	x := r.GetExecutable()
	if x == nil {
		return reject(ReasonMissingField, f.name("executable"), "missing")
	}
	return checkExecutable(x, f)
}

func checkExecutable(x *binwatchv1.Executable, f recordField) error {
	if err := checkExecutableFields(x, f); err != nil {
		return err
	}
	if err := checkCoverage(x, f); err != nil {
		return err
	}
	return checkState(x, f)
}

// checkExecutableFields checks each field of x on its own.
func checkExecutableFields(x *binwatchv1.Executable, f recordField) error {
	path := x.GetPath()
	if len(path) > MaxPathLen {
		return reject(ReasonOversizedField, f.name("executable.path"), "%d bytes, want at most %d", len(path), MaxPathLen)
	}
	if bytes.IndexByte(path, 0) >= 0 {
		return reject(ReasonFieldShape, f.name("executable.path"), "%s contains a NUL byte", quote(string(path)))
	}
	if n := len(x.GetStateDetail()); n > MaxDetailLen {
		return reject(ReasonOversizedField, f.name("executable.state_detail"), "%d bytes, want at most %d", n, MaxDetailLen)
	}
	if n := len(x.GetCoverageDetail()); n > MaxDetailLen {
		return reject(ReasonOversizedField, f.name("executable.coverage_detail"), "%d bytes, want at most %d", n, MaxDetailLen)
	}

	state := x.GetState()
	if _, ok := binwatchv1.ExecutableState_name[int32(state)]; !ok || state == binwatchv1.ExecutableState_EXECUTABLE_STATE_UNSPECIFIED {
		return reject(ReasonEnum, f.name("executable.state"), "%d, want a specified ExecutableState", int32(state))
	}
	coverage := x.GetCoverage()
	if _, ok := binwatchv1.Coverage_name[int32(coverage)]; !ok || coverage == binwatchv1.Coverage_COVERAGE_UNSPECIFIED {
		return reject(ReasonEnum, f.name("executable.coverage"), "%d, want a specified Coverage", int32(coverage))
	}
	if _, ok := binwatchv1.CoverageReason_name[int32(x.GetCoverageReason())]; !ok {
		return reject(ReasonEnum, f.name("executable.coverage_reason"), "%d, want a defined CoverageReason", int32(x.GetCoverageReason()))
	}

	if x.Running != nil {
		if err := checkFileHash(x.GetRunning(), f, "executable.running"); err != nil {
			return err
		}
	}
	if x.OnDisk != nil {
		if err := checkFileHash(x.GetOnDisk(), f, "executable.on_disk"); err != nil {
			return err
		}
	}
	if x.OnDiskSimilarity != nil {
		if s := x.GetOnDiskSimilarity(); s < 0 || s > 100 {
			return reject(ReasonFieldRange, f.name("executable.on_disk_similarity"), "%d, want 0 to 100", s)
		}
	}
	return nil
}

// checkCoverage requires both digests for full coverage and a per-record
// reason for degraded coverage. Partial visibility is a property of a scan
// (ScanStats.partial_visibility), never of one record.
func checkCoverage(x *binwatchv1.Executable, f recordField) error {
	reason := x.GetCoverageReason()
	switch x.GetCoverage() {
	case binwatchv1.Coverage_COVERAGE_FULL:
		if x.GetRunning().GetSha256() == "" || x.GetRunning().GetSsdeep() == "" {
			return reject(ReasonInconsistent, f.name("executable.coverage"), "FULL without both running digests")
		}
		if reason != binwatchv1.CoverageReason_COVERAGE_REASON_UNSPECIFIED {
			return reject(ReasonInconsistent, f.name("executable.coverage_reason"), "%s with coverage FULL", reason)
		}
	case binwatchv1.Coverage_COVERAGE_DEGRADED:
		if reason == binwatchv1.CoverageReason_COVERAGE_REASON_UNSPECIFIED ||
			reason == binwatchv1.CoverageReason_COVERAGE_REASON_PARTIAL_VISIBILITY {
			return reject(ReasonInconsistent, f.name("executable.coverage_reason"), "%s with coverage DEGRADED, want a per-record reason", reason)
		}
	}
	return nil
}

// checkState requires the fields that each state implies: the collector
// decides every state but UNKNOWN from the running image's identity, and
// only REPLACED has another file at the path.
func checkState(x *binwatchv1.Executable, f recordField) error {
	state := x.GetState()
	unknown := state == binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN
	replaced := state == binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED
	if !unknown && len(x.GetPath()) == 0 {
		return reject(ReasonMissingField, f.name("executable.path"), "empty with state %s", state)
	}
	if !unknown && x.Running == nil {
		return reject(ReasonMissingField, f.name("executable.running"), "missing with state %s", state)
	}
	if replaced {
		if x.OnDisk == nil {
			return reject(ReasonMissingField, f.name("executable.on_disk"), "missing with state %s", state)
		}
		run, disk := x.GetRunning(), x.GetOnDisk()
		if run.GetInode() != 0 && run.GetDevice() == disk.GetDevice() && run.GetInode() == disk.GetInode() {
			return reject(ReasonInconsistent, f.name("executable.on_disk"),
				"same device %d and inode %d as the running image with state %s", disk.GetDevice(), disk.GetInode(), state)
		}
	} else if x.OnDisk != nil && !unknown {
		return reject(ReasonInconsistent, f.name("executable.on_disk"), "present with state %s", state)
	}
	if x.OnDiskSimilarity != nil {
		if !replaced || x.GetRunning().GetSsdeep() == "" || x.GetOnDisk().GetSsdeep() == "" {
			return reject(ReasonInconsistent, f.name("executable.on_disk_similarity"),
				"present with state %s but without both ssdeep digests of state REPLACED", state)
		}
	}
	return nil
}

func checkFileHash(h *binwatchv1.FileHash, f recordField, prefix string) error {
	if s := h.GetSha256(); s != "" && !isSHA256(s) {
		return reject(ReasonDigestShape, f.name(prefix+".sha256"), "%s, want 64 lower-case hex digits", quote(s))
	}
	if s := h.GetSsdeep(); s != "" {
		if why := checkSSDeep(s); why != "" {
			return reject(ReasonDigestShape, f.name(prefix+".ssdeep"), "%s: %s", quote(s), why)
		}
	}
	if size := h.GetSize(); size > MaxFileSize {
		return reject(ReasonFieldRange, f.name(prefix+".size"), "%d, want at most %d", size, uint64(MaxFileSize))
	}
	// Device, inode, link count and times are not checked: any value is
	// possible, and mtime and ctime are negative for files dated before
	// 1970.
	return nil
}
