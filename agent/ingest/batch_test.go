package ingest

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// escapedName returns a process name of n bytes 0xff as the collector
// sends it: quoted like a Go string literal, 4 bytes per byte.
func escapedName(n int) string {
	q := strconv.Quote(string(bytes.Repeat([]byte{0xff}, n)))
	return q[1 : len(q)-1]
}

func TestDecodeBatchRejectsBatch(t *testing.T) {
	for _, tt := range rejectCases() {
		if tt.recordLevel() {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			b := validBatch()
			tt.mutate(b)
			res, err := decodeBatchAt(testSubject, testHeader, marshal(t, b), testNow)
			checkRejection(t, err, tt.reason, tt.field)
			if res.Batch != nil || res.Rejected != nil {
				t.Errorf("DecodeBatch = %+v with error %v, want an empty Result", res, err)
			}
		})
	}
}

func TestDecodeBatchDropsInvalidRecord(t *testing.T) {
	for _, tt := range rejectCases() {
		if !tt.recordLevel() {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			b := validBatch()
			tt.mutate(b)
			digits, _, _ := strings.Cut(strings.TrimPrefix(tt.field, "records["), "]")
			index, err := strconv.Atoi(digits)
			if err != nil {
				t.Fatalf("field %q has no record index", tt.field)
			}
			res, err := decodeBatchAt(testSubject, testHeader, marshal(t, b), testNow)
			if err != nil {
				t.Fatalf("DecodeBatch with one invalid record: %v, want the batch", err)
			}
			if len(res.Rejected) != 1 {
				t.Fatalf("DecodeBatch rejected %d records (%v), want 1", len(res.Rejected), res.Rejected)
			}
			re := res.Rejected[0]
			if re.Index != index {
				t.Errorf("RecordError.Index = %d, want %d", re.Index, index)
			}
			if re.PID != b.Records[index].GetPid() {
				t.Errorf("RecordError.PID = %d, want %d", re.PID, b.Records[index].GetPid())
			}
			checkRejection(t, re.Err, tt.reason, tt.field)

			want := validBatch()
			want.Records = append(want.Records[:index], want.Records[index+1:]...)
			if !proto.Equal(res.Batch, want) {
				t.Errorf("DecodeBatch kept %v, want the other records unchanged: %v", res.Batch, want)
			}
		})
	}
}

func TestDecodeBatchDropsSeveralRecords(t *testing.T) {
	b := validBatch()
	b.Records[0].Pid = 0
	b.Records[2].Executable = nil
	b.Records[4].Executable.Path = bytes.Repeat([]byte("p"), MaxPathLen+1)

	res, err := decodeBatchAt(testSubject, testHeader, marshal(t, b), testNow)
	if err != nil {
		t.Fatalf("DecodeBatch with three invalid records: %v, want the batch", err)
	}
	wantRejected := []struct {
		index  int
		pid    int32
		reason string
	}{{0, 0, ReasonFieldRange}, {2, 102, ReasonMissingField}, {4, 104, ReasonOversizedField}}
	if len(res.Rejected) != len(wantRejected) {
		t.Fatalf("DecodeBatch rejected %d records (%v), want %d", len(res.Rejected), res.Rejected, len(wantRejected))
	}
	for i, w := range wantRejected {
		got := res.Rejected[i]
		if got.Index != w.index {
			t.Errorf("Rejected[%d].Index = %d, want %d", i, got.Index, w.index)
		}
		if got.PID != w.pid {
			t.Errorf("Rejected[%d].PID = %d, want %d", i, got.PID, w.pid)
		}
		if reason := Reason(got.Err); reason != w.reason {
			t.Errorf("Reason(Rejected[%d].Err) = %q, want %q", i, reason, w.reason)
		}
	}

	var pids []int32
	for _, r := range res.Batch.GetRecords() {
		pids = append(pids, r.GetPid())
	}
	if len(pids) != 2 || pids[0] != 101 || pids[1] != 103 {
		t.Errorf("DecodeBatch kept pids %v, want [101 103]", pids)
	}
}

func TestDecodeBatchWithoutValidRecords(t *testing.T) {
	b := validBatch()
	for _, r := range b.Records {
		r.Ppid = -1
	}
	res, err := decodeBatchAt(testSubject, testHeader, marshal(t, b), testNow)
	if err != nil {
		t.Fatalf("DecodeBatch with only invalid records: %v, want the batch", err)
	}
	if n := len(res.Batch.GetRecords()); n != 0 {
		t.Errorf("DecodeBatch kept %d records, want 0", n)
	}
	if n := len(res.Rejected); n != len(b.Records) {
		t.Errorf("DecodeBatch rejected %d records, want %d", n, len(b.Records))
	}
	if res.Batch.GetScanSeq() != b.ScanSeq || res.Batch.GetBatchCount() != b.BatchCount {
		t.Errorf("DecodeBatch batch = scan %d of %d batches, want scan %d of %d",
			res.Batch.GetScanSeq(), res.Batch.GetBatchCount(), b.ScanSeq, b.BatchCount)
	}
	if _, err := decodeAt(testSubject, testHeader, marshal(t, b), testNow); err == nil {
		t.Error("Decode of a batch with only invalid records = nil error, want a rejection")
	}
}

func TestRecordErrorWrapsRejection(t *testing.T) {
	re := RecordError{Index: 3, PID: 77, Err: reject(ReasonFieldShape, "records[3].executable.path", "contains a NUL byte")}
	if !errors.Is(re, ErrInvalid) {
		t.Error("errors.Is(RecordError, ErrInvalid) = false, want true")
	}
	if got := Reason(re); got != ReasonFieldShape {
		t.Errorf("Reason(RecordError) = %q, want %q", got, ReasonFieldShape)
	}
	msg := re.Error()
	if !strings.Contains(msg, "pid 77") {
		t.Errorf("RecordError.Error() = %q, want the pid", msg)
	}
	if !strings.Contains(msg, "records[3].executable.path") {
		t.Errorf("RecordError.Error() = %q, want the field", msg)
	}
}

// TestDecodeAcceptsExtremeRealValues checks values at the edge of what a
// real process and the collector produce. Each must pass alone and all
// together.
func TestDecodeAcceptsExtremeRealValues(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *binwatchv1.ProcessRecord)
	}{
		{"sparse file of 2 TiB", func(r *binwatchv1.ProcessRecord) { r.Executable.Running.Size = 2 << 40 }},
		{"largest file size", func(r *binwatchv1.ProcessRecord) { r.Executable.Running.Size = math.MaxInt64 }},
		{"mtime before 1970", func(r *binwatchv1.ProcessRecord) {
			r.Executable.Running.MtimeNs = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
		}},
		{"earliest mtime and ctime", func(r *binwatchv1.ProcessRecord) {
			r.Executable.Running.MtimeNs = math.MinInt64
			r.Executable.Running.CtimeNs = math.MinInt64
		}},
		{"largest device inode and nlink", func(r *binwatchv1.ProcessRecord) {
			r.Executable.Running.Device = math.MaxUint64
			r.Executable.Running.Inode = math.MaxUint64
			r.Executable.Running.Nlink = math.MaxUint64
		}},
		{"uid 4294967294", func(r *binwatchv1.ProcessRecord) {
			r.Uids = []uint32{4294967294, 4294967294, 4294967294, 4294967294}
		}},
		{"uid 4294967295", func(r *binwatchv1.ProcessRecord) { r.Uids = []uint32{0, math.MaxUint32, 0, math.MaxUint32} }},
		{"path of 4096 bytes", func(r *binwatchv1.ProcessRecord) {
			r.Executable.Path = append([]byte("/"), bytes.Repeat([]byte("p"), MaxPathLen-1)...)
		}},
		{"name of 15 escaped bytes", func(r *binwatchv1.ProcessRecord) { r.Name = escapedName(15) }},
		{"name of 63 escaped bytes", func(r *binwatchv1.ProcessRecord) { r.Name = escapedName(63) }},
		{"10000 arguments of 2 MiB", func(r *binwatchv1.ProcessRecord) {
			r.Argv = make([][]byte, 10000)
			for i := range r.Argv {
				r.Argv[i] = bytes.Repeat([]byte("a"), 2<<20/len(r.Argv))
			}
		}},
		{"largest start ticks", func(r *binwatchv1.ProcessRecord) { r.StartTicks = math.MaxUint64 }},
		{"start time a year after the scan", func(r *binwatchv1.ProcessRecord) {
			r.StartTime = timestamppb.New(testNow.AddDate(1, 0, 0))
		}},
		{"start time in year 1", func(r *binwatchv1.ProcessRecord) {
			r.StartTime = timestamppb.New(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC))
		}},
		{"pid limit and ppid 0", func(r *binwatchv1.ProcessRecord) { r.Pid, r.Ppid = MaxPID, 0 }},
		{"details of 1024 bytes", func(r *binwatchv1.ProcessRecord) {
			r.Executable.StateDetail = strings.Repeat("s", MaxDetailLen)
			r.Executable.CoverageDetail = strings.Repeat("c", MaxDetailLen)
		}},
	}
	all := validBatch()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := validBatch()
			tt.mutate(b.Records[0])
			tt.mutate(all.Records[0])
			checkAccepted(t, b)
		})
	}
	t.Run("all together", func(t *testing.T) { checkAccepted(t, all) })
}

// checkAccepted requires Decode and DecodeBatch to accept b unchanged.
func checkAccepted(t *testing.T, b *binwatchv1.ProcessBatch) {
	t.Helper()
	data := marshal(t, b)
	got, err := decodeAt(testSubject, testHeader, data, testNow)
	if err != nil {
		t.Fatalf("Decode = %v, want the batch", err)
	}
	if !proto.Equal(got, b) {
		t.Errorf("Decode changed the batch")
	}
	res, err := decodeBatchAt(testSubject, testHeader, data, testNow)
	if err != nil {
		t.Fatalf("DecodeBatch = %v, want the batch", err)
	}
	if len(res.Rejected) != 0 {
		t.Errorf("DecodeBatch rejected %v, want no record rejected", res.Rejected)
	}
}
