package rules

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/agent/baseline"
	"github.com/binwatch/binwatch/internal/fuzzyhash"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

const testHost = "web-01"

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func sha(n int) string { return fmt.Sprintf("%064x", n) }

// fileHash returns a running or on-disk file with the given SHA-256 and
// ssdeep digest; inode distinguishes files.
func fileHash(inode uint64, sha256, ssdeep string) *binwatchv1.FileHash {
	return &binwatchv1.FileHash{Sha256: sha256, Ssdeep: ssdeep, Size: 4096 + inode, Device: 2049,
		Inode: inode, MtimeNs: 1700000000e9 + int64(inode), CtimeNs: 1700000000e9 + int64(inode), Nlink: 1}
}

// onDisk returns a record of pid running path with full coverage.
func onDisk(pid int32, path string, f *binwatchv1.FileHash) *binwatchv1.ProcessRecord {
	return &binwatchv1.ProcessRecord{
		Pid: pid, Ppid: 1, Name: filepath.Base(path), StartTicks: uint64(pid) * 100,
		StartTime: timestamppb.New(testNow.Add(-time.Hour)),
		Executable: &binwatchv1.Executable{
			Path: []byte(path), Running: f,
			State:    binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK,
			Coverage: binwatchv1.Coverage_COVERAGE_FULL,
		},
	}
}

func degraded(r *binwatchv1.ProcessRecord, reason binwatchv1.CoverageReason) *binwatchv1.ProcessRecord {
	r.Executable.Coverage = binwatchv1.Coverage_COVERAGE_DEGRADED
	r.Executable.CoverageReason = reason
	r.Executable.CoverageDetail = "detail of " + reason.String()
	return r
}

func batch(records ...*binwatchv1.ProcessRecord) *binwatchv1.ProcessBatch {
	return &binwatchv1.ProcessBatch{
		HostId: testHost, Hostname: "web-01.example.org", BootId: "0f6e1a6c-6a1f-4a53-9d2f-1c1c0e3f2a11",
		ScanSeq: 1, BatchCount: 1, ScanTime: timestamppb.New(testNow), CollectorId: "c0ffee",
		Stats:   &binwatchv1.ScanStats{ProcessesSeen: uint32(len(records))},
		Records: records,
	}
}

// newEngine returns an engine with threshold over a store in a fresh
// directory, and the store's path.
func newEngine(t testing.TB, threshold int) (*Engine, *baseline.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "baselines.json")
	store, err := baseline.Open(path, baseline.Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{SimilarityThreshold: threshold, Now: func() time.Time { return testNow }}, store)
	if err != nil {
		t.Fatal(err)
	}
	return e, store, path
}

func digest(t testing.TB, data []byte) string {
	t.Helper()
	h := fuzzyhash.New()
	h.Write(data)
	d, err := h.Digest()
	if err != nil {
		t.Fatalf("ssdeep digest of %d bytes: %v", len(data), err)
	}
	return d
}

func compare(t testing.TB, a, b string) int {
	t.Helper()
	s, err := fuzzyhash.Compare(a, b)
	if err != nil {
		t.Fatalf("fuzzyhash.Compare(%q, %q): %v", a, b, err)
	}
	return s
}

// similarPair returns the ssdeep digests of a pseudo-random buffer and of
// a copy with part of it rewritten, and their score, which lies between
// lo and hi inclusive.
func similarPair(t testing.TB, lo, hi int) (a, b string, score int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	orig := make([]byte, 64<<10)
	for i := range orig {
		orig[i] = byte(rng.Uint32())
	}
	a = digest(t, orig)
	for changed := 256; changed < len(orig); changed += 512 {
		mod := append([]byte(nil), orig...)
		for i := 0; i < changed; i++ {
			mod[len(mod)/3+i] = byte(rng.Uint32())
		}
		b = digest(t, mod)
		if s := compare(t, a, b); s >= lo && s <= hi {
			return a, b, s
		}
	}
	t.Fatalf("no rewrite of a 64 KiB buffer gives an ssdeep score from %d to %d", lo, hi)
	return "", "", 0
}

func kinds(alerts []*binwatchv1.IntegrityAlert) []binwatchv1.AlertKind {
	var k []binwatchv1.AlertKind
	for _, a := range alerts {
		k = append(k, a.GetKind())
	}
	return k
}

func wantAlerts(t *testing.T, what string, alerts []*binwatchv1.IntegrityAlert, want ...binwatchv1.AlertKind) {
	t.Helper()
	got := kinds(alerts)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: alert kinds = %v, want %v; alerts: %v", what, got, want, alerts)
	}
}
