// Command binwatch-collector scans the host's processes, hashes their
// running executables and publishes the records to NATS on
// binwatch.process.<host>. It needs root, or CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH, to see every process; it listens on no socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"

	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/internal/lograte"
	"github.com/binwatch/binwatch/internal/natsconn"
	"github.com/binwatch/binwatch/internal/startup"
	"github.com/binwatch/binwatch/schema/binwatchv1"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	startup.ExitAfterGrace(ctx, "binwatch-collector")
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "binwatch-collector:", err)
	}
	os.Exit(startup.ExitCode(err))
}

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
	scanner, err := collector.NewScanner(collector.Options{ProcRoot: c.Proc, MaxFileSize: c.MaxFileSize})
	if err != nil {
		return err
	}
	limit := lograte.New(time.Minute)
	scanner.OnProcessError(func(pid int, err error) {
		if limit.Allow("process") {
			logger.Warn("process skipped", "pid", pid, "error", err)
		}
	})

	rescan := make(chan struct{}, 1)
	hooks := natsconn.Hooks{Reconnected: func() {
		select {
		case rescan <- struct{}{}:
		default:
		}
	}}
	var extra []nats.Option
	if c.Once {
		extra = append(extra, nats.RetryOnFailedConnect(false))
	}
	nc, err := natsconn.Connect(c.NATS, "binwatch-collector "+hostID, logger, hooks, extra...)
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := collector.NewPublisher(nc, hostID, hostname)
	if err != nil {
		return err
	}
	pub.OnOversized(func(rec *binwatchv1.ProcessRecord, err error) {
		logger.Error("record dropped: larger than the max payload", "pid", rec.Pid, "error", err)
	})
	svc, err := collector.StartService(nc, hostID, version)
	if err != nil {
		return err
	}
	defer svc.Stop()
	logger.Info("collector started", "nats", natsconn.Redact(c.NATS.URL), "interval", c.Interval,
		"collector_id", pub.CollectorID(), "proc", c.Proc)
	report := func(r collector.ScanReport) {
		svc.Record(r)
		if r.Err != nil {
			logger.Error("scan failed", "error", r.Err)
			return
		}
		logger.Info("scan published", "scan", r.Scan.Seq, "records", r.Publish.Records,
			"batches", r.Publish.Batches, "bytes", r.Publish.Bytes, "duration", time.Duration(r.Scan.Stats.DurationNs))
	}
	if c.Once {
		r := collector.ScanOnce(ctx, scanner, pub)
		report(r)
		if r.Err != nil {
			return r.Err
		}
		collector.WriteSummary(stdout, r.Scan.Stats, nil)
		return nil
	}
	err = collector.Run(ctx, scanner, pub, c.Interval, rescan, report)
	logger.Info("collector stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
