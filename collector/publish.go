package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// headerReserve is the room, in bytes, kept in every message for the
// headers and for the batch fields set after splitting (index and count
// varints). The two headers encode to about 90 bytes.
const headerReserve = 256

// flushTimeout bounds the wait for the server to confirm a scan's batches.
const flushTimeout = 30 * time.Second

// minBatchBudget is the smallest max payload the publisher works with.
const minBatchBudget = 1024

// ErrRecordTooLarge is wrapped by the error reported for a record that
// does not fit any message, even with its command line dropped.
var ErrRecordTooLarge = errors.New("record larger than the max payload")

// Publisher sends scans as ProcessBatch messages on
// binwatch.process.<host>, split under the connection's max payload.
type Publisher struct {
	nc          *nats.Conn
	hostID      string
	hostname    string
	collectorID string
	// oversized, when set, receives each record that was dropped.
	oversized func(rec *binwatchv1.ProcessRecord, err error)
}

// NewPublisher returns a Publisher for host token hostID. hostname is the
// unmapped name carried in every batch.
func NewPublisher(nc *nats.Conn, hostID, hostname string) (*Publisher, error) {
	if err := schema.ValidateHostToken(hostID); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("collector: generating collector id: %w", err)
	}
	return &Publisher{nc: nc, hostID: hostID, hostname: hostname, collectorID: hex.EncodeToString(id[:])}, nil
}

// OnOversized sets a function that receives every record dropped because
// it cannot fit a message.
func (p *Publisher) OnOversized(f func(rec *binwatchv1.ProcessRecord, err error)) { p.oversized = f }

// CollectorID returns the random id this publisher puts in every batch.
func (p *Publisher) CollectorID() string { return p.collectorID }

// PublishResult counts what one Publish sent.
type PublishResult struct {
	Batches   int
	Records   int
	Oversized int
	Bytes     int
}

// Publish splits scan into batches and publishes them, then flushes the
// connection so that an error is returned rather than buffered. A record
// larger than a message loses its command line first. If it still does
// not fit, it is dropped, counted in the batch stats and passed to the
// OnOversized function.
func (p *Publisher) Publish(ctx context.Context, scan *Scan) (PublishResult, error) {
	batches, oversized := p.Split(scan, p.nc.MaxPayload())
	res := PublishResult{Batches: len(batches), Oversized: oversized}
	for _, b := range batches {
		data, err := proto.Marshal(b)
		if err != nil {
			return res, fmt.Errorf("collector: encoding batch %d of scan %d: %w", b.BatchIndex, b.ScanSeq, err)
		}
		msg := nats.NewMsg(schema.ProcessSubject(p.hostID))
		msg.Header.Set(schema.HeaderContentType, schema.ContentTypeProtobuf)
		msg.Header.Set(schema.HeaderMessageType, schema.MessageTypeProcessBatch)
		msg.Data = data
		if err := p.nc.PublishMsg(msg); err != nil {
			return res, fmt.Errorf("collector: publishing batch %d/%d of scan %d on %s: %w",
				b.BatchIndex+1, b.BatchCount, b.ScanSeq, msg.Subject, err)
		}
		res.Records += len(b.Records)
		res.Bytes += len(data)
	}
	if p.nc.IsReconnecting() {
		// A flush would wait for the server; the batches stay in the
		// reconnect buffer and are sent if the connection comes back.
		return res, fmt.Errorf("collector: scan %d buffered, not confirmed: %w", scan.Seq, nats.ErrConnectionReconnecting)
	}
	fctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if err := p.nc.FlushWithContext(fctx); err != nil {
		return res, fmt.Errorf("collector: flushing scan %d: %w", scan.Seq, err)
	}
	return res, nil
}

// Split packs scan's records into batches whose encoding, with headers,
// stays under maxPayload bytes. It returns the batches (at least one, so
// that an empty scan is still reported) and the number of records dropped.
func (p *Publisher) Split(scan *Scan, maxPayload int64) ([]*binwatchv1.ProcessBatch, int) {
	budget := int(maxPayload) - headerReserve
	if budget < minBatchBudget {
		budget = minBatchBudget
	}
	stats := proto.Clone(scan.Stats).(*binwatchv1.ScanStats)
	newBatch := func() *binwatchv1.ProcessBatch {
		return &binwatchv1.ProcessBatch{
			HostId:      p.hostID,
			Hostname:    p.hostname,
			BootId:      scan.BootID,
			ScanSeq:     scan.Seq,
			ScanTime:    timestamppb.New(scan.Time),
			Stats:       stats,
			CollectorId: p.collectorID,
		}
	}
	// Every batch carries the same stats. records_oversized is known only
	// at the end, so room for it (a tag and a varint of up to 5 bytes) is
	// kept.
	base := proto.Size(newBatch()) + 8
	var batches []*binwatchv1.ProcessBatch
	cur, size := newBatch(), base
	oversized := 0
	for _, rec := range scan.Records {
		n := recordSize(rec)
		if base+n > budget && len(rec.Argv) > 0 {
			rec = proto.Clone(rec).(*binwatchv1.ProcessRecord)
			rec.Argv = nil
			rec.ArgvTruncated = true
			n = recordSize(rec)
		}
		if base+n > budget {
			oversized++
			if p.oversized != nil {
				p.oversized(rec, fmt.Errorf("pid %d: %d bytes with a budget of %d: %w", rec.Pid, base+n, budget, ErrRecordTooLarge))
			}
			continue
		}
		if size+n > budget {
			batches = append(batches, cur)
			cur, size = newBatch(), base
		}
		cur.Records = append(cur.Records, rec)
		size += n
	}
	batches = append(batches, cur)
	stats.RecordsOversized = uint32(oversized)
	for i, b := range batches {
		b.BatchIndex = uint32(i)
		b.BatchCount = uint32(len(batches))
	}
	return batches, oversized
}

// recordSize is the encoded size of rec inside a batch: the record, its
// field tag and its length prefix.
func recordSize(rec *binwatchv1.ProcessRecord) int {
	n := proto.Size(rec)
	return n + 1 + varintLen(uint64(n))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// HostID returns the host token the publisher sends as.
func (p *Publisher) HostID() string { return p.hostID }
