package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The fixed ports of hub node i (0, 1, 2) in server-config/hub-<i+1>.conf.
const (
	hubClientPort  = 4222
	hubClusterPort = 6222
	hubLeafPort    = 7422
	hubHTTPPort    = 8222
)

// hubUsers are the users of server-config/hub-accounts.conf.
var hubUsers = []string{
	"admin", "siem", "watch", "ops",
	"collector-hosta", "agent-hosta", "leaf-hosta",
	"collector-hostb", "agent-hostb", "leaf-hostb",
}

// hubPasswordVar returns the environment variable that holds user's
// password in hub-accounts.conf: HUB_ADMIN_PASSWORD for admin,
// HUB_HOSTA_AGENT_PASSWORD for agent-hosta.
func hubPasswordVar(user string) string {
	role, host, ok := strings.Cut(user, "-")
	if !ok {
		return "HUB_" + strings.ToUpper(user) + "_PASSWORD"
	}
	return "HUB_" + strings.ToUpper(host) + "_" + strings.ToUpper(role) + "_PASSWORD"
}

// copyServerConfig copies server-config into a new temporary directory, in
// which the tests render the files they start servers with.
func copyServerConfig(t *testing.T) string {
	t.Helper()
	src := filepath.Join(repoRoot, "server-config")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
	return dst
}

// renderFile writes dir/dst from dir/src with each (old, new) pair of
// replacements applied in one pass. Every old string must occur in src, so
// that a change to a configuration file that a test relies on fails here
// and is not silently tested in another form.
func renderFile(t *testing.T, dir, src, dst string, pairs ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, src))
	if err != nil {
		t.Fatalf("rendering %s: %v", src, err)
	}
	text := string(data)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("rendering %s: %q not found in server-config/%s", dst, pairs[i], src)
		}
	}
	text = strings.NewReplacer(pairs...).Replace(text)
	path := filepath.Join(dir, dst)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatalf("rendering %s: %v", dst, err)
	}
	return path
}

// tlsIncludes are the commented includes that turn TLS on in the hub and
// leaf configurations.
var tlsIncludes = map[string]string{
	"client":   "# include ./tls/client-mtls.conf",
	"cluster":  "# include ./tls/cluster-mtls.conf",
	"leafnode": "# include ./tls/leafnode-mtls.conf",
	"remote":   "# include ./tls/leaf-remote-tls.conf",
}

// uncomment returns the replacement pair that turns on a commented include.
func uncomment(include string) []string {
	return []string{include, strings.TrimPrefix(include, "# ")}
}

// renderTLSFiles points the TLS stanzas in dir/tls at the files of pki.
func renderTLSFiles(t *testing.T, dir string, pki *testPKI) {
	t.Helper()
	for _, name := range []string{"client-mtls.conf", "client-tls.conf", "cluster-mtls.conf", "leafnode-mtls.conf", "leaf-remote-tls.conf"} {
		rel := filepath.Join("tls", name)
		renderFile(t, dir, rel, rel, "/etc/nats/tls/", pki.dir+"/")
	}
}

// hubNode is one running node of the hub cluster.
type hubNode struct {
	name                           string
	client, cluster, leaf, monitor int
	proc                           *serverProcess
}

func (n *hubNode) clientURL(pki *testPKI) string {
	scheme := "nats"
	if pki != nil {
		scheme = "tls"
	}
	return scheme + "://" + loopback(n.client)
}

// hub is the three-node cluster of hub-1.conf, hub-2.conf and hub-3.conf,
// rendered with free ports and a temporary store.
type hub struct {
	dir       string
	nodes     []*hubNode
	env       []string
	passwords map[string]string
	// pki is set when TLS is on for clients, routes and leaf nodes.
	pki *testPKI
}

// startHub starts the three hub nodes and waits until JetStream has a meta
// leader. With pki set, the TLS includes of the hub configurations are
// turned on.
func startHub(t *testing.T, pki *testPKI) *hub {
	t.Helper()
	h := &hub{dir: copyServerConfig(t), passwords: map[string]string{}, pki: pki}
	for _, user := range hubUsers {
		pw := randomPassword(t)
		h.passwords[user] = pw
		h.env = append(h.env, hubPasswordVar(user)+"="+pw)
	}
	if pki != nil {
		renderTLSFiles(t, h.dir, pki)
	}

	ports := freePorts(t, 12)
	for i := range 3 {
		h.nodes = append(h.nodes, &hubNode{
			name:    "hub-" + strconv.Itoa(i+1),
			client:  ports[4*i],
			cluster: ports[4*i+1],
			leaf:    ports[4*i+2],
			monitor: ports[4*i+3],
		})
	}
	for i, n := range h.nodes {
		pairs := []string{
			loopback(hubClientPort + i), loopback(n.client),
			loopback(hubLeafPort + i), loopback(n.leaf),
			loopback(hubHTTPPort + i), loopback(n.monitor),
			"/var/lib/nats/" + n.name, filepath.Join(h.dir, "data", n.name),
		}
		for j, other := range h.nodes {
			pairs = append(pairs, loopback(hubClusterPort+j), loopback(other.cluster))
		}
		if pki != nil {
			pairs = append(pairs, uncomment(tlsIncludes["client"])...)
			pairs = append(pairs, uncomment(tlsIncludes["cluster"])...)
			pairs = append(pairs, uncomment(tlsIncludes["leafnode"])...)
		}
		config := renderFile(t, h.dir, n.name+".conf", n.name+".conf", pairs...)
		n.proc = startServer(t, n.name, config, h.env)
	}
	for _, n := range h.nodes {
		waitForPort(t, n.proc, loopback(n.client))
	}
	h.waitForJetStream(t)
	return h
}

// waitForJetStream polls until every node's /healthz reports it healthy,
// which includes being current with the JetStream meta leader, and until
// the ALERTS account's JetStream API responds.
func (h *hub) waitForJetStream(t *testing.T) {
	t.Helper()
	for _, n := range h.nodes {
		poll(t, 30*time.Second, n.name+" healthz", func() error {
			resp, err := http.Get("http://" + loopback(n.monitor) + "/healthz")
			if err != nil {
				return err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s: %s", resp.Status, body)
			}
			return nil
		})
	}
	nc, _ := h.connect(t, "admin")
	defer nc.Close()
	js := newJetStream(t, nc)
	poll(t, 30*time.Second, "JetStream account info", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
}

func (h *hub) clientURLs() string {
	urls := make([]string, len(h.nodes))
	for i, n := range h.nodes {
		urls[i] = n.clientURL(h.pki)
	}
	return strings.Join(urls, ",")
}

// leafURLs returns the leafnode URLs of nodes with user's credentials, as
// the bracketed list that HUB_LEAF_URLS of leaf-host.conf takes.
func (h *hub) leafURLs(user string, nodes []*hubNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = fmt.Sprintf("%q", "nats-leaf://"+user+":"+h.passwords[user]+"@"+loopback(n.leaf))
	}
	return "[" + strings.Join(urls, ", ") + "]"
}

// connect connects user to every node of the hub, with a client certificate
// when TLS is on.
func (h *hub) connect(t *testing.T, user string, opts ...nats.Option) (*nats.Conn, *asyncErrors) {
	t.Helper()
	if h.pki != nil {
		opts = append(opts, nats.RootCAs(h.pki.path("ca.pem")),
			nats.ClientCert(h.pki.path("client.pem"), h.pki.path("client-key.pem")))
	}
	return connectUser(t, h.clientURLs(), user, h.passwords[user], opts...)
}

// leafzLeaf is one leaf connection in the monitoring port's /leafz.
type leafzLeaf struct {
	Name    string `json:"name"`
	Account string `json:"account"`
}

// leafs returns the leaf connections of all nodes.
func (h *hub) leafs() ([]leafzLeaf, error) {
	var all []leafzLeaf
	for _, n := range h.nodes {
		if !n.proc.running() {
			continue
		}
		resp, err := http.Get("http://" + loopback(n.monitor) + "/leafz")
		if err != nil {
			return nil, fmt.Errorf("leafz of %s: %w", n.name, err)
		}
		var body struct {
			Leafs []leafzLeaf `json:"leafs"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("decoding leafz of %s: %w", n.name, err)
		}
		all = append(all, body.Leafs...)
	}
	return all, nil
}

// waitForLeaf polls until a leaf node named server is connected to the hub
// in account.
func (h *hub) waitForLeaf(t *testing.T, account, server string) {
	t.Helper()
	poll(t, 15*time.Second, "leaf connection of "+server, func() error {
		leafs, err := h.leafs()
		if err != nil {
			return err
		}
		for _, l := range leafs {
			if l.Name == server && l.Account == account {
				return nil
			}
		}
		return fmt.Errorf("leaf connections %+v, want %s in account %s", leafs, server, account)
	})
}

// connzConn is one client connection in the monitoring port's /connz.
type connzConn struct {
	User string   `json:"authorized_user"`
	Subs []string `json:"subscriptions_list"`
}

// waitForSubscriber polls until a client of user is subscribed to subject
// on a running node of the hub, and returns that node's name.
func (h *hub) waitForSubscriber(t *testing.T, user, subject string) string {
	t.Helper()
	var node string
	poll(t, 15*time.Second, user+" subscribed to "+subject, func() error {
		for _, n := range h.nodes {
			if !n.proc.running() {
				continue
			}
			resp, err := http.Get("http://" + loopback(n.monitor) + "/connz?auth=true&subs=true")
			if err != nil {
				return fmt.Errorf("connz of %s: %w", n.name, err)
			}
			var body struct {
				Connections []connzConn `json:"connections"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("decoding connz of %s: %w", n.name, err)
			}
			for _, c := range body.Connections {
				if c.User == user && slices.Contains(c.Subs, subject) {
					node = n.name
					return nil
				}
			}
		}
		return fmt.Errorf("no connection of %s subscribed to %s", user, subject)
	})
	return node
}

// asyncErrors collects the errors that the server sends a connection
// asynchronously, permission violations among them.
type asyncErrors struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrors) add(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

// find returns the first collected error whose text contains text.
func (a *asyncErrors) find(text string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, err := range a.errs {
		if strings.Contains(err.Error(), text) {
			return err
		}
	}
	return nil
}

// waitForViolation polls until the server reported a permissions violation
// for op ("Publish" or "Subscription") on subject.
func waitForViolation(t *testing.T, errs *asyncErrors, op, subject string) {
	t.Helper()
	text := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
	poll(t, 5*time.Second, "permissions violation", func() error {
		err := errs.find(text)
		if err == nil {
			return fmt.Errorf("no error with %q received", text)
		}
		if !strings.Contains(err.Error(), nats.ErrPermissionViolation.Error()) {
			return fmt.Errorf("error %q is not a permissions violation", err)
		}
		return nil
	})
}

// connectUser connects to urls as user and closes the connection when the
// test ends.
func connectUser(t *testing.T, urls, user, password string, opts ...nats.Option) (*nats.Conn, *asyncErrors) {
	t.Helper()
	errs := &asyncErrors{}
	opts = append([]nats.Option{
		nats.Name("integration " + user),
		nats.UserInfo(user, password),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs.add(err) }),
	}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatalf("connecting to %s as %s: %v", urls, user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func randomPassword(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("reading random bytes: %v", err)
	}
	return "pw-" + hex.EncodeToString(b)
}

// loadJSON decodes server-config/name into v, rejecting unknown fields so
// that a misspelt setting fails the test.
func loadJSON(t *testing.T, name string, v any) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "server-config", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding server-config/%s: %v", name, err)
	}
}

func streamConfig(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	var cfg jetstream.StreamConfig
	loadJSON(t, "integrity-stream.json", &cfg)
	return cfg
}

func siemConsumerConfig(t *testing.T) jetstream.ConsumerConfig {
	t.Helper()
	var cfg jetstream.ConsumerConfig
	loadJSON(t, "siem-consumer.json", &cfg)
	return cfg
}

// startLeaf starts a leaf node from leaf-host.conf on a free port, with the
// hub credentials of hubUser. host replaces hosta in the file when it is
// not hosta. It returns the client URL and the local users' passwords.
func startLeaf(t *testing.T, h *hub, name, host, hubUser string) (string, map[string]string) {
	t.Helper()
	return startLeafOn(t, h, h.nodes, name, host, hubUser)
}

// startLeafOn starts a leaf node as startLeaf does, with the leafnode URLs
// of nodes only. The hub still tells the leaf node the URLs of the other
// nodes, which it uses when it reconnects.
func startLeafOn(t *testing.T, h *hub, nodes []*hubNode, name, host, hubUser string) (string, map[string]string) {
	t.Helper()
	port := freePorts(t, 1)[0]
	pairs := []string{loopback(4222), loopback(port)}
	if host != "hosta" {
		pairs = append(pairs, "hosta", host)
	}
	if h.pki != nil {
		pairs = append(pairs, uncomment(tlsIncludes["client"])...)
		pairs = append(pairs, uncomment(tlsIncludes["remote"])...)
	}
	config := renderFile(t, h.dir, "leaf-host.conf", name+".conf", pairs...)
	local := map[string]string{"collector": randomPassword(t), "agent": randomPassword(t)}
	env := []string{
		"LEAF_COLLECTOR_PASSWORD=" + local["collector"],
		"LEAF_AGENT_PASSWORD=" + local["agent"],
		"HUB_LEAF_URLS=" + h.leafURLs(hubUser, nodes),
	}
	p := startServer(t, name, config, env)
	waitForPort(t, p, loopback(port))
	scheme := "nats"
	if h.pki != nil {
		scheme = "tls"
	}
	return scheme + "://" + loopback(port), local
}
