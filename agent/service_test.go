package agent_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/collector"
)

// TestServiceStatsThroughProtocol reads the agent's and the collector's
// counters the way `nats service stats` does: a request on
// $SRV.STATS.<name>.
func TestServiceStatsThroughProtocol(t *testing.T) {
	srv := newRestartableServer(t)
	ensureStream(t, srv.url())
	a := startTestAgent(t, srv.url(), t.TempDir(), agent.Config{AlertAck: true, ServiceName: "binwatch-agent", HostID: testHost})

	cnc := reconnectingConn(t, srv.url())
	scanner := sharedScanner(t)
	pub, err := collector.NewPublisher(cnc, testHost, "test")
	if err != nil {
		t.Fatal(err)
	}
	csvc, err := collector.StartService(cnc, testHost, "0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer csvc.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := collector.ScanOnce(ctx, scanner, pub)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	csvc.Record(r)
	if err := a.WaitScan(ctx, testHost, pub.CollectorID(), r.Scan.Seq); err != nil {
		t.Fatal(err)
	}

	nc := reconnectingConn(t, srv.url())
	var agentStats micro.Stats
	reply, err := nc.Request("$SRV.STATS.binwatch-agent", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("stats request: %v", err)
	}
	if err := json.Unmarshal(reply.Data, &agentStats); err != nil {
		t.Fatal(err)
	}
	if len(agentStats.Endpoints) == 0 {
		t.Fatalf("agent stats have no endpoints: %s", reply.Data)
	}
	var counters agent.Counters
	if err := json.Unmarshal(agentStats.Endpoints[0].Data, &counters); err != nil {
		t.Fatalf("agent endpoint data is not Counters: %v: %s", err, agentStats.Endpoints[0].Data)
	}
	host := counters.Hosts[testHost]
	if host == nil || host.Scans != 1 || host.Records != uint64(len(r.Scan.Records)) {
		t.Fatalf("agent host counters = %+v, want 1 scan with %d records", host, len(r.Scan.Records))
	}
	if host.BytesHashed != r.Scan.Stats.BytesHashed || host.CacheHits != uint64(r.Scan.Stats.CacheHits) {
		t.Errorf("agent bytes hashed, cache hits = %d, %d, want %d, %d", host.BytesHashed, host.CacheHits,
			r.Scan.Stats.BytesHashed, r.Scan.Stats.CacheHits)
	}

	reply, err = nc.Request(agent.CountersSubject(testHost), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("counters request on %s: %v", agent.CountersSubject(testHost), err)
	}
	var direct agent.Counters
	if err := json.Unmarshal(reply.Data, &direct); err != nil {
		t.Fatalf("counters endpoint reply is not Counters: %v: %s", err, reply.Data)
	}
	if direct.Hosts[testHost] == nil || direct.Hosts[testHost].Scans != 1 {
		t.Errorf("counters endpoint host counters = %+v, want 1 scan", direct.Hosts[testHost])
	}

	reply, err = nc.Request("$SRV.STATS.binwatch-collector", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("collector stats request: %v", err)
	}
	var collectorStats micro.Stats
	if err := json.Unmarshal(reply.Data, &collectorStats); err != nil {
		t.Fatal(err)
	}
	var totals collector.Totals
	if err := json.Unmarshal(collectorStats.Endpoints[0].Data, &totals); err != nil {
		t.Fatal(err)
	}
	if totals.Scans != 1 || totals.Records != uint64(len(r.Scan.Records)) {
		t.Errorf("collector totals = %+v, want 1 scan with %d records", totals, len(r.Scan.Records))
	}

	// The same through natscli, when it is installed.
	natsCLI, err := exec.LookPath("nats")
	if err != nil {
		t.Log("nats command not on PATH; natscli check skipped (install: go install github.com/nats-io/natscli/nats@v0.5.0)")
		return
	}
	out, err := exec.Command(natsCLI, "--server", srv.url(), "service", "stats", "binwatch-agent", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("nats service stats: %v\n%s", err, out)
	}
	for _, want := range []string{"binwatch-agent", "counters", testHost, "bytes_hashed", "alerts_by_kind"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nats service stats output lacks %q:\n%s", want, out)
		}
	}
}
