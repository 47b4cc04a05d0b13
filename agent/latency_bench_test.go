package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/agent/ingest"
	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// benchRecords is the number of records in the benchmark batch, about a
// busy server's processes. A machine with fewer has its real records
// repeated under new pids.
const benchRecords = 250

// realisticBatch scans this machine's /proc and returns the first batch
// the publisher would send under a 1 MiB max payload, with benchRecords
// records.
func realisticBatch(b *testing.B) *binwatchv1.ProcessBatch {
	b.Helper()
	s, err := collector.NewScanner(collector.Options{})
	if err != nil {
		b.Fatal(err)
	}
	scan, err := s.Scan(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	real := scan.Records
	for i := 0; len(scan.Records) < benchRecords; i++ {
		r := proto.Clone(real[i%len(real)]).(*binwatchv1.ProcessRecord)
		r.Pid = int32(100000 + i)
		scan.Records = append(scan.Records, r)
	}
	scan.Records = scan.Records[:benchRecords]
	p, err := collector.NewPublisher(nil, "bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	batches, _ := p.Split(scan, 1<<20)
	return batches[0]
}

// BenchmarkPublishToReceive measures one message from publish to the
// receiver's callback over the embedded server, in-process and over
// loopback TCP: a ProcessBatch encoded by the publisher and decoded and
// validated by the agent's ingest, beside raw bytes of the same size.
// Each iteration is one message; the next is sent after the previous
// arrived, so the numbers are latency, not throughput.
func BenchmarkPublishToReceive(b *testing.B) {
	batch := realisticBatch(b)
	size := proto.Size(batch)
	srv, err := agent.StartEmbedded(agent.EmbeddedOptions{
		Listen: "127.0.0.1:0", StoreDir: filepath.Join(b.TempDir(), "js"), Name: "bench",
	}, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	b.Logf("batch: %d records, %d bytes", len(batch.Records), size)

	for _, transport := range []string{"inprocess", "tcp"} {
		for _, payload := range []string{"batch", "raw"} {
			b.Run(fmt.Sprintf("%s/%s", transport, payload), func(b *testing.B) {
				pubConn := benchConnect(b, srv, transport)
				subConn := benchConnect(b, srv, transport)
				benchLatency(b, pubConn, subConn, batch, payload == "batch", size)
			})
		}
	}
}

func benchConnect(b *testing.B, srv *server.Server, transport string) *nats.Conn {
	b.Helper()
	var opts []nats.Option
	if transport == "inprocess" {
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

func benchLatency(b *testing.B, pubConn, subConn *nats.Conn, batch *binwatchv1.ProcessBatch, decode bool, size int) {
	subject := schema.ProcessSubject(batch.HostId)
	arrived := make(chan time.Time, 1)
	_, err := subConn.Subscribe(subject, func(m *nats.Msg) {
		if decode {
			if _, err := ingest.Decode(m.Subject, m.Header, m.Data); err != nil {
				b.Errorf("decoding the benchmark batch: %v", err)
			}
		}
		arrived <- time.Now()
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := subConn.Flush(); err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, size)
	latencies := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		msg := nats.NewMsg(subject)
		if decode {
			msg.Header.Set(schema.HeaderContentType, schema.ContentTypeProtobuf)
			msg.Header.Set(schema.HeaderMessageType, schema.MessageTypeProcessBatch)
			data, err := proto.Marshal(batch)
			if err != nil {
				b.Fatal(err)
			}
			msg.Data = data
		} else {
			msg.Data = raw
		}
		if err := pubConn.PublishMsg(msg); err != nil {
			b.Fatal(err)
		}
		if err := pubConn.Flush(); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-arrived:
			latencies = append(latencies, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("message not received within 10s")
		}
	}
	b.StopTimer()
	slices.Sort(latencies)
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50-µs", 0.50}, {"p99-µs", 0.99}, {"p99.9-µs", 0.999}} {
		i := int(q.p * float64(len(latencies)-1))
		b.ReportMetric(float64(latencies[i].Nanoseconds())/1e3, q.name)
	}
}
