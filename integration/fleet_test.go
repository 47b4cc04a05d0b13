package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// fleetInterval is the scan interval of both hosts' collectors.
const fleetInterval = "2s"

// TestFleetWithBinaries builds the fleet of the README's walk-through on
// loopback from the built binaries. The hub is three nodes with the
// INTEGRITY stream. Host A runs leaf-host.conf, its agent and a continuous
// collector, and host B the agent with its embedded server as a leaf node.
// Processes whose executables the test unlinks must raise disk_mismatch
// alerts that reach the stream once each, also while the stream leader is
// killed, and the counters of both agents must be readable at the hub.
func TestFleetWithBinaries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the collectors need root to read every process's executable; run the test as root")
	}
	started := time.Now()
	agentBin := builtBinary(t, "binwatch-agent")
	collectorBin := builtBinary(t, "binwatch-collector")
	natsCLI := findNATSCLI(t)

	h := startHub(t, nil)
	createFleetStream(t, h, natsCLI)
	admin, _ := h.connect(t, "admin")
	adminJS := newJetStream(t, admin)
	ops, _ := h.connect(t, "ops")

	// The node that the test kills as the stream leader. Host B's leaf
	// node stays connected to node 0 through the kill.
	killed := h.nodes[1]

	// `nats sub` runs as the watch user from before the first trigger until
	// the last one's alerts are stored. It is connected to the node that
	// the test kills, and must reconnect to another node and see the
	// alerts raised during the outage.
	var watchSub *programProcess
	if natsCLI != "" {
		watchSub = startProgram(t, "nats-sub", natsCLI, natsCLIArgs(h, killed.clientURL(nil), "watch", "sub", "integrity.>"), natsCLIEnv(t))
		poll(t, 10*time.Second, "nats sub subscribed", func() error {
			if !bytes.Contains(watchSub.output(t), []byte("Subscribing on integrity.>")) {
				return errors.New("no \"Subscribing on integrity.>\" in its output")
			}
			return nil
		})
		if node := h.waitForSubscriber(t, "watch", "integrity.>"); node != killed.name {
			t.Fatalf("nats sub is connected to %s, want %s", node, killed.name)
		}
	}

	// Host A: leaf-host.conf, and the agent and the collector as the
	// leaf's local users.
	leafURL, local := startLeaf(t, h, "leaf-hosta", "hosta", "leaf-hosta")
	h.waitForLeaf(t, "HOSTS", "leaf-hosta")
	agentA := startProgram(t, "agent-hosta", agentBin, []string{
		"--host-id", "hosta", "--nats-url", leafURL, "--nats-user", "agent", "--nats-password", local["agent"],
		"--state-dir", t.TempDir(), "--log-format", "json",
	}, nil)
	waitForCounters(t, ops, "hosta", func(c fleetCounters) error { return nil })
	startProgram(t, "collector-hosta", collectorBin, []string{
		"--host-id", "hosta", "--nats-url", leafURL, "--nats-user", "collector", "--nats-password", local["collector"],
		"--interval", fleetInterval, "--log-format", "json",
	}, nil)

	// Host B: the agent's embedded server is the leaf node, and the
	// collector runs in the agent. --leaf-url names one hub node, and the
	// hub sends the leaf node the leafnode URLs of the other two.
	agentB := startProgram(t, "agent-hostb", agentBin, []string{
		"--host-id", "hostb", "--listen", "127.0.0.1:0", "--collect=true", "--interval", fleetInterval,
		"--leaf-url", "nats-leaf://" + loopback(h.nodes[0].leaf), "--leaf-user", "leaf-hostb",
		"--leaf-password", h.passwords["leaf-hostb"], "--state-dir", t.TempDir(), "--log-format", "json",
	}, nil)
	h.waitForLeaf(t, "HOSTS", "binwatch-hostb")

	for _, host := range []string{"hosta", "hostb"} {
		waitForCounters(t, ops, host, func(c fleetCounters) error {
			if hc := c.Hosts[host]; hc == nil || hc.Scans == 0 {
				return fmt.Errorf("no completed scan of %s counted", host)
			}
			return nil
		})
	}
	agents := map[string]*programProcess{"hosta": agentA, "hostb": agentB}
	t.Logf("fleet running %s after the start", time.Since(started).Round(time.Millisecond))

	// Both simulated hosts scan the same /proc, so each agent alerts on
	// both triggers. Each host is checked for the pid started for it.
	first := map[string]int{"hosta": startTrigger(t, "hosta-1"), "hostb": startTrigger(t, "hostb-1")}
	waitForStreamAlerts(t, adminJS, first)
	t.Logf("first alerts of both hosts in the stream %s after the start", time.Since(started).Round(time.Millisecond))

	t.Run("collector cannot publish as another host", func(t *testing.T) {
		checkForgedCollector(t, ops, collectorBin, leafURL, local["collector"])
	})

	var second map[string]int
	t.Run("stream leader killed", func(t *testing.T) {
		var afterKill func()
		if watchSub != nil {
			// The alerts raised during the outage reach nats sub only
			// once it has subscribed again on another node.
			afterKill = func() {
				node := h.waitForSubscriber(t, "watch", "integrity.>")
				t.Logf("nats sub subscribed again on %s", node)
			}
		}
		second = killStreamLeader(t, adminJS, killed, agents, afterKill)
	})

	t.Run("nats sub shows both hosts", func(t *testing.T) {
		if watchSub == nil {
			t.Skip("the nats command (natscli v0.5.0) is neither on PATH nor in $(go env GOPATH)/bin, so `nats sub` is not checked")
		}
		checkNATSSub(t, watchSub, first, second)
	})

	t.Run("agents delivered every alert once", func(t *testing.T) {
		for _, host := range []string{"hosta", "hostb"} {
			checkDeliveredOnce(t, adminJS, ops, host, agents[host])
		}
	})

	t.Run("agent stats through micro protocol", func(t *testing.T) {
		checkAgentStats(t, ops)
	})
	t.Logf("fleet test took %s", time.Since(started).Round(time.Millisecond))
}

// builtBinary returns the path of the binwatch binary name, built once per
// test run into the directory of nats-server.
func builtBinary(t *testing.T, name string) string {
	t.Helper()
	binaryHelp(t, name)
	return filepath.Join(filepath.Dir(natsServerBin), name)
}

// findNATSCLI returns the nats command from PATH or from $(go env
// GOPATH)/bin, where `go install` puts it, or "" when neither has it.
func findNATSCLI(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("nats"); err == nil {
		return path
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env GOPATH: %v", err)
	}
	for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
		path := filepath.Join(dir, "bin", "nats")
		if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return path
		}
	}
	return ""
}

// natsCLIArgs returns the arguments of the nats command that connect to
// the hub URLs urls as user, followed by args.
func natsCLIArgs(h *hub, urls, user string, args ...string) []string {
	return append([]string{"--server", urls, "--user", user, "--password", h.passwords[user]}, args...)
}

// natsCLIEnv points the nats command at an empty configuration directory,
// so that no saved context of the machine changes its server or user.
func natsCLIEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	return []string{"XDG_CONFIG_HOME=" + dir, "NATS_CONTEXT="}
}

// createFleetStream creates the INTEGRITY stream and the siem consumer as
// the fleet walk-through in README.md does: with the nats command and the
// admin user when the command is there, else through JetStream with the
// same JSON files.
func createFleetStream(t *testing.T, h *hub, natsCLI string) {
	t.Helper()
	streamFile, err := filepath.Abs(filepath.Join(repoRoot, "server-config", "integrity-stream.json"))
	if err != nil {
		t.Fatal(err)
	}
	consumerFile := filepath.Join(filepath.Dir(streamFile), "siem-consumer.json")
	admin, _ := h.connect(t, "admin")
	js := newJetStream(t, admin)
	if natsCLI == "" {
		t.Log("nats command not found, so the stream and the consumer are created through JetStream")
		stream := createStream(t, js, streamConfig(t))
		if _, err := js.CreateOrUpdateConsumer(testContext(t, 10*time.Second), stream.Config.Name, siemConsumerConfig(t)); err != nil {
			t.Fatalf("creating consumer siem: %v", err)
		}
	} else {
		env := natsCLIEnv(t)
		for _, args := range [][]string{
			{"stream", "add", streamName, "--config", streamFile},
			{"consumer", "add", streamName, "--config", consumerFile},
		} {
			cmd := exec.Command(natsCLI, natsCLIArgs(h, h.clientURLs(), "admin", args...)...)
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}

	ctx := testContext(t, 10*time.Second)
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		t.Fatalf("stream info of %s: %v", streamName, err)
	}
	if got := stream.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("stream replicas = %d, want 3", got)
	}
	consumer, err := stream.Consumer(ctx, "siem")
	if err != nil {
		t.Fatalf("consumer siem: %v", err)
	}
	if got := consumer.CachedInfo().Config.AckPolicy; got != jetstream.AckExplicitPolicy {
		t.Errorf("consumer siem ack policy = %v, want explicit", got)
	}
	if cluster := stream.CachedInfo().Cluster; cluster == nil || cluster.Leader == "" {
		t.Fatalf("stream %s has no leader: %+v", streamName, cluster)
	}
}

// programProcess is one process of a binary that the test started, with
// its standard output and error in a log file.
type programProcess struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startProgram runs bin with args and the extra environment variables env.
// The process is stopped when the test ends, and the end of its log is
// shown if the test failed.
func startProgram(t *testing.T, name, bin string, args, env []string) *programProcess {
	t.Helper()
	p := &programProcess{name: name, logPath: filepath.Join(t.TempDir(), name+".log")}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("opening log of %s: %v", name, err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = logFile
	p.cmd.Stderr = logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.showLog(t)
		}
	})
	return p
}

func (p *programProcess) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process and SIGKILL if it has not exited
// after 5 s, and waits for it.
func (p *programProcess) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *programProcess) output(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatalf("reading log of %s: %v", p.name, err)
	}
	return data
}

func (p *programProcess) showLog(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("reading log of %s: %v", p.name, err)
		return
	}
	const tail = 6000
	if len(data) > tail {
		data = data[len(data)-tail:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	t.Logf("end of the output of %s:\n%s", p.name, data)
}

// startTrigger copies the sleep program into a new directory, runs the
// copy and unlinks it, so that the process runs an unlinked image. It
// returns the pid, and the process is killed when the test ends.
func startTrigger(t *testing.T, name string) int {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("finding the sleep program: %v", err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("reading %s: %v", src, err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
	cmd := exec.Command(path, "300")
	// Start returns once the copy has been executed, so unlinking it
	// afterwards leaves the process running the deleted file.
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := os.Remove(path); err != nil {
		t.Fatalf("unlinking %s: %v", path, err)
	}
	return cmd.Process.Pid
}

// storedAlert is one message of the INTEGRITY stream.
type storedAlert struct {
	seq     uint64
	subject string
	msgID   string
	alert   *binwatchv1.IntegrityAlert
}

// streamAlerts returns every message of the stream, decoded.
func streamAlerts(js jetstream.JetStream) ([]storedAlert, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	state := stream.CachedInfo().State
	var alerts []storedAlert
	for seq := state.FirstSeq; seq <= state.LastSeq && state.Msgs > 0; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", seq, err)
		}
		var alert binwatchv1.IntegrityAlert
		if err := protojson.Unmarshal(msg.Data, &alert); err != nil {
			return nil, fmt.Errorf("decoding message %d on %s (%s): %w", seq, msg.Subject, msg.Data, err)
		}
		alerts = append(alerts, storedAlert{seq: seq, subject: msg.Subject, msgID: msg.Header.Get(schema.HeaderMsgID), alert: &alert})
	}
	return alerts, nil
}

// findPidAlerts returns, for each host and pid in pids, the sequence of
// the disk_mismatch alert of that host about that pid, leaving out the
// hosts that have none.
func findPidAlerts(alerts []storedAlert, pids map[string]int) map[string]uint64 {
	found := map[string]uint64{}
	for _, a := range alerts {
		host := a.alert.GetHost().GetId()
		pid, ok := pids[host]
		if ok && a.alert.GetKind() == binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH && int(a.alert.GetProcess().GetPid()) == pid {
			found[host] = a.seq
		}
	}
	return found
}

// waitForStreamAlerts polls until the stream contains a disk_mismatch
// alert of each host about the pid of that host in pids, then checks each
// of them and that the stream contains every alert id once.
func waitForStreamAlerts(t *testing.T, js jetstream.JetStream, pids map[string]int) {
	t.Helper()
	var alerts []storedAlert
	poll(t, 30*time.Second, fmt.Sprintf("disk_mismatch alerts of pids %v in the stream", pids), func() error {
		var err error
		alerts, err = streamAlerts(js)
		if err != nil {
			return err
		}
		if found := findPidAlerts(alerts, pids); len(found) != len(pids) {
			return fmt.Errorf("found alerts of %v only", slices.Sorted(maps.Keys(found)))
		}
		return nil
	})

	found := findPidAlerts(alerts, pids)
	for _, a := range alerts {
		host := a.alert.GetHost().GetId()
		if found[host] != a.seq {
			continue
		}
		if want := "integrity.disk_mismatch." + host; a.subject != want {
			t.Errorf("alert %s of pid %d on subject %s, want %s", a.alert.GetId(), pids[host], a.subject, want)
		}
		if got := a.alert.GetState(); got != binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED {
			t.Errorf("alert %s of pid %d: state %v, want unlinked", a.alert.GetId(), pids[host], got)
		}
		if got := a.alert.GetSeverity(); got != binwatchv1.Severity_SEVERITY_HIGH {
			t.Errorf("alert %s of pid %d: severity %v, want high", a.alert.GetId(), pids[host], got)
		}
	}
	checkStoredOnce(t, alerts)
}

// checkStoredOnce checks that no alert id occurs twice in the stream and
// that each message's Nats-Msg-Id is its alert's id.
func checkStoredOnce(t *testing.T, alerts []storedAlert) {
	t.Helper()
	seen := map[string]uint64{}
	for _, a := range alerts {
		id := a.alert.GetId()
		if id == "" {
			t.Errorf("stream message %d on %s has no alert id", a.seq, a.subject)
			continue
		}
		if a.msgID != id {
			t.Errorf("stream message %d: Nats-Msg-Id %q, want the alert id %q", a.seq, a.msgID, id)
		}
		if first, ok := seen[id]; ok {
			t.Errorf("alert %s stored twice, as messages %d and %d", id, first, a.seq)
		}
		seen[id] = a.seq
	}
}

// subReceived matches the line that `nats sub` prints before each message.
var subReceived = regexp.MustCompile(`^\[#\d+\] Received on "([^"]+)"`)

// checkNATSSub waits until the output of `nats sub 'integrity.>'` shows,
// for each map of pids, the disk_mismatch alert of each host about its
// pid, then stops the command.
func checkNATSSub(t *testing.T, sub *programProcess, pids ...map[string]int) {
	t.Helper()
	poll(t, 15*time.Second, "alerts in the output of nats sub", func() error {
		if !sub.running() {
			return fmt.Errorf("nats sub exited:\n%s", sub.output(t))
		}
		var missing []string
		seen := parseNATSSub(t, sub.output(t))
		for _, m := range pids {
			for host, pid := range m {
				if !slices.Contains(seen["integrity.disk_mismatch."+host], pid) {
					missing = append(missing, fmt.Sprintf("%s pid %d", host, pid))
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no alert of %s among %v", missing, seen)
		}
		return nil
	})
	sub.stop()
}

// parseNATSSub returns the pids of the alerts in the output of `nats sub`,
// by subject. The alert's own host must match the subject's last token.
func parseNATSSub(t *testing.T, out []byte) map[string][]int {
	t.Helper()
	seen := map[string][]int{}
	subject := ""
	scanner := bufio.NewScanner(bytes.NewReader(out))
	scanner.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if m := subReceived.FindStringSubmatch(line); m != nil {
			subject = m[1]
			continue
		}
		if subject == "" || !strings.HasPrefix(line, "{") {
			continue
		}
		var alert binwatchv1.IntegrityAlert
		if err := protojson.Unmarshal([]byte(line), &alert); err != nil {
			t.Errorf("nats sub printed %s on %s, which is not an alert: %v", line, subject, err)
			continue
		}
		if want := schema.AlertSubject(alert.GetKind(), alert.GetHost().GetId()); subject != want {
			t.Errorf("nats sub received alert %s on %s, want %s", alert.GetId(), subject, want)
		}
		seen[subject] = append(seen[subject], int(alert.GetProcess().GetPid()))
		subject = ""
	}
	return seen
}

// fleetCounters is the part of the agent's counters that the test reads.
type fleetCounters struct {
	RecordsReceived uint64                        `json:"records_received"`
	AlertsDelivered uint64                        `json:"alerts_delivered"`
	AlertsEvicted   uint64                        `json:"alerts_evicted"`
	AlertsPending   int                           `json:"alerts_pending"`
	Dropped         map[string]uint64             `json:"dropped_by_reason"`
	Hosts           map[string]*fleetHostCounters `json:"hosts"`
}

type fleetHostCounters struct {
	Scans   uint64 `json:"scans"`
	Records uint64 `json:"records"`
}

// agentCounters requests the counters of host's agent on
// binwatch.agent.<host>.counters.
func agentCounters(nc *nats.Conn, host string) (fleetCounters, error) {
	var c fleetCounters
	reply, err := nc.Request("binwatch.agent."+host+".counters", nil, time.Second)
	if err != nil {
		return c, fmt.Errorf("counters of %s: %w", host, err)
	}
	if err := json.Unmarshal(reply.Data, &c); err != nil {
		return c, fmt.Errorf("decoding counters of %s %s: %w", host, reply.Data, err)
	}
	return c, nil
}

// waitForCounters polls the counters of host's agent until check accepts
// them, and returns them.
func waitForCounters(t *testing.T, nc *nats.Conn, host string, check func(fleetCounters) error) fleetCounters {
	t.Helper()
	var c fleetCounters
	poll(t, 20*time.Second, "counters of agent "+host, func() error {
		var err error
		if c, err = agentCounters(nc, host); err != nil {
			return err
		}
		return check(c)
	})
	return c
}

// checkForgedCollector runs a collector with host A's collector user
// that claims to be host B. Its batches must be rejected by host A's leaf
// node, and host A's agent, which reads binwatch.process.* there, must
// count no record of host B.
func checkForgedCollector(t *testing.T, ops *nats.Conn, collectorBin, leafURL, password string) {
	before, err := agentCounters(ops, "hosta")
	if err != nil {
		t.Fatal(err)
	}
	forged := startProgram(t, "collector-forged", collectorBin, []string{
		"--host-id", "hostb", "--nats-url", leafURL, "--nats-user", "collector", "--nats-password", password,
		"--interval", "1s", "--log-format", "json",
	}, nil)
	violation := `Permissions Violation for Publish to \"binwatch.process.hostb\"`
	poll(t, 15*time.Second, "permissions violation in the forged collector's log", func() error {
		out := forged.output(t)
		if !forged.running() {
			return fmt.Errorf("collector exited:\n%s", out)
		}
		if !bytes.Contains(out, []byte(`"msg":"scan published"`)) {
			return errors.New("no scan published yet")
		}
		if !bytes.Contains(out, []byte(violation)) {
			return fmt.Errorf("no %s logged", violation)
		}
		return nil
	})

	// A batch that passed the leaf node would reach host A's agent before
	// its own collector's next scan, which comes after the violation.
	scans := func(c fleetCounters) uint64 {
		if hc := c.Hosts["hosta"]; hc != nil {
			return hc.Scans
		}
		return 0
	}
	after := waitForCounters(t, ops, "hosta", func(c fleetCounters) error {
		if scans(c) < scans(before)+2 {
			return fmt.Errorf("scans of hosta %d, want %d", scans(c), scans(before)+2)
		}
		return nil
	})
	forged.stop()
	if hc, ok := after.Hosts["hostb"]; ok {
		t.Errorf("agent hosta counted host hostb: %+v, want no entry", hc)
	}
	for reason, n := range after.Dropped {
		if n != before.Dropped[reason] {
			t.Errorf("agent hosta dropped %d messages for %s, %d before the forged collector, want no change", n, reason, before.Dropped[reason])
		}
	}
}

// killStreamLeader makes node the INTEGRITY stream leader and kills its
// nats-server with SIGKILL. After calling afterKill, if it is not nil, it
// starts a trigger for each host and waits until both agents have raised
// the alerts and the stream contains them. It then restarts the node,
// waits until its replica is current, and returns the pids of the new
// triggers.
func killStreamLeader(t *testing.T, js jetstream.JetStream, node *hubNode, agents map[string]*programProcess, afterKill func()) map[string]int {
	t.Helper()
	leaderName := node.name
	moveStreamLeader(t, js, leaderName)
	stream, err := js.Stream(testContext(t, 5*time.Second), streamName)
	if err != nil {
		t.Fatal(err)
	}
	node.proc.kill(t)
	killed := time.Now()
	if afterKill != nil {
		afterKill()
	}

	pids := map[string]int{"hosta": startTrigger(t, "hosta-2"), "hostb": startTrigger(t, "hostb-2")}
	for host, agent := range agents {
		poll(t, 20*time.Second, "alert of agent "+host+" during the outage", func() error {
			for _, line := range agentAlertLogs(t, agent) {
				if line.Host == host && line.Pid == pids[host] && line.Kind == "disk_mismatch" {
					return nil
				}
			}
			return fmt.Errorf("agent %s logged no disk_mismatch alert of pid %d", host, pids[host])
		})
	}
	raised := time.Since(killed)
	waitForStreamAlerts(t, js, pids)
	t.Logf("killed stream leader %s; alerts raised after %s, in the stream after %s",
		leaderName, raised.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	for host, agent := range agents {
		if bytes.Contains(agent.output(t), []byte(`"msg":"alert not delivered, will retry"`)) {
			t.Logf("agent %s retried an alert that was not acknowledged", host)
		}
	}

	node.proc.start(t)
	restarted := time.Now()
	poll(t, 30*time.Second, "restarted node catching up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster.Leader == leaderName {
			return nil
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name == leaderName && r.Current && r.Lag == 0 {
				return nil
			}
		}
		return fmt.Errorf("replica %s not current in %+v", leaderName, info.Cluster)
	})
	t.Logf("restarted %s current after %s", leaderName, time.Since(restarted).Round(time.Millisecond))
	return pids
}

// moveStreamLeader polls until the node named want leads the stream,
// asking the current leader to step down in its favour.
func moveStreamLeader(t *testing.T, js jetstream.JetStream, want string) {
	t.Helper()
	nc := js.Conn()
	request, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": want}})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "stream leader "+want, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stream, err := js.Stream(ctx, streamName)
		if err != nil {
			return err
		}
		cluster := stream.CachedInfo().Cluster
		if cluster == nil || cluster.Leader == "" {
			return errors.New("no stream leader")
		}
		if cluster.Leader == want {
			return nil
		}
		reply, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+streamName, request, 2*time.Second)
		if err != nil {
			return fmt.Errorf("step-down of %s: %w", cluster.Leader, err)
		}
		return fmt.Errorf("leader %s asked to step down for %s: %s", cluster.Leader, want, reply.Data)
	})
}

// alertLog is an "integrity alert" line of an agent's JSON log.
type alertLog struct {
	Msg  string `json:"msg"`
	Kind string `json:"kind"`
	Host string `json:"host"`
	ID   string `json:"id"`
	Pid  int    `json:"pid"`
}

// agentAlertLogs returns the alerts that agent logged as it raised them.
func agentAlertLogs(t *testing.T, agent *programProcess) []alertLog {
	t.Helper()
	var lines []alertLog
	scanner := bufio.NewScanner(bytes.NewReader(agent.output(t)))
	scanner.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for scanner.Scan() {
		var line alertLog
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil || line.Msg != "integrity alert" {
			continue
		}
		lines = append(lines, line)
	}
	if err := scanner.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading log of %s: %v", agent.name, err)
	}
	return lines
}

// checkDeliveredOnce compares the alerts that host's agent raised (its
// log) and delivered (its counters) with the stream. It polls until one
// reading of all three agrees, because the agent keeps scanning.
func checkDeliveredOnce(t *testing.T, js jetstream.JetStream, ops *nats.Conn, host string, agent *programProcess) {
	t.Helper()
	var raised, stored map[string]bool
	var counters fleetCounters
	var alerts []storedAlert
	var foreign []alertLog
	poll(t, 30*time.Second, "alerts of "+host+" delivered", func() error {
		raised = map[string]bool{}
		foreign = nil
		for _, line := range agentAlertLogs(t, agent) {
			if line.Host != host {
				foreign = append(foreign, line)
				continue
			}
			raised[line.ID] = true
		}
		var err error
		if counters, err = agentCounters(ops, host); err != nil {
			return err
		}
		if alerts, err = streamAlerts(js); err != nil {
			return err
		}
		stored = map[string]bool{}
		for _, a := range alerts {
			if a.alert.GetHost().GetId() == host {
				stored[a.alert.GetId()] = true
			}
		}
		if counters.AlertsPending != 0 {
			return fmt.Errorf("%d alerts pending", counters.AlertsPending)
		}
		if int(counters.AlertsDelivered) != len(raised) || !maps.Equal(raised, stored) {
			return fmt.Errorf("%d alerts raised, %d delivered, %d stored", len(raised), counters.AlertsDelivered, len(stored))
		}
		return nil
	})
	for _, line := range foreign {
		t.Errorf("agent %s raised alert %s of host %s, want only alerts of %s", host, line.ID, line.Host, host)
	}
	if counters.AlertsEvicted != 0 {
		t.Errorf("agent %s evicted %d alerts from its outbox, want 0", host, counters.AlertsEvicted)
	}
	checkStoredOnce(t, alerts)
	t.Logf("agent %s: %d alerts raised, delivered and stored once each", host, len(raised))
}

// checkAgentStats requests $SRV.STATS.binwatch-agent as the ops user at
// the hub and gathers the replies of both agents.
func checkAgentStats(t *testing.T, ops *nats.Conn) {
	t.Helper()
	hosts := []string{"hosta", "hostb"}
	var stats map[string]micro.Stats
	poll(t, 15*time.Second, "stats of both agents", func() error {
		var err error
		stats, err = requestStats(ops, "$SRV.STATS.binwatch-agent", time.Second)
		if err != nil {
			return err
		}
		for _, host := range hosts {
			if _, ok := stats[host]; !ok {
				return fmt.Errorf("no stats of %s among %v", host, slices.Sorted(maps.Keys(stats)))
			}
		}
		return nil
	})
	for _, host := range hosts {
		s := stats[host]
		if s.Name != "binwatch-agent" || s.Type != micro.StatsResponseType {
			t.Errorf("stats of %s: name %q, type %q, want binwatch-agent, %s", host, s.Name, s.Type, micro.StatsResponseType)
		}
		i := slices.IndexFunc(s.Endpoints, func(e *micro.EndpointStats) bool { return e.Name == "counters" })
		if i < 0 {
			t.Errorf("stats of %s have no counters endpoint: %+v", host, s.Endpoints)
			continue
		}
		var c fleetCounters
		if err := json.Unmarshal(s.Endpoints[i].Data, &c); err != nil {
			t.Errorf("decoding the counters in the stats of %s %s: %v", host, s.Endpoints[i].Data, err)
			continue
		}
		if hc := c.Hosts[host]; hc == nil || hc.Scans == 0 || hc.Records == 0 {
			t.Errorf("stats of %s: host counters %+v, want scans and records", host, hc)
		}
		if want := "binwatch.agent." + host + ".counters"; s.Endpoints[i].Subject != want {
			t.Errorf("stats of %s: counters endpoint on %s, want %s", host, s.Endpoints[i].Subject, want)
		}
	}
}

// requestStats sends a request on subject and collects the micro service
// stats of every responder that replies within wait, by their host_id
// metadata.
func requestStats(nc *nats.Conn, subject string, wait time.Duration) (map[string]micro.Stats, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, err
	}
	stats := map[string]micro.Stats{}
	deadline := time.Now().Add(wait)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			return stats, nil
		}
		if err != nil {
			return nil, err
		}
		var s micro.Stats
		if err := json.Unmarshal(msg.Data, &s); err != nil {
			return nil, fmt.Errorf("decoding stats %s: %w", msg.Data, err)
		}
		stats[s.Metadata["host_id"]] = s
	}
}
