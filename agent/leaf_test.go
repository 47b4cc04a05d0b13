package agent_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hub is a JetStream server with a leafnode port that a test can stop
// and start again on the same ports and store.
type hub struct {
	t                    *testing.T
	clientPort, leafPort int
	store                string
	srv                  *server.Server
}

func newHub(t *testing.T) *hub {
	t.Helper()
	h := &hub{t: t, clientPort: freePort(t), leafPort: freePort(t), store: filepath.Join(t.TempDir(), "hub")}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *hub) start() {
	h.t.Helper()
	opts := &server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: h.clientPort, NoSigs: true,
		JetStream: true, StoreDir: h.store,
	}
	opts.LeafNode.Host = "127.0.0.1"
	opts.LeafNode.Port = h.leafPort
	srv, err := server.NewServer(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		h.t.Fatal("hub not ready")
	}
	h.srv = srv
}

func (h *hub) stop() {
	if h.srv != nil {
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
		h.srv = nil
	}
}

func (h *hub) url() string { return "nats://127.0.0.1:" + strconv.Itoa(h.clientPort) }

// TestLeafDeliversAlertsRaisedWhileHubDown runs the agent on an embedded
// leaf node. Alerts raised while the hub is down, before and after an
// agent restart, must all reach the hub's stream once each when it
// returns.
func TestLeafDeliversAlertsRaisedWhileHubDown(t *testing.T) {
	h := newHub(t)
	ensureStream(t, h.url())

	leaf, err := agent.StartEmbedded(agent.EmbeddedOptions{
		Listen: "127.0.0.1:0", Name: "leaf-" + testHost,
		Leaf: agent.LeafOptions{URL: "nats-leaf://127.0.0.1:" + strconv.Itoa(h.leafPort)},
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leaf.Shutdown(); leaf.WaitForShutdown() })
	waitFor(t, "the leaf connection", 10*time.Second, func() bool { return leaf.NumLeafNodes() == 1 })

	state := t.TempDir()
	a := startTestAgent(t, leaf.ClientURL(), state, agent.Config{AlertAck: true})
	scanner := sharedScanner(t)
	pub, err := collector.NewPublisher(reconnectingConn(t, leaf.ClientURL()), testHost, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	scan := func(a *agent.Agent) {
		t.Helper()
		r := collector.ScanOnce(ctx, scanner, pub)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if err := a.WaitScan(ctx, testHost, pub.CollectorID(), r.Scan.Seq); err != nil {
			t.Fatal(err)
		}
	}
	scan(a)
	if err := a.WaitDelivered(ctx); err != nil {
		t.Fatalf("alerts of the first scan with the hub up: %v", err)
	}

	unlinked := func() int32 {
		prog := filepath.Join(t.TempDir(), "prog")
		copyFile(t, "/bin/sleep", prog)
		cmd := startProcess(t, prog, "600")
		if err := os.Remove(prog); err != nil {
			t.Fatal(err)
		}
		return int32(cmd.Process.Pid)
	}

	h.stop()
	waitFor(t, "the leaf to lose the hub", 10*time.Second, func() bool { return leaf.NumLeafNodes() == 0 })
	before := unlinked()
	scan(a)
	if got := a.Counters().AlertsPending; got == 0 {
		t.Fatal("no alert pending while the hub is down")
	}

	// The agent restarts while the hub is still down.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = startTestAgent(t, leaf.ClientURL(), state, agent.Config{AlertAck: true})
	after := unlinked()
	scan(a)

	h.start()
	if err := a.WaitDelivered(ctx); err != nil {
		t.Fatalf("after the hub returned: %v", err)
	}
	alerts := streamAlerts(t, jsFor(t, h.url()), "integrity.>")
	ids := map[string]int{}
	for _, al := range alerts {
		ids[al.Id]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("alert %s is in the stream %d times, want once", id, n)
		}
	}
	for _, pid := range []int32{before, after} {
		found := 0
		for _, al := range alerts {
			if al.Kind == binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH && al.GetProcess().GetPid() == pid {
				found++
			}
		}
		if found != 1 {
			t.Errorf("pid %d: %d disk_mismatch alerts in the hub stream, want 1", pid, found)
		}
	}
}
