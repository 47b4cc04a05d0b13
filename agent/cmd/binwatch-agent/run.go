package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/internal/hostcollector"
	"github.com/binwatch/binwatch/internal/natsconn"
	"github.com/binwatch/binwatch/internal/startup"
	"github.com/binwatch/binwatch/schema"
)

// Time limits of --once: for the scan to be evaluated, and for its alerts
// to be acknowledged.
const (
	onceScanTimeout    = 5 * time.Minute
	onceDeliverTimeout = time.Minute
)

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
	logger = logger.With("agent_host", hostID)
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}

	embedded := c.NATS.URL == ""
	collect := embedded
	if c.Collect.IsSet {
		collect = c.Collect.Value
	}
	createStream := embedded && c.Leaf.URL == ""
	if c.CreateStream.IsSet {
		createStream = c.CreateStream.Value
	}
	url := c.NATS.URL
	opts := c.NATS
	if embedded {
		// The agent and the in-process collector log in with a password
		// made for this run; everyone else is anonymous and may only
		// watch alerts.
		password, err := randomPassword()
		if err != nil {
			return err
		}
		opts = natsconn.Options{User: "binwatch", Password: password}
		recordsHost := ""
		if !collect {
			recordsHost = hostID
			logger.Warn("any local user may publish records for this host to the embedded server; use a nats-server with users, such as server-config/leaf-host.conf, to prevent that", "subject", schema.ProcessSubject(hostID))
		}
		// nats-server keeps its store in a "jetstream" directory inside.
		storeDir := c.StateDir
		if c.Leaf.URL != "" {
			// A leaf node forwards alerts to the hub's stream. A local
			// JetStream would acknowledge them in the hub's place.
			storeDir = ""
		}
		// The server keeps only a bcrypt hash of the password.
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("hashing the embedded server password: %w", err)
		}
		srv, err := agent.StartEmbedded(agent.EmbeddedOptions{
			Listen: c.Listen, StoreDir: storeDir, Name: "binwatch-" + hostID, Leaf: c.Leaf,
			InternalUser: opts.User, InternalPassword: string(hash), AnonymousRecordsHost: recordsHost,
		}, logger)
		if err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
			logger.Info("embedded nats-server stopped")
		}()
		url = srv.ClientURL()
		if !isLoopback(c.Listen) {
			logger.Warn("the embedded server listens beyond this host: anyone who can reach it may read alerts without credentials", "listen", c.Listen)
		}
		logger.Info("embedded nats-server started", "url", url, "jetstream", storeDir != "", "leaf", natsconn.Redact(c.Leaf.URL))
	}

	opts.URL = url
	nc, err := natsconn.Connect(opts, "binwatch-agent "+hostID, logger, natsconn.Hooks{})
	if err != nil {
		return err
	}
	defer nc.Close()
	if createStream {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = agent.EnsureStream(sctx, js, c.StreamReplicas)
		cancel()
		if err != nil {
			return err
		}
		logger.Info("stream ready", "stream", agent.StreamName, "subjects", schema.AlertSubjectAll)
	}

	a, err := agent.New(nc, agent.Config{
		StateDir:            c.StateDir,
		Subject:             c.Subject,
		SimilarityThreshold: c.SimilarityThreshold,
		AlertAck:            c.AlertAck,
		ServiceName:         "binwatch-agent",
		HostID:              hostID,
	}, logger.With("component", "agent"))
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer a.Close()

	if !collect {
		if c.Once {
			return onceWithoutCollector(ctx, a, stdout)
		}
		<-ctx.Done()
		return nil
	}

	// The in-process collector has its own connection, like a separate
	// binwatch-collector would.
	col, err := hostcollector.Start(hostcollector.Options{
		ProcRoot: c.Proc, MaxFileSize: c.MaxFileSize, NATS: opts,
		HostID: hostID, Hostname: hostname, Version: agent.Version,
	}, logger.With("component", "collector"))
	if err != nil {
		return err
	}
	defer col.Close()
	if c.Once {
		return once(ctx, a, col, stdout)
	}
	err = collector.Run(ctx, col.Scanner, col.Publisher, c.Interval, col.Rescan, col.Report)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// once scans, waits until the agent has evaluated the scan and delivered
// every alert, and prints a summary.
func once(ctx context.Context, a *agent.Agent, col *hostcollector.Collector, stdout io.Writer) error {
	p := col.Publisher
	r := collector.ScanOnce(ctx, col.Scanner, p)
	col.Report(r)
	if r.Err != nil {
		return r.Err
	}
	wctx, cancel := context.WithTimeout(ctx, onceScanTimeout)
	defer cancel()
	if err := a.WaitScan(wctx, p.HostID(), p.CollectorID(), r.Scan.Seq); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, onceDeliverTimeout)
	defer cancel()
	if err := a.WaitDelivered(dctx); err != nil {
		return err
	}
	collector.WriteSummary(stdout, r.Scan.Stats, a.Counters().Alerts)
	return nil
}

func onceWithoutCollector(ctx context.Context, a *agent.Agent, stdout io.Writer) error {
	wctx, cancel := context.WithTimeout(ctx, onceScanTimeout)
	defer cancel()
	if err := a.WaitAnyScan(wctx); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, onceDeliverTimeout)
	defer cancel()
	if err := a.WaitDelivered(dctx); err != nil {
		return err
	}
	c := a.Counters()
	fmt.Fprintf(stdout, "batches received: %d\nrecords received: %d\nalerts: %v\n", c.BatchesReceived, c.RecordsReceived, c.Alerts)
	return nil
}

// randomPassword returns 32 hex digits from the system's random source.
func randomPassword() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating the embedded server password: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// isLoopback reports whether listen, host:port, binds only loopback
// addresses. An empty host or 0.0.0.0 binds every interface.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
