package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
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

const testHost = "testhost"

// pipeline is one host's binwatch on a real embedded nats-server: an
// agent, an in-process collector and a subscriber on integrity.>.
type pipeline struct {
	t        *testing.T
	srv      *server.Server
	url      string
	stateDir string
	agent    *agent.Agent
	scanner  *collector.Scanner
	pub      *collector.Publisher

	mu     sync.Mutex
	alerts []*binwatchv1.IntegrityAlert
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return discardLogger()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newPipeline starts a server with JetStream, the INTEGRITY stream, an
// agent with state in stateDir (a new temporary directory when empty) and
// a collector.
func newPipeline(t *testing.T, stateDir string, threshold int) *pipeline {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	logger := testLogger(t)
	srv, err := agent.StartEmbedded(agent.EmbeddedOptions{
		Listen: "127.0.0.1:0", StoreDir: filepath.Join(t.TempDir(), "js"), Name: "test",
	}, logger)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	p := &pipeline{t: t, srv: srv, url: srv.ClientURL(), stateDir: stateDir}

	nc := connect(t, p.url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := agent.EnsureStream(ctx, js, 1); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	sub := connect(t, p.url)
	_, err = sub.Subscribe(schema.AlertSubjectAll, func(m *nats.Msg) {
		a := &binwatchv1.IntegrityAlert{}
		if err := protojson.Unmarshal(m.Data, a); err != nil {
			t.Errorf("alert on %s is not IntegrityAlert JSON: %v: %s", m.Subject, err, m.Data)
			return
		}
		if got, want := m.Subject, schema.AlertSubject(a.Kind, a.GetHost().GetId()); got != want {
			t.Errorf("alert subject = %s, want %s", got, want)
		}
		if got := m.Header.Get(schema.HeaderMsgID); got != a.Id {
			t.Errorf("Nats-Msg-Id = %q, want the alert id %q", got, a.Id)
		}
		p.mu.Lock()
		p.alerts = append(p.alerts, a)
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	p.startAgent(threshold)

	p.scanner = sharedScanner(t)
	p.scanner.OnProcessError(func(pid int, err error) { t.Errorf("scan: pid %d: %v", pid, err) })
	p.pub, err = collector.NewPublisher(connect(t, p.url), testHost, "test host")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pipeline) startAgent(threshold int) {
	p.t.Helper()
	a, err := agent.New(connect(p.t, p.url), agent.Config{
		StateDir: p.stateDir, SimilarityThreshold: threshold, AlertAck: true,
	}, testLogger(p.t))
	if err != nil {
		p.t.Fatalf("agent.New: %v", err)
	}
	if err := a.Start(context.Background()); err != nil {
		p.t.Fatalf("agent.Start: %v", err)
	}
	p.t.Cleanup(func() { a.Close() })
	p.agent = a
}

var (
	scannerOnce sync.Once
	scanner     *collector.Scanner
	scannerErr  error
)

// sharedScanner returns one scanner for all tests of the package, so
// that its hash cache stays warm: hashing every executable of the machine
// again for each test costs seconds under the race detector. Tests run
// one at a time, and each sets the process error hook anew.
func sharedScanner(t *testing.T) *collector.Scanner {
	t.Helper()
	scannerOnce.Do(func() { scanner, scannerErr = collector.NewScanner(collector.Options{}) })
	if scannerErr != nil {
		t.Fatalf("NewScanner: %v", scannerErr)
	}
	scanner.OnProcessError(nil)
	return scanner
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// scan runs one scan, waits until the agent evaluated it and delivered
// its alerts, and returns the scan.
func (p *pipeline) scan() *collector.Scan {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := collector.ScanOnce(ctx, p.scanner, p.pub)
	if r.Err != nil {
		p.t.Fatalf("scan: %v", r.Err)
	}
	if err := p.agent.WaitScan(ctx, testHost, p.pub.CollectorID(), r.Scan.Seq); err != nil {
		p.t.Fatal(err)
	}
	if err := p.agent.WaitDelivered(ctx); err != nil {
		p.t.Fatal(err)
	}
	// The subscriber's connection may still be receiving; a round trip
	// through the server after delivery orders it behind the alerts.
	nc := connect(p.t, p.url)
	if err := nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	return r.Scan
}

// alertsFor returns the alerts received so far about pid, or, with pid 0,
// about path.
func (p *pipeline) alertsFor(pid int32, kind binwatchv1.AlertKind) []*binwatchv1.IntegrityAlert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*binwatchv1.IntegrityAlert
	for _, a := range p.alerts {
		if a.Kind == kind && a.GetProcess().GetPid() == pid {
			out = append(out, a)
		}
	}
	return out
}

// alertsAtPath returns the alerts of kind about executable path.
func (p *pipeline) alertsAtPath(path string, kind binwatchv1.AlertKind) []*binwatchv1.IntegrityAlert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*binwatchv1.IntegrityAlert
	for _, a := range p.alerts {
		if a.Kind == kind && string(a.GetProcess().GetExecutableRaw()) == path {
			out = append(out, a)
		}
	}
	return out
}

// copyFile copies src to dst with mode 0755 and returns dst's SHA-256.
func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	return writeExecutable(t, dst, data)
}

func writeExecutable(t *testing.T, dst string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// startProcess runs path with args and kills it at cleanup.
func startProcess(t *testing.T, path string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Wait until the process runs the new image, not the forked test.
	deadline := time.Now().Add(5 * time.Second)
	for {
		link, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "exe"))
		if err == nil && link == path {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exec %s: exe link %q, %v", cmd.Process.Pid, path, link, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
