// Package hostcollector starts a collector as both binaries run one. That
// is a scanner, a publisher on its own NATS connection and its micro
// service, with a full rescan after every reconnect. It also logs what the
// collector library reports through its hooks.
package hostcollector

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/internal/lograte"
	"github.com/binwatch/binwatch/internal/natsconn"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Options configure Start.
type Options struct {
	ProcRoot    string
	MaxFileSize int64
	NATS        natsconn.Options
	// HostID is the host token and Hostname the unmapped host name.
	HostID, Hostname string
	// Version is reported by the micro service.
	Version string
	// Connect are extra options for the NATS connection.
	Connect []nats.Option
}

// Collector is a running collector. Close releases it.
type Collector struct {
	Scanner   *collector.Scanner
	Publisher *collector.Publisher
	Service   *collector.Service
	Conn      *nats.Conn
	// Rescan receives after each reconnect, so that Run sends a full scan
	// in place of any records lost meanwhile.
	Rescan chan struct{}
	log    *slog.Logger
}

// Start sets up a collector and connects it to NATS.
func Start(o Options, logger *slog.Logger) (*Collector, error) {
	scanner, err := collector.NewScanner(collector.Options{ProcRoot: o.ProcRoot, MaxFileSize: o.MaxFileSize})
	if err != nil {
		return nil, err
	}
	limit := lograte.New(time.Minute)
	scanner.OnProcessError(func(pid int, err error) {
		if limit.Allow("process") {
			logger.Warn("process skipped", "pid", pid, "error", err)
		}
	})

	c := &Collector{Scanner: scanner, Rescan: make(chan struct{}, 1), log: logger}
	hooks := natsconn.Hooks{Reconnected: func() {
		select {
		case c.Rescan <- struct{}{}:
		default:
		}
	}}
	c.Conn, err = natsconn.Connect(o.NATS, "binwatch-collector "+o.HostID, logger, hooks, o.Connect...)
	if err != nil {
		return nil, err
	}
	c.Publisher, err = collector.NewPublisher(c.Conn, o.HostID, o.Hostname)
	if err != nil {
		c.Conn.Close()
		return nil, err
	}
	c.Publisher.OnOversized(func(rec *binwatchv1.ProcessRecord, err error) {
		logger.Error("record dropped: larger than the max payload", "pid", rec.Pid, "error", err)
	})
	c.Service, err = collector.StartService(c.Conn, o.HostID, o.Version)
	if err != nil {
		c.Conn.Close()
		return nil, err
	}
	return c, nil
}

// Report adds a scan to the service's counters and logs it.
func (c *Collector) Report(r collector.ScanReport) {
	c.Service.Record(r)
	if r.Err != nil {
		c.log.Error("scan failed", "error", r.Err)
		return
	}
	c.log.Info("scan published", "scan", r.Scan.Seq, "records", r.Publish.Records,
		"batches", r.Publish.Batches, "bytes", r.Publish.Bytes,
		"duration", time.Duration(r.Scan.Stats.DurationNs))
}

// Close stops the micro service and closes the connection.
func (c *Collector) Close() {
	if err := c.Service.Stop(); err != nil {
		c.log.Warn("stopping the collector service failed", "error", err)
	}
	c.Conn.Close()
}
