// Command binwatch-collector scans the host's processes, hashes their
// running executables and publishes the records to NATS on
// binwatch.process.<host>. It needs root, or CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH, to see every process; it listens on no socket.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"

	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/internal/hostcollector"
	"github.com/binwatch/binwatch/internal/natsconn"
	"github.com/binwatch/binwatch/internal/startup"
)

// version is reported by the micro service.
var version = "0.1.0"

type config struct {
	NATS        natsconn.Options
	HostID      string        `envconfig:"HOST_ID"`
	Interval    time.Duration `envconfig:"INTERVAL" default:"30s"`
	Once        bool          `ignored:"true"`
	MaxFileSize int64         `envconfig:"MAX_FILE_SIZE" default:"536870912"`
	Proc        string        `envconfig:"PROC" default:"/proc"`
	LogFormat   string        `envconfig:"LOG_FORMAT" default:"text"`
}

func main() { startup.Main("binwatch-collector", run) }

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	c.NATS.URL = "nats://127.0.0.1:4222"
	if err := envconfig.Process("BINWATCH", &c); err != nil {
		return c, startup.Usagef("%v", err)
	}
	fs := flag.NewFlagSet("binwatch-collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.NATS.RegisterFlags(fs, "NATS server URL(s), comma-separated")
	fs.StringVar(&c.HostID, "host-id", c.HostID, "host token [A-Za-z0-9_-]; default: the host name with other bytes mapped to _ (BINWATCH_HOST_ID)")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between scans, 1s to 24h (BINWATCH_INTERVAL)")
	fs.BoolVar(&c.Once, "once", false, "scan once, publish, print a summary and exit")
	fs.Int64Var(&c.MaxFileSize, "max-file-size", c.MaxFileSize, "largest executable hashed, in bytes; larger ones are reported as too_large (BINWATCH_MAX_FILE_SIZE)")
	fs.StringVar(&c.Proc, "proc", c.Proc, "procfs mount to scan (BINWATCH_PROC)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json (BINWATCH_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, startup.Usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return c, startup.Usagef("unexpected argument %q", fs.Arg(0))
	}
	if c.Interval < time.Second || c.Interval > 24*time.Hour {
		return c, startup.Usagef("--interval (BINWATCH_INTERVAL) is %s, want 1s to 24h", c.Interval)
	}
	if c.MaxFileSize < 1 {
		return c, startup.Usagef("--max-file-size (BINWATCH_MAX_FILE_SIZE) is %d, want at least 1 byte", c.MaxFileSize)
	}
	if c.NATS.URL == "" {
		return c, startup.Usagef("--nats-url (BINWATCH_NATS_URL) is empty, want a NATS URL such as nats://127.0.0.1:4222")
	}
	if err := c.NATS.Validate(); err != nil {
		return c, startup.Usagef("%v", err)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := startup.NewLogger(c.LogFormat, stderr)
	if err != nil {
		return err
	}
	hostID, hostname, err := startup.HostID(c.HostID)
	if err != nil {
		return err
	}
	logger = logger.With("host", hostID)
	var extra []nats.Option
	if c.Once {
		extra = append(extra, nats.RetryOnFailedConnect(false))
	}
	col, err := hostcollector.Start(hostcollector.Options{
		ProcRoot: c.Proc, MaxFileSize: c.MaxFileSize, NATS: c.NATS,
		HostID: hostID, Hostname: hostname, Version: version, Connect: extra,
	}, logger)
	if err != nil {
		return err
	}
	defer col.Close()
	logger.Info("collector started", "nats", natsconn.Redact(c.NATS.URL), "interval", c.Interval,
		"collector_id", col.Publisher.CollectorID(), "proc", c.Proc)
	if c.Once {
		r := collector.ScanOnce(ctx, col.Scanner, col.Publisher)
		col.Report(r)
		if r.Err != nil {
			return r.Err
		}
		collector.WriteSummary(stdout, r.Scan.Stats, nil)
		return nil
	}
	err = collector.Run(ctx, col.Scanner, col.Publisher, c.Interval, col.Rescan, col.Report)
	logger.Info("collector stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
