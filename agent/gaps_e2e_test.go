package agent_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// restartableServer is an embedded server that can be stopped and started
// again on the same port and JetStream store.
type restartableServer struct {
	t      *testing.T
	listen string
	store  string
	srv    *server.Server
}

func newRestartableServer(t *testing.T) *restartableServer {
	t.Helper()
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	r := &restartableServer{t: t, listen: listen, store: filepath.Join(t.TempDir(), "js")}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartableServer) start() {
	r.t.Helper()
	srv, err := agent.StartEmbedded(agent.EmbeddedOptions{Listen: r.listen, StoreDir: r.store, Name: "restartable"}, discardLogger())
	if err != nil {
		r.t.Fatalf("starting server on %s: %v", r.listen, err)
	}
	r.srv = srv
}

func (r *restartableServer) stop() {
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
		r.srv = nil
	}
}

func (r *restartableServer) url() string { return "nats://" + r.listen }

func reconnectingConn(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gapAlerts(t *testing.T, js jetstream.JetStream) []*binwatchv1.IntegrityAlert {
	t.Helper()
	return streamAlerts(t, js, schema.AlertSubject(binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP, testHost))
}

// TestGapAfterReconnectBufferOverflow stops the server while the
// collector publishes with a tiny reconnect buffer: the lost scan must
// surface as a telemetry_gap alert once the server is back.
func TestGapAfterReconnectBufferOverflow(t *testing.T) {
	srv := newRestartableServer(t)
	ensureStream(t, srv.url())
	a := startTestAgent(t, srv.url(), t.TempDir(), agent.Config{AlertAck: true})

	reconnected := make(chan struct{}, 1)
	cnc := reconnectingConn(t, srv.url(), nats.ReconnectBufSize(1024),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	scanner := sharedScanner(t)
	pub, err := collector.NewPublisher(cnc, testHost, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := collector.ScanOnce(ctx, scanner, pub)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	if err := a.WaitScan(ctx, testHost, pub.CollectorID(), first.Scan.Seq); err != nil {
		t.Fatal(err)
	}

	srv.stop()
	waitFor(t, "the collector to notice the server is gone", 10*time.Second, func() bool { return !cnc.IsConnected() })
	// The first scan may still fit the reconnect buffer; a later one
	// cannot.
	overflowed := false
	for i := 0; i < 5 && !overflowed; i++ {
		r := collector.ScanOnce(ctx, scanner, pub)
		overflowed = errors.Is(r.Err, nats.ErrReconnectBufExceeded)
	}
	if !overflowed {
		t.Fatal("publishing while the server is down never overflowed the reconnect buffer")
	}
	srv.start()
	<-reconnected
	waitFor(t, "the agent to reconnect", 10*time.Second, func() bool { return a.Connected() })

	third := collector.ScanOnce(ctx, scanner, pub)
	if third.Err != nil {
		t.Fatal(third.Err)
	}
	if err := a.WaitScan(ctx, testHost, pub.CollectorID(), third.Scan.Seq); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	js := jsFor(t, srv.url())
	gaps := gapAlerts(t, js)
	if len(gaps) == 0 {
		t.Fatal("no telemetry_gap alert in the stream after a lost scan")
	}
	if got := a.Counters().Hosts[testHost].Gaps; got != uint64(len(gaps)) {
		t.Errorf("host gap counter = %d, want one per alert, %d", got, len(gaps))
	}
}

// TestGapFromSlowConsumer gives the agent a one-message buffer and floods
// it: NATS drops batches, and the agent must count the drops and report
// the gap.
func TestGapFromSlowConsumer(t *testing.T) {
	srv := newRestartableServer(t)
	ensureStream(t, srv.url())
	a := startTestAgent(t, srv.url(), t.TempDir(), agent.Config{AlertAck: true, PendingLimit: 1})

	nc := reconnectingConn(t, srv.url())
	pub, err := collector.NewPublisher(nc, testHost, "test")
	if err != nil {
		t.Fatal(err)
	}
	scan := realScan(t)
	for len(scan.Records) < 2000 {
		scan.Records = append(scan.Records, scan.Records...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Each scan is one large batch that takes the agent milliseconds to
	// evaluate, published back to back.
	const scans = 30
	for seq := uint64(1); seq <= scans; seq++ {
		scan.Seq = seq
		if _, err := pub.Publish(ctx, scan); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the flood to drain", time.Minute, func() bool { return a.Pending() == 0 })
	// A small scan closes the flood. The agent may still be evaluating
	// the flood's last batch and drop this one too, so small scans are
	// sent until one is evaluated.
	last := realScan(t)
	for seq := uint64(scans + 1); ; seq++ {
		last.Seq = seq
		if _, err := pub.Publish(ctx, last); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		err := a.WaitScan(wctx, testHost, pub.CollectorID(), seq)
		wcancel()
		if err == nil {
			break
		}
		if seq > scans+10 {
			t.Fatalf("none of %d small scans after the flood was evaluated: %v", seq-scans, err)
		}
	}
	if err := a.WaitDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	c := a.Counters()
	if c.SlowConsumer == 0 {
		t.Fatal("no slow-consumer drops counted; the test did not overload the agent")
	}
	hc := c.Hosts[testHost]
	if hc.Gaps == 0 {
		t.Fatalf("host counters %+v, want gaps", *hc)
	}
	if gaps := gapAlerts(t, jsFor(t, srv.url())); uint64(len(gaps)) != hc.Gaps {
		t.Errorf("%d telemetry_gap alerts, want one per gap, %d", len(gaps), hc.Gaps)
	}
}

// TestRescanAfterServerRestart checks that a collector run loop publishes
// a full scan as soon as it reconnects, not at the next interval.
func TestRescanAfterServerRestart(t *testing.T) {
	srv := newRestartableServer(t)
	ensureStream(t, srv.url())
	a := startTestAgent(t, srv.url(), t.TempDir(), agent.Config{AlertAck: true})

	rescan := make(chan struct{}, 1)
	cnc := reconnectingConn(t, srv.url(), nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case rescan <- struct{}{}:
		default:
		}
	}))
	scanner := sharedScanner(t)
	pub, err := collector.NewPublisher(cnc, testHost, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	scans := make(chan uint64, 10)
	report := func(r collector.ScanReport) {
		if r.Scan != nil {
			scans <- r.Scan.Seq
		}
	}
	done := make(chan error, 1)
	go func() { done <- collector.Run(ctx, scanner, pub, time.Hour, rescan, report) }()
	defer func() {
		cancel()
		<-done
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	first := <-scans
	if err := a.WaitScan(wctx, testHost, pub.CollectorID(), first); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	srv.start()
	waitFor(t, "the agent to reconnect", 10*time.Second, func() bool { return a.Connected() })
	var next uint64
	select {
	case next = <-scans:
	case <-wctx.Done():
		t.Fatal("no scan after the reconnect within a minute (interval is an hour)")
	}
	if err := a.WaitScan(wctx, testHost, pub.CollectorID(), next); err != nil {
		t.Fatalf("the scan after the reconnect did not reach the agent: %v", err)
	}
}

func ensureStream(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := agent.EnsureStream(ctx, jsFor(t, url), 1); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
}

func jsFor(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(reconnectingConn(t, url))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// startTestAgent starts an agent on its own reconnecting connection.
func startTestAgent(t *testing.T, url, stateDir string, cfg agent.Config) *agent.Agent {
	t.Helper()
	cfg.StateDir = stateDir
	a, err := agent.New(reconnectingConn(t, url), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatalf("agent.Start: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// streamAlerts reads every alert stored in the INTEGRITY stream on
// subject, which may contain wildcards.
func streamAlerts(t *testing.T, js jetstream.JetStream, subject string) []*binwatchv1.IntegrityAlert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, agent.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*binwatchv1.IntegrityAlert
	for n := info.NumPending; n > 0; n-- {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		a := &binwatchv1.IntegrityAlert{}
		if err := protojson.Unmarshal(m.Data(), a); err != nil {
			t.Fatalf("stream message on %s is not an alert: %v", m.Subject(), err)
		}
		out = append(out, a)
	}
	return out
}

// realScan scans this machine once with a new scanner.
func realScan(t *testing.T) *collector.Scan {
	t.Helper()
	scan, err := sharedScanner(t).Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return scan
}

// TestSilentHostRaisesGap stops a host's scans: the agent must report the
// silence instead of showing a clean host.
func TestSilentHostRaisesGap(t *testing.T) {
	srv := newRestartableServer(t)
	ensureStream(t, srv.url())
	a := startTestAgent(t, srv.url(), t.TempDir(), agent.Config{AlertAck: true})
	pub, err := collector.NewPublisher(reconnectingConn(t, srv.url()), testHost, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scan := realScan(t)
	for seq := uint64(1); seq <= 3; seq++ {
		scan.Seq = seq
		if _, err := pub.Publish(ctx, scan); err != nil {
			t.Fatal(err)
		}
		if err := a.WaitScan(ctx, testHost, pub.CollectorID(), seq); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	js := jsFor(t, srv.url())
	waitFor(t, "a telemetry_gap about the silent host", 15*time.Second, func() bool {
		for _, al := range gapAlerts(t, js) {
			if strings.Contains(al.Message, "no scan from host "+testHost) {
				return true
			}
		}
		return false
	})
}
