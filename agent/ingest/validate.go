package ingest

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Bounds of a plausible batch. The batch-level bounds are set well above
// what a real host produces, so only absurd values fail. The record-level
// bounds are the largest values that the kernel or the collector can
// produce, because a local user controls much of a record (the name, the
// command line, the executable file) and an invalid record is dropped.
const (
	// MaxBatchBytes is 64 MiB, nats-server's default max_pending, which
	// max_payload may not exceed (nats-server v2.15.3). A real batch stays
	// below the server's max_payload, 1 MiB by default.
	MaxBatchBytes = 64 << 20
	// MaxBatchCount bounds the number of batches of one scan.
	MaxBatchCount = 1 << 16
	// MaxRecords bounds the number of records in one batch.
	MaxRecords = 1 << 16
	// MaxPID is the kernel's PID_MAX_LIMIT on 64-bit systems.
	MaxPID = 4194304
	// MaxPathLen is PATH_MAX: readlink of /proc/<pid>/exe, " (deleted)"
	// suffix included, never returns more.
	MaxPathLen = 4096
	// MaxNameLen bounds the process name, in bytes. A user process's name
	// has at most 15 bytes (TASK_COMM_LEN is 16 with the NUL). Kernel
	// threads, which the collector skips, have longer names such as
	// "kworker/u8:2-ext4-rsv-conversion". The bound admits 63 bytes, each
	// escaped: the collector quotes a name that is not valid UTF-8 byte by
	// byte, and an escape such as \xff takes 4 bytes.
	MaxNameLen = 4 * 63
	// MaxHostnameLen is the longest DNS name.
	MaxHostnameLen = 255
	// MaxUIDs is the number of uids in a record: real, effective, saved
	// and filesystem.
	MaxUIDs = 4
	// MaxDetailLen bounds free-text fields: state_detail, coverage_detail
	// and visibility_detail. The collector cuts longer ones.
	MaxDetailLen = 1024
	// MaxBootIDLen bounds boot_id. The kernel's boot id is a 36-byte UUID.
	MaxBootIDLen = 64
	// MaxCollectorIDLen bounds collector_id.
	MaxCollectorIDLen = 64
	// MaxStatsKeys bounds the entries of each map in ScanStats.
	MaxStatsKeys = 64
	// MaxStatsKeyLen bounds the keys of the maps in ScanStats.
	MaxStatsKeyLen = 64
	// MaxFileSize bounds the size of an executable file. It is the
	// kernel's largest file size, MAX_LFS_FILESIZE on 64-bit systems,
	// because st_size is a signed 64-bit number. A sparse file reaches it
	// without using disk space.
	MaxFileSize = math.MaxInt64
	// MinScanTimeUnix is the earliest plausible scan_time,
	// 2000-01-01T00:00:00Z, in seconds since the Unix epoch. A host whose
	// clock has not been set since boot reports 1970 and is rejected.
	MinScanTimeUnix = 946684800
	// MaxClockSkew is how far scan_time may lie in the future of the
	// agent's clock.
	MaxClockSkew = 24 * time.Hour
)

// A record's command line has no bound of its own beyond MaxBatchBytes:
// the collector's options set how much of it is kept, and a process with
// CAP_SYS_RESOURCE can point its command line at any of its memory
// (prctl PR_SET_MM).

// Validate checks that b is a plausible batch from the host with token
// host, as Decode does after decoding: the batch and every record must
// pass. It returns an *Error wrapping ErrInvalid, or nil.
func Validate(b *binwatchv1.ProcessBatch, host string) error {
	return validateAt(b, host, time.Now())
}

func validateAt(b *binwatchv1.ProcessBatch, host string, now time.Time) error {
	if err := validateBatch(b, host, now); err != nil {
		return err
	}
	for i, r := range b.GetRecords() {
		if err := checkRecord(r, recordField{i}); err != nil {
			return err
		}
	}
	return nil
}

// validateBatch checks everything in b but the content of its records:
// the host, the scan and batch fields, the stats, the number of records
// and fields unknown to the schema anywhere in b.
func validateBatch(b *binwatchv1.ProcessBatch, host string, now time.Time) error {
	if b == nil {
		return reject(ReasonMissingField, "", "nil batch")
	}
	if hasUnknown(b) {
		if err := unknownFieldError(b.ProtoReflect(), ""); err != nil {
			return err
		}
		return reject(ReasonUnknownField, "", "fields that binwatch.v1 does not define")
	}
	if err := schema.ValidateHostToken(b.GetHostId()); err != nil {
		return reject(ReasonHostMismatch, "host_id", "%s is not a valid host token", quote(b.GetHostId()))
	}
	if b.GetHostId() != host {
		return reject(ReasonHostMismatch, "host_id", "%s, but the subject names host %s", quote(b.GetHostId()), quote(host))
	}
	if err := checkBatchHeader(b, now); err != nil {
		return err
	}
	if err := checkStats(b.GetStats()); err != nil {
		return err
	}
	if n := len(b.GetRecords()); n > MaxRecords {
		return reject(ReasonOversizedField, "records", "%d records, want at most %d", n, MaxRecords)
	}
	return nil
}

// hasUnknown reports whether b or any message inside it carries fields
// that the schema does not define. proto.Unmarshal keeps such fields
// instead of failing, which lets another message type decode. It visits
// each message field of the schema by name, which is several times faster
// than walking b by reflection, and a test checks that it names them all.
func hasUnknown(b *binwatchv1.ProcessBatch) bool {
	if unknown(b) || b.ScanTime != nil && unknown(b.ScanTime) || b.Stats != nil && unknown(b.Stats) {
		return true
	}
	for _, r := range b.Records {
		if unknown(r) || r.StartTime != nil && unknown(r.StartTime) {
			return true
		}
		x := r.Executable
		if x == nil {
			continue
		}
		if unknown(x) || x.Running != nil && unknown(x.Running) || x.OnDisk != nil && unknown(x.OnDisk) {
			return true
		}
	}
	return false
}

func unknown(m protoreflect.ProtoMessage) bool {
	return len(m.ProtoReflect().GetUnknown()) > 0
}

// unknownFieldError walks m by reflection and returns the rejection of
// the first message with unknown fields, named by its field path. It runs
// only after hasUnknown found one, so that valid batches build no names.
func unknownFieldError(m protoreflect.Message, field string) error {
	if u := m.GetUnknown(); len(u) > 0 {
		return reject(ReasonUnknownField, field, "%d bytes of fields that %s does not define", len(u), m.Descriptor().FullName())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := join(field, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := 0; i < list.Len() && err == nil; i++ {
				err = unknownFieldError(list.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = unknownFieldError(mv.Message(), fmt.Sprintf("%s[%s]", name, quote(k.String())))
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = unknownFieldError(v.Message(), name)
		}
		return err == nil
	})
	return err
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func checkBatchHeader(b *binwatchv1.ProcessBatch, now time.Time) error {
	if n := len(b.GetHostname()); n > MaxHostnameLen {
		return reject(ReasonOversizedField, "hostname", "%d bytes, want at most %d", n, MaxHostnameLen)
	}
	if err := checkBootID(b.GetBootId()); err != nil {
		return err
	}
	if err := checkCollectorID(b.GetCollectorId()); err != nil {
		return err
	}
	if b.GetScanSeq() < 1 {
		return reject(ReasonFieldRange, "scan_seq", "0, want at least 1")
	}
	count, index := b.GetBatchCount(), b.GetBatchIndex()
	if count < 1 || count > MaxBatchCount {
		return reject(ReasonFieldRange, "batch_count", "%d, want 1 to %d", count, MaxBatchCount)
	}
	if index >= count {
		return reject(ReasonFieldRange, "batch_index", "%d, want less than batch_count %d", index, count)
	}
	ts := b.GetScanTime()
	if ts == nil {
		return reject(ReasonMissingField, "scan_time", "missing")
	}
	return checkTime(ts, "scan_time", time.Unix(MinScanTimeUnix, 0), now.Add(MaxClockSkew))
}

// checkTime requires a valid timestamp within [earliest, latest].
func checkTime(ts *timestamppb.Timestamp, field string, earliest, latest time.Time) error {
	if err := ts.CheckValid(); err != nil {
		return reject(ReasonFieldRange, field, "invalid timestamp: %s", quote(err.Error()))
	}
	t := ts.AsTime()
	if t.Before(earliest) || t.After(latest) {
		return reject(ReasonFieldRange, field, "%s, want %s to %s",
			t.Format(time.RFC3339Nano), earliest.UTC().Format(time.RFC3339), latest.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkBootID accepts an empty boot_id or up to MaxBootIDLen hex digits and
// dashes, the form of /proc/sys/kernel/random/boot_id.
func checkBootID(id string) error {
	if len(id) > MaxBootIDLen {
		return reject(ReasonOversizedField, "boot_id", "%d bytes, want at most %d", len(id), MaxBootIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isHex(c) && !(c >= 'A' && c <= 'F') && c != '-' {
			return reject(ReasonFieldShape, "boot_id", "%s, want hex digits and dashes", quote(id))
		}
	}
	return nil
}

// checkCollectorID accepts up to MaxCollectorIDLen printable ASCII bytes
// other than space.
func checkCollectorID(id string) error {
	if len(id) > MaxCollectorIDLen {
		return reject(ReasonOversizedField, "collector_id", "%d bytes, want at most %d", len(id), MaxCollectorIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return reject(ReasonFieldShape, "collector_id", "%s, want printable ASCII without spaces", quote(id))
		}
	}
	return nil
}

func checkStats(s *binwatchv1.ScanStats) error {
	if s == nil {
		return nil
	}
	if n := len(s.GetVisibilityDetail()); n > MaxDetailLen {
		return reject(ReasonOversizedField, "stats.visibility_detail", "%d bytes, want at most %d", n, MaxDetailLen)
	}
	if s.GetDurationNs() < 0 {
		return reject(ReasonFieldRange, "stats.duration_ns", "%d, want at least 0", s.GetDurationNs())
	}
	// Each process is counted once per scan, so a count above the pid
	// limit is absurd. Hashes and cache hits count up to two files per
	// process: the running image and the file at its path.
	counts := []struct {
		field  string
		n, max uint32
	}{
		{"stats.processes_seen", s.GetProcessesSeen(), MaxPID},
		{"stats.kernel_threads", s.GetKernelThreads(), MaxPID},
		{"stats.exited", s.GetExited(), MaxPID},
		{"stats.records_oversized", s.GetRecordsOversized(), MaxPID},
		{"stats.executables_hashed", s.GetExecutablesHashed(), 2 * MaxPID},
		{"stats.cache_hits", s.GetCacheHits(), 2 * MaxPID},
	}
	for _, c := range counts {
		if c.n > c.max {
			return reject(ReasonFieldRange, c.field, "%d, want at most %d", c.n, c.max)
		}
	}
	maps := []struct {
		field string
		m     map[string]uint32
	}{
		{"stats.coverage_degraded", s.GetCoverageDegraded()},
		{"stats.states", s.GetStates()},
	}
	for _, m := range maps {
		if len(m.m) > MaxStatsKeys {
			return reject(ReasonOversizedField, m.field, "%d entries, want at most %d", len(m.m), MaxStatsKeys)
		}
		for k, v := range m.m {
			if len(k) == 0 || len(k) > MaxStatsKeyLen {
				return reject(ReasonOversizedField, m.field, "key %s, want 1 to %d bytes", quote(k), MaxStatsKeyLen)
			}
			if v > MaxPID {
				return reject(ReasonFieldRange, m.field, "%d records for %s, want at most %d", v, quote(k), MaxPID)
			}
		}
	}
	return nil
}
