package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

const (
	testHost    = "web-01"
	testSubject = "binwatch.process.web-01"
	shaA        = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	shaB        = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
	ssdeepA     = "3072:DblyvE2VecD2crUvYpr0meZJfEdjdkIKacl:DyEaeS10VhEdjyIdcl"
	ssdeepB     = "3:uG:uG"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var testHeader = map[string][]string{
	schema.HeaderContentType: {schema.ContentTypeProtobuf},
	schema.HeaderMessageType: {schema.MessageTypeProcessBatch},
}

// validBatch returns a batch that passes validation, with one record in
// each executable state.
func validBatch() *binwatchv1.ProcessBatch {
	running := func(sha, ssd string, inode uint64) *binwatchv1.FileHash {
		return &binwatchv1.FileHash{Sha256: sha, Ssdeep: ssd, Size: 142312, Device: 2049, Inode: inode,
			MtimeNs: 1700000000e9, CtimeNs: 1700000001e9, Nlink: 1}
	}
	rec := func(pid int32, path string, x *binwatchv1.Executable) *binwatchv1.ProcessRecord {
		x.Path = []byte(path)
		return &binwatchv1.ProcessRecord{
			Pid: pid, Ppid: 1, Name: "worker", Argv: [][]byte{[]byte(path), []byte("--flag")},
			Uids: []uint32{0, 0, 0, 0}, StartTicks: 12345,
			StartTime:  timestamppb.New(testNow.Add(-time.Hour)),
			Executable: x,
		}
	}
	return &binwatchv1.ProcessBatch{
		HostId:      testHost,
		Hostname:    "web-01.example.org",
		BootId:      "0f6e1a6c-6a1f-4a53-9d2f-1c1c0e3f2a11",
		ScanSeq:     7,
		BatchIndex:  0,
		BatchCount:  2,
		ScanTime:    timestamppb.New(testNow),
		CollectorId: "c0ffee",
		Stats: &binwatchv1.ScanStats{
			ProcessesSeen:    5,
			CoverageDegraded: map[string]uint32{"COVERAGE_REASON_SSDEEP_FAILED": 1},
			States:           map[string]uint32{"EXECUTABLE_STATE_ON_DISK": 2},
			DurationNs:       int64(30 * time.Millisecond),
		},
		Records: []*binwatchv1.ProcessRecord{
			rec(100, "/usr/bin/ls", &binwatchv1.Executable{
				Running: running(shaA, ssdeepA, 11), State: binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK,
				Coverage: binwatchv1.Coverage_COVERAGE_FULL,
			}),
			rec(101, "/usr/sbin/sshd", &binwatchv1.Executable{
				Running: running(shaA, ssdeepA, 12), State: binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED,
				OnDisk:           running(shaB, ssdeepB, 13),
				OnDiskSimilarity: proto.Int32(0),
				Coverage:         binwatchv1.Coverage_COVERAGE_FULL,
			}),
			rec(102, "/tmp/x (deleted)", &binwatchv1.Executable{
				Running: running(shaB, "", 14), State: binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED,
				Coverage: binwatchv1.Coverage_COVERAGE_DEGRADED, CoverageReason: binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED,
				CoverageDetail: "ssdeep: no digest",
			}),
			rec(103, "/memfd:payload (deleted)", &binwatchv1.Executable{
				Running: running(shaB, ssdeepB, 15), State: binwatchv1.ExecutableState_EXECUTABLE_STATE_MEMFD,
				Coverage: binwatchv1.Coverage_COVERAGE_FULL,
			}),
			rec(104, "", &binwatchv1.Executable{
				State: binwatchv1.ExecutableState_EXECUTABLE_STATE_UNKNOWN, StateDetail: "readlink: permission denied",
				Coverage: binwatchv1.Coverage_COVERAGE_DEGRADED, CoverageReason: binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED,
			}),
		},
	}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("proto.Marshal: %v", err)
	}
	return data
}

func TestDecodeValid(t *testing.T) {
	want := validBatch()
	got, err := decodeAt(testSubject, testHeader, marshal(t, want), testNow)
	if err != nil {
		t.Fatalf("decode valid batch: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("decode valid batch = %v, want %v", got, want)
	}
}

func TestDecodeWithoutHeaders(t *testing.T) {
	if _, err := decodeAt(testSubject, nil, marshal(t, validBatch()), testNow); err != nil {
		t.Errorf("decode without headers: %v, want nil", err)
	}
}

func TestDecodeHeaderCaseInsensitive(t *testing.T) {
	header := map[string][]string{"binwatch-message": {schema.MessageTypeIntegrityAlert}}
	_, err := decodeAt(testSubject, header, marshal(t, validBatch()), testNow)
	if got := Reason(err); got != ReasonWrongType {
		t.Errorf("decode with lower-case alert type header: reason %q (%v), want %q", got, err, ReasonWrongType)
	}
}

// rejectCase is a change that makes validBatch invalid, with the reason
// and field of the rejection. A field that starts with "records[" makes
// only that record invalid.
type rejectCase struct {
	name   string
	mutate func(b *binwatchv1.ProcessBatch)
	reason string
	field  string
}

func (c rejectCase) recordLevel() bool { return strings.HasPrefix(c.field, "records[") }

func rejectCases() []rejectCase {
	return []rejectCase{
		{"host id other host", func(b *binwatchv1.ProcessBatch) { b.HostId = "db-01" }, ReasonHostMismatch, "host_id"},
		{"host id invalid token", func(b *binwatchv1.ProcessBatch) { b.HostId = "web.01" }, ReasonHostMismatch, "host_id"},
		{"host id empty", func(b *binwatchv1.ProcessBatch) { b.HostId = "" }, ReasonHostMismatch, "host_id"},
		{"hostname too long", func(b *binwatchv1.ProcessBatch) { b.Hostname = strings.Repeat("h", 256) }, ReasonOversizedField, "hostname"},
		{"boot id not hex", func(b *binwatchv1.ProcessBatch) { b.BootId = "boot id\n" }, ReasonFieldShape, "boot_id"},
		{"boot id too long", func(b *binwatchv1.ProcessBatch) { b.BootId = strings.Repeat("a", 65) }, ReasonOversizedField, "boot_id"},
		{"collector id with space", func(b *binwatchv1.ProcessBatch) { b.CollectorId = "a b" }, ReasonFieldShape, "collector_id"},
		{"scan seq zero", func(b *binwatchv1.ProcessBatch) { b.ScanSeq = 0 }, ReasonFieldRange, "scan_seq"},
		{"batch count zero", func(b *binwatchv1.ProcessBatch) { b.BatchCount = 0 }, ReasonFieldRange, "batch_count"},
		{"batch count huge", func(b *binwatchv1.ProcessBatch) { b.BatchCount = MaxBatchCount + 1 }, ReasonFieldRange, "batch_count"},
		{"batch index equals count", func(b *binwatchv1.ProcessBatch) { b.BatchIndex = 2 }, ReasonFieldRange, "batch_index"},
		{"scan time missing", func(b *binwatchv1.ProcessBatch) { b.ScanTime = nil }, ReasonMissingField, "scan_time"},
		{"scan time 1970", func(b *binwatchv1.ProcessBatch) { b.ScanTime = timestamppb.New(time.Unix(5, 0)) }, ReasonFieldRange, "scan_time"},
		{"scan time future", func(b *binwatchv1.ProcessBatch) {
			b.ScanTime = timestamppb.New(testNow.Add(MaxClockSkew + time.Second))
		}, ReasonFieldRange, "scan_time"},
		{"scan time invalid nanos", func(b *binwatchv1.ProcessBatch) { b.ScanTime.Nanos = -1 }, ReasonFieldRange, "scan_time"},
		{"visibility detail too long", func(b *binwatchv1.ProcessBatch) {
			b.Stats.VisibilityDetail = strings.Repeat("d", MaxDetailLen+1)
		}, ReasonOversizedField, "stats.visibility_detail"},
		{"negative duration", func(b *binwatchv1.ProcessBatch) { b.Stats.DurationNs = -1 }, ReasonFieldRange, "stats.duration_ns"},
		{"stats key empty", func(b *binwatchv1.ProcessBatch) { b.Stats.States[""] = 1 }, ReasonOversizedField, "stats.states"},
		{"too many records", func(b *binwatchv1.ProcessBatch) {
			r := b.Records[0]
			b.Records = make([]*binwatchv1.ProcessRecord, MaxRecords+1)
			for i := range b.Records {
				b.Records[i] = r
			}
		}, ReasonOversizedField, "records"},
		{"pid zero", func(b *binwatchv1.ProcessBatch) { b.Records[1].Pid = 0 }, ReasonFieldRange, "records[1].pid"},
		{"pid negative", func(b *binwatchv1.ProcessBatch) { b.Records[1].Pid = -5 }, ReasonFieldRange, "records[1].pid"},
		{"pid above limit", func(b *binwatchv1.ProcessBatch) { b.Records[1].Pid = MaxPID + 1 }, ReasonFieldRange, "records[1].pid"},
		{"ppid negative", func(b *binwatchv1.ProcessBatch) { b.Records[0].Ppid = -1 }, ReasonFieldRange, "records[0].ppid"},
		{"name too long", func(b *binwatchv1.ProcessBatch) { b.Records[0].Name = strings.Repeat("n", MaxNameLen+1) }, ReasonOversizedField, "records[0].name"},
		{"five uids", func(b *binwatchv1.ProcessBatch) { b.Records[0].Uids = []uint32{0, 0, 0, 0, 0} }, ReasonOversizedField, "records[0].uids"},
		{"start time invalid nanos", func(b *binwatchv1.ProcessBatch) { b.Records[0].StartTime.Nanos = 1e9 }, ReasonFieldRange, "records[0].start_time"},
		{"start time after year 9999", func(b *binwatchv1.ProcessBatch) {
			b.Records[3].StartTime = &timestamppb.Timestamp{Seconds: 253402300800}
		}, ReasonFieldRange, "records[3].start_time"},
		{"executable missing", func(b *binwatchv1.ProcessBatch) { b.Records[2].Executable = nil }, ReasonMissingField, "records[2].executable"},
		{"path too long", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.Path = bytes.Repeat([]byte("p"), MaxPathLen+1)
		}, ReasonOversizedField, "records[0].executable.path"},
		{"path with NUL", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Path = []byte("/bin/a\x00b") }, ReasonFieldShape, "records[0].executable.path"},
		{"path empty on disk", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Path = nil }, ReasonMissingField, "records[0].executable.path"},
		{"state detail too long", func(b *binwatchv1.ProcessBatch) {
			b.Records[4].Executable.StateDetail = strings.Repeat("s", MaxDetailLen+1)
		}, ReasonOversizedField, "records[4].executable.state_detail"},
		{"state unspecified", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.State = 0 }, ReasonEnum, "records[0].executable.state"},
		{"state undefined", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.State = 99 }, ReasonEnum, "records[0].executable.state"},
		{"coverage unspecified", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Coverage = 0 }, ReasonEnum, "records[0].executable.coverage"},
		{"coverage undefined", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Coverage = 3 }, ReasonEnum, "records[0].executable.coverage"},
		{"coverage reason undefined", func(b *binwatchv1.ProcessBatch) { b.Records[2].Executable.CoverageReason = 42 }, ReasonEnum, "records[2].executable.coverage_reason"},
		{"full without ssdeep", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "" }, ReasonInconsistent, "records[0].executable.coverage"},
		{"full without sha256", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Sha256 = "" }, ReasonInconsistent, "records[0].executable.coverage"},
		{"full with reason", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.CoverageReason = binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE
		}, ReasonInconsistent, "records[0].executable.coverage_reason"},
		{"degraded without reason", func(b *binwatchv1.ProcessBatch) { b.Records[2].Executable.CoverageReason = 0 }, ReasonInconsistent, "records[2].executable.coverage_reason"},
		{"degraded partial visibility", func(b *binwatchv1.ProcessBatch) {
			b.Records[2].Executable.CoverageReason = binwatchv1.CoverageReason_COVERAGE_REASON_PARTIAL_VISIBILITY
		}, ReasonInconsistent, "records[2].executable.coverage_reason"},
		{"on disk without running", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.Running = nil
			b.Records[0].Executable.Coverage = binwatchv1.Coverage_COVERAGE_DEGRADED
			b.Records[0].Executable.CoverageReason = binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR
		}, ReasonMissingField, "records[0].executable.running"},
		{"replaced without on disk", func(b *binwatchv1.ProcessBatch) {
			b.Records[1].Executable.OnDisk = nil
			b.Records[1].Executable.OnDiskSimilarity = nil
		}, ReasonMissingField, "records[1].executable.on_disk"},
		{"replaced by same inode", func(b *binwatchv1.ProcessBatch) { b.Records[1].Executable.OnDisk.Inode = 12 }, ReasonInconsistent, "records[1].executable.on_disk"},
		{"on disk with on disk file", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.OnDisk = &binwatchv1.FileHash{Sha256: shaB}
		}, ReasonInconsistent, "records[0].executable.on_disk"},
		{"memfd with on disk file", func(b *binwatchv1.ProcessBatch) {
			b.Records[3].Executable.OnDisk = &binwatchv1.FileHash{Sha256: shaB}
		}, ReasonInconsistent, "records[3].executable.on_disk"},
		{"similarity above 100", func(b *binwatchv1.ProcessBatch) { b.Records[1].Executable.OnDiskSimilarity = proto.Int32(101) }, ReasonFieldRange, "records[1].executable.on_disk_similarity"},
		{"similarity negative", func(b *binwatchv1.ProcessBatch) { b.Records[1].Executable.OnDiskSimilarity = proto.Int32(-1) }, ReasonFieldRange, "records[1].executable.on_disk_similarity"},
		{"similarity without state replaced", func(b *binwatchv1.ProcessBatch) {
			b.Records[3].Executable.OnDiskSimilarity = proto.Int32(50)
		}, ReasonInconsistent, "records[3].executable.on_disk_similarity"},
		{"similarity without on disk ssdeep", func(b *binwatchv1.ProcessBatch) { b.Records[1].Executable.OnDisk.Ssdeep = "" }, ReasonInconsistent, "records[1].executable.on_disk_similarity"},
		{"sha256 upper case", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.Running.Sha256 = strings.ToUpper(shaA)
		}, ReasonDigestShape, "records[0].executable.running.sha256"},
		{"sha256 short", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Sha256 = shaA[:63] }, ReasonDigestShape, "records[0].executable.running.sha256"},
		{"on disk sha256 not hex", func(b *binwatchv1.ProcessBatch) {
			b.Records[1].Executable.OnDisk.Sha256 = strings.Repeat("g", 64)
		}, ReasonDigestShape, "records[1].executable.on_disk.sha256"},
		{"ssdeep no colon", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "3" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep one colon", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "3:abc" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep four parts", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "3:a:b:c" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep block size 4", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "4:uG:uG" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep block size 0", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "0:uG:uG" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep block size leading zero", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "03:uG:uG" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep block size signed", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "+3:uG:uG" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep block size too large", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.Running.Ssdeep = fmt.Sprintf("%d:uG:uG", uint64(3)<<31)
		}, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep part too long", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.Running.Ssdeep = "3:" + strings.Repeat("A", MaxSSDeepPartLen+1) + ":uG"
		}, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep part not base64", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Ssdeep = "3:u-G:uG" }, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"ssdeep with file name", func(b *binwatchv1.ProcessBatch) {
			b.Records[0].Executable.Running.Ssdeep = `3:uG:uG,"/tmp/x3"`
		}, ReasonDigestShape, "records[0].executable.running.ssdeep"},
		{"size above int64", func(b *binwatchv1.ProcessBatch) { b.Records[0].Executable.Running.Size = MaxFileSize + 1 }, ReasonFieldRange, "records[0].executable.running.size"},
		{"on disk size above int64", func(b *binwatchv1.ProcessBatch) { b.Records[1].Executable.OnDisk.Size = math.MaxUint64 }, ReasonFieldRange, "records[1].executable.on_disk.size"},
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tt := range rejectCases() {
		t.Run(tt.name, func(t *testing.T) {
			b := validBatch()
			tt.mutate(b)
			_, err := decodeAt(testSubject, testHeader, marshal(t, b), testNow)
			checkRejection(t, err, tt.reason, tt.field)
		})
	}
}

func checkRejection(t *testing.T, err error, reason, field string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("decode = %v, want an error wrapping ErrInvalid", err)
	}
	if got := Reason(err); got != reason {
		t.Errorf("Reason(%v) = %q, want %q", err, got, reason)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("decode error %T is not *Error", err)
	}
	if e.Field != field {
		t.Errorf("decode error field = %q, want %q (%v)", e.Field, field, err)
	}
}

func TestDecodeRejectsMessage(t *testing.T) {
	alert := &binwatchv1.IntegrityAlert{
		Id: strings.Repeat("ab", 32), Kind: binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH,
		Severity: binwatchv1.Severity_SEVERITY_HIGH, Rule: "binwatch.disk_mismatch",
		Host:    &binwatchv1.AlertHost{Id: testHost},
		Message: "pid 1 runs /bin/x",
	}
	withUnknownRecordField := validBatch()
	withUnknownRecordField.Records[2].Executable.Running.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x01}) // field 127, varint 1
	tests := []struct {
		name    string
		subject string
		header  map[string][]string
		data    []byte
		reason  string
	}{
		{"empty payload", testSubject, testHeader, nil, ReasonEmpty},
		{"oversized payload", testSubject, testHeader, make([]byte, MaxBatchBytes+1), ReasonOversized},
		{"garbage", testSubject, testHeader, []byte("\xff\xff\xff\xff"), ReasonDecode},
		{"json", testSubject, testHeader, []byte(`{"host_id":"web-01"}`), ReasonDecode},
		{"alert with batch header", testSubject, testHeader, marshal(t, alert), ReasonUnknownField},
		{"alert header", testSubject, map[string][]string{schema.HeaderMessageType: {schema.MessageTypeIntegrityAlert}},
			marshal(t, validBatch()), ReasonWrongType},
		{"json content type", testSubject, map[string][]string{schema.HeaderContentType: {schema.ContentTypeJSON}},
			marshal(t, validBatch()), ReasonWrongType},
		{"scan stats", testSubject, nil, marshal(t, validBatch().Stats), ReasonUnknownField},
		{"timestamp", testSubject, nil, marshal(t, timestamppb.New(testNow)), ReasonUnknownField},
		{"unknown field in record", testSubject, testHeader, marshal(t, withUnknownRecordField), ReasonUnknownField},
		{"alert subject", "integrity.disk_mismatch.web-01", testHeader, marshal(t, validBatch()), ReasonSubject},
		{"wildcard subject", "binwatch.process.*", testHeader, marshal(t, validBatch()), ReasonSubject},
		{"subject of other host", "binwatch.process.db-01", testHeader, marshal(t, validBatch()), ReasonHostMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := decodeAt(tt.subject, tt.header, tt.data, testNow)
			if b != nil {
				t.Errorf("decode returned a batch with error %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("decode = %v, want an error wrapping ErrInvalid", err)
			}
			if got := Reason(err); got != tt.reason {
				t.Errorf("Reason(%v) = %q, want %q", err, got, tt.reason)
			}
		})
	}
}

func TestDecodeUnknownFieldPath(t *testing.T) {
	b := validBatch()
	b.Records[2].Executable.Running.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x01})
	_, err := decodeAt(testSubject, testHeader, marshal(t, b), testNow)
	checkRejection(t, err, ReasonUnknownField, "records[2].executable.running")
}

func TestErrorQuotesBoundedValue(t *testing.T) {
	b := validBatch()
	b.BootId = "x\n" + strings.Repeat("\xff", 10000)
	// proto3 strings must be UTF-8, so check the message through Validate.
	err := validateAt(b, testHost, testNow)
	msg := err.Error()
	if strings.IndexByte(msg, '\n') >= 0 || strings.IndexByte(msg, 0xff) >= 0 {
		t.Errorf("error message %q contains an unescaped byte of the value", msg)
	}
	if len(msg) > 400 {
		t.Errorf("error message is %d bytes, want at most 400: %q", len(msg), msg)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("boom"), ReasonOther},
		{fmt.Errorf("wrapped: %w", reject(ReasonDecode, "", "x")), ReasonDecode},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestDecodeUsesWallClock(t *testing.T) {
	b := validBatch()
	b.ScanTime = timestamppb.Now()
	if _, err := Decode(testSubject, testHeader, marshal(t, b)); err != nil {
		t.Errorf("Decode batch scanned now: %v", err)
	}
	b.ScanTime = timestamppb.New(time.Now().Add(MaxClockSkew + time.Hour))
	_, err := Decode(testSubject, testHeader, marshal(t, b))
	checkRejection(t, err, ReasonFieldRange, "scan_time")
}

func TestCheckSSDeepReferenceDigests(t *testing.T) {
	tool, err := exec.LookPath("ssdeep")
	if err != nil {
		t.Skip("ssdeep tool not installed (Debian package ssdeep); reference digests unavailable")
	}
	dir := t.TempDir()
	sizes := []int{0, 1, 3, 100, 4096, 70000, 1 << 20}
	var files []string
	for _, n := range sizes {
		p := filepath.Join(dir, fmt.Sprintf("f%d", n))
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + i/251)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if exe, err := os.Executable(); err == nil {
		files = append(files, exe)
	}

	out, err := exec.Command(tool, append([]string{"-s", "-c"}, files...)...).Output()
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")[1:]
	if len(lines) != len(files) {
		t.Fatalf("ssdeep printed %d digests for %d files:\n%s", len(lines), len(files), out)
	}
	for _, line := range lines {
		digest, _, _ := strings.Cut(line, ",")
		if why := checkSSDeep(digest); why != "" {
			t.Errorf("checkSSDeep(%q) = %q, want a valid digest", digest, why)
		}
	}
}
