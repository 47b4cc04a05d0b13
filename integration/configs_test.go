package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// serverConfigs are the configurations that nats-server is started with;
// the other .conf files are included by them.
var serverConfigs = []string{"single-host.conf", "hub-1.conf", "hub-2.conf", "hub-3.conf", "leaf-host.conf"}

// configEnv returns a value for every variable that the configurations
// read, leaving out the names in skip.
func configEnv(skip ...string) []string {
	var env []string
	for _, user := range hubUsers {
		env = append(env, hubPasswordVar(user)+"=pw-"+user)
	}
	env = append(env,
		"LEAF_COLLECTOR_PASSWORD=pw-collector",
		"LEAF_AGENT_PASSWORD=pw-agent",
		`HUB_LEAF_URLS=["nats-leaf://leaf-hosta:pw@127.0.0.1:7422", "nats-leaf://leaf-hosta:pw@127.0.0.1:7423"]`,
	)
	var kept []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(skip, name) {
			kept = append(kept, kv)
		}
	}
	return kept
}

// checkConfig runs nats-server -t on path with env and returns its output
// and error.
func checkConfig(path string, env []string) (string, error) {
	cmd := exec.Command(natsServerBin, "-t", "-c", path)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestConfigsValid runs nats-server -t on each configuration, as written
// and with each of its TLS includes turned on and pointing at real
// certificates.
func TestConfigsValid(t *testing.T) {
	pki := newTestPKI(t)
	dir := copyServerConfig(t)
	renderTLSFiles(t, dir, pki)
	for _, name := range serverConfigs {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if out, err := checkConfig(path, configEnv()); err != nil || !strings.Contains(out, "is valid") {
				t.Errorf("nats-server -t %s: %v\n%s", name, err, out)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var pairs []string
			for _, include := range tlsIncludes {
				if strings.Contains(string(data), include) {
					pairs = append(pairs, uncomment(include)...)
				}
			}
			if len(pairs) == 0 {
				return
			}
			tlsPath := renderFile(t, dir, name, "tls-"+name, pairs...)
			if out, err := checkConfig(tlsPath, configEnv()); err != nil || !strings.Contains(out, "is valid") {
				t.Errorf("nats-server -t %s with TLS: %v\n%s", name, err, out)
			}
		})
	}
}

// TestConfigsRequireSecrets checks that a server does not start when one of
// its password variables is missing, rather than running with an empty
// password.
func TestConfigsRequireSecrets(t *testing.T) {
	dir := filepath.Join(repoRoot, "server-config")
	cases := []struct {
		config   string
		variable string
	}{
		{"leaf-host.conf", "LEAF_COLLECTOR_PASSWORD"},
		{"leaf-host.conf", "LEAF_AGENT_PASSWORD"},
		{"leaf-host.conf", "HUB_LEAF_URLS"},
	}
	for _, user := range hubUsers {
		cases = append(cases, struct {
			config   string
			variable string
		}{"hub-1.conf", hubPasswordVar(user)})
	}
	for _, c := range cases {
		t.Run(c.config+" "+c.variable, func(t *testing.T) {
			out, err := checkConfig(filepath.Join(dir, c.config), configEnv(c.variable))
			if err == nil {
				t.Fatalf("nats-server -t %s without %s succeeded, want an error", c.config, c.variable)
			}
			if !strings.Contains(out, c.variable) {
				t.Errorf("nats-server -t %s without %s printed %q, want the variable named", c.config, c.variable, out)
			}
		})
	}
}

// TestConfigsListenOnLoopback checks every listen address of the
// configurations: they are written for one machine and must not be
// reachable from others until an operator changes them.
func TestConfigsListenOnLoopback(t *testing.T) {
	for _, kv := range configEnv() {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	for _, name := range serverConfigs {
		t.Run(name, func(t *testing.T) {
			m, err := conf.ParseFile(filepath.Join(repoRoot, "server-config", name))
			if err != nil {
				t.Fatalf("parsing %s: %v", name, err)
			}
			addrs := map[string]any{"listen": m["listen"], "http": m["http"]}
			for _, block := range []string{"cluster", "leafnodes"} {
				if b, ok := m[block].(map[string]any); ok {
					addrs[block+".listen"] = b["listen"]
				}
			}
			if addrs["listen"] == nil {
				t.Errorf("%s has no listen address", name)
			}
			for key, v := range addrs {
				if v == nil {
					continue
				}
				addr, _ := v.(string)
				host, _, err := net.SplitHostPort(addr)
				if err != nil || !net.ParseIP(host).IsLoopback() {
					t.Errorf("%s: %s = %v, want a loopback host:port", name, key, v)
				}
			}
		})
	}
}

// TestSingleHost runs single-host.conf and uses it as the agent does when
// pointed at it: no credentials, a JetStream stream of one replica, and the
// same max payload as the agent's embedded server.
func TestSingleHost(t *testing.T) {
	dir := copyServerConfig(t)
	port := freePorts(t, 1)[0]
	config := renderFile(t, dir, "single-host.conf", "single-host.conf",
		loopback(4222), loopback(port),
		"/var/lib/binwatch/jetstream", filepath.Join(dir, "jetstream"))
	p := startServer(t, "single-host", config, nil)
	waitForPort(t, p, loopback(port))

	nc, err := nats.Connect("nats://"+loopback(port), nats.Name("integration single-host"))
	if err != nil {
		t.Fatalf("connecting without credentials: %v", err)
	}
	defer nc.Close()
	if got, want := nc.MaxPayload(), int64(8<<20); got != want {
		t.Errorf("max payload = %d, want %d as in the agent's embedded server", got, want)
	}

	js := newJetStream(t, nc)
	cfg := streamConfig(t)
	cfg.Replicas = 1
	poll(t, 10*time.Second, "creating the stream", func() error {
		_, err := js.CreateOrUpdateStream(testContext(t, 2*time.Second), cfg)
		return err
	})
	ack, err := js.Publish(testContext(t, 5*time.Second), "integrity.disk_mismatch.localhost",
		[]byte(alertJSON("single-1", "localhost")), jetstream.WithMsgID("single-1"))
	if err != nil {
		t.Fatalf("publishing an alert: %v", err)
	}
	if ack.Stream != streamName {
		t.Errorf("publish ack stream = %q, want %s", ack.Stream, streamName)
	}
}
