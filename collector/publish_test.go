package collector

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func startServer(t *testing.T, maxPayload int32) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// syntheticScan returns n records shaped like real ones: a path, argv,
// both digests and identity.
func syntheticScan(n int) *Scan {
	s := &Scan{Seq: 7, Time: time.Now(), BootID: "boot", Stats: &binwatchv1.ScanStats{ProcessesSeen: uint32(n)}}
	for i := 0; i < n; i++ {
		s.Records = append(s.Records, &binwatchv1.ProcessRecord{
			Pid:  int32(i + 1),
			Ppid: 1,
			Name: "worker",
			Argv: [][]byte{[]byte("/usr/sbin/worker"), []byte("--id"), []byte(strings.Repeat("x", i%200))},
			Uids: []uint32{0, 0, 0, 0},
			Executable: &binwatchv1.Executable{
				Path: []byte("/usr/sbin/worker"),
				Running: &binwatchv1.FileHash{
					Sha256: strings.Repeat("ab", 32),
					Ssdeep: "96:" + strings.Repeat("A", 64) + ":" + strings.Repeat("B", 32),
					Size:   123456, Device: 2049, Inode: uint64(i), MtimeNs: 1, CtimeNs: 2, Nlink: 1,
				},
				State:    binwatchv1.ExecutableState_EXECUTABLE_STATE_ON_DISK,
				Coverage: binwatchv1.Coverage_COVERAGE_FULL,
			},
		})
	}
	return s
}

func TestPublishSplitsUnderSmallMaxPayload(t *testing.T) {
	const maxPayload = 4096
	nc := startServer(t, maxPayload)
	sub, err := nc.SubscribeSync(schema.ProcessSubject("host-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(nc, "host-1", "host-1.example")
	if err != nil {
		t.Fatal(err)
	}
	scan := syntheticScan(3000)
	// One record whose path alone exceeds the payload: it must be counted.
	huge := proto.Clone(scan.Records[0]).(*binwatchv1.ProcessRecord)
	huge.Pid = 99999
	huge.Executable.Path = bytes.Repeat([]byte("p"), 4096)
	scan.Records = append(scan.Records, huge)
	var dropped []int32
	pub.OnOversized(func(rec *binwatchv1.ProcessRecord, err error) { dropped = append(dropped, rec.Pid) })

	res, err := pub.Publish(context.Background(), scan)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if res.Oversized != 1 || len(dropped) != 1 || dropped[0] != 99999 {
		t.Fatalf("oversized = %d, reported %v, want 1 and [99999]", res.Oversized, dropped)
	}
	if res.Batches < 2 {
		t.Fatalf("batches = %d, want a split", res.Batches)
	}

	seen := map[int32]bool{}
	for i := 0; i < res.Batches; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("batch %d of %d: %v", i, res.Batches, err)
		}
		b := &binwatchv1.ProcessBatch{}
		if err := proto.Unmarshal(m.Data, b); err != nil {
			t.Fatal(err)
		}
		if b.BatchIndex != uint32(i) || b.BatchCount != uint32(res.Batches) {
			t.Errorf("batch %d: index %d count %d, want %d and %d", i, b.BatchIndex, b.BatchCount, i, res.Batches)
		}
		if b.GetStats().GetRecordsOversized() != 1 {
			t.Errorf("batch %d: records_oversized = %d, want 1", i, b.GetStats().GetRecordsOversized())
		}
		if b.HostId != "host-1" || b.Hostname != "host-1.example" || b.ScanSeq != 7 || b.CollectorId != pub.CollectorID() {
			t.Errorf("batch %d header = %q %q %d %q", i, b.HostId, b.Hostname, b.ScanSeq, b.CollectorId)
		}
		for _, r := range b.Records {
			seen[r.Pid] = true
		}
	}
	if len(seen) != 3000 {
		t.Errorf("received %d distinct records, want 3000", len(seen))
	}
}

func TestSplitDropsArgvBeforeRecord(t *testing.T) {
	pub, err := NewPublisher(nil, "h", "h")
	if err != nil {
		t.Fatal(err)
	}
	scan := syntheticScan(1)
	scan.Records[0].Argv = [][]byte{bytes.Repeat([]byte("a"), 8000)}
	batches, oversized := pub.Split(scan, 4096)
	if oversized != 0 {
		t.Fatalf("oversized = %d, want 0: the record fits without its argv", oversized)
	}
	rec := batches[0].Records[0]
	if len(rec.Argv) != 0 || !rec.ArgvTruncated {
		t.Errorf("argv = %d args, truncated %v, want none and true", len(rec.Argv), rec.ArgvTruncated)
	}
	if len(scan.Records[0].Argv) != 1 {
		t.Error("Split changed the caller's record")
	}
}

func TestSplitEmptyScanSendsOneBatch(t *testing.T) {
	pub, err := NewPublisher(nil, "h", "h")
	if err != nil {
		t.Fatal(err)
	}
	batches, _ := pub.Split(syntheticScan(0), 1<<20)
	if len(batches) != 1 || batches[0].BatchCount != 1 {
		t.Fatalf("Split(empty) = %d batches, want 1", len(batches))
	}
}

func TestNewPublisherRejectsBadHost(t *testing.T) {
	for _, host := range []string{"", "a.b", "a*", "a b"} {
		if _, err := NewPublisher(nil, host, host); err == nil {
			t.Errorf("NewPublisher(%q) = nil error, want one", host)
		}
	}
}
