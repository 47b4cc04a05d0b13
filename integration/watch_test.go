package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestWatchersKeepLeafAlerts subscribes to alerts at the hub as the watch
// user and ends each subscriber, by unsubscribing and by killing its hub
// node. After each, an agent behind a leaf node must still get its next
// alert acknowledged at once. In nats-server 2.15.3 the end of a HOSTS
// subscription on exactly integrity.> withdraws that subject from every
// leaf node, so the integrity.> cases fail if the watch user is moved into
// HOSTS. A subscription on integrity.*.* does not trigger that.
func TestWatchersKeepLeafAlerts(t *testing.T) {
	h := startHub(t, nil)
	admin, _ := h.connect(t, "admin")
	adminJS := newJetStream(t, admin)
	createStream(t, adminJS, streamConfig(t))

	// The leaf node connects to node 0 only, which the test never kills,
	// so that it keeps the interest that the hub sent when it connected.
	leafURL, local := startLeafOn(t, h, h.nodes[:1], "leaf-hosta", "hosta", "leaf-hosta")
	h.waitForLeaf(t, "HOSTS", "leaf-hosta")
	agent, _ := connectUser(t, leafURL, "agent", local["agent"])
	agentJS := newJetStream(t, agent)

	// A responder on the leaf node, for syncLeaf.
	responder, err := agent.Subscribe("binwatch.agent.hosta.counters", func(m *nats.Msg) {
		_ = m.Respond([]byte("{}"))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = responder.Unsubscribe() })
	flush(t, agent)

	sent := 0
	publishAlert := func(timeout time.Duration) (string, error) {
		sent++
		id := fmt.Sprintf("watch-%03d", sent)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := agentJS.Publish(ctx, "integrity.disk_mismatch.hosta", []byte(alertJSON(id, "hosta")), jetstream.WithMsgID(id))
		return id, err
	}
	// The hub's interest in integrity.> reaches the leaf node shortly after
	// it connects.
	poll(t, 10*time.Second, "first alert from the leaf node", func() error {
		_, err := publishAlert(time.Second)
		return err
	})

	cases := []struct {
		name    string
		node    int
		subject string
	}{
		{"integrity.> on the leaf's node", 0, "integrity.>"},
		{"integrity.> on another node", 1, "integrity.>"},
		{"integrity.*.* on the leaf's node", 0, "integrity.*.*"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			watch, errs := h.connectTo(t, c.node, "watch")
			sub, err := watch.SubscribeSync(c.subject)
			if err != nil {
				t.Fatal(err)
			}
			flush(t, watch)
			id := receiveAlert(t, sub, publishAlert)

			if err := sub.Unsubscribe(); err != nil {
				t.Fatalf("unsubscribing from %s: %v", c.subject, err)
			}
			flush(t, watch)
			syncLeaf(t, h, c.node)
			if next, err := publishAlert(2 * time.Second); err != nil {
				t.Errorf("alert %s after watch unsubscribed from %s on %s: %v, want an acknowledgement",
					next, c.subject, h.nodes[c.node].name, err)
			}
			if err := errs.find("Permissions Violation"); err != nil {
				t.Errorf("watch got %v after receiving alert %s", err, id)
			}
		})
	}

	t.Run("watch's node killed", func(t *testing.T) {
		node := h.nodes[2]
		watch, _ := h.connectTo(t, 2, "watch")
		sub, err := watch.SubscribeSync("integrity.>")
		if err != nil {
			t.Fatal(err)
		}
		flush(t, watch)
		receiveAlert(t, sub, publishAlert)

		node.proc.kill(t)
		// The stream has lost a replica, maybe its leader, so the first
		// alerts may time out while the other two nodes elect one.
		killed := time.Now()
		poll(t, 20*time.Second, "alert after "+node.name+" was killed", func() error {
			_, err := publishAlert(time.Second)
			return err
		})
		t.Logf("alert acknowledged %s after %s was killed", time.Since(killed).Round(time.Millisecond), node.name)
	})
}

// receiveAlert publishes an alert through publish and returns its id once
// sub has received it.
func receiveAlert(t *testing.T, sub *nats.Subscription, publish func(time.Duration) (string, error)) string {
	t.Helper()
	// A subscription made on another node reaches the node where the leaf
	// delivers a moment later, over the route, so alerts are sent until
	// one arrives.
	deadline := time.Now().Add(10 * time.Second)
	for {
		id, err := publish(5 * time.Second)
		if err != nil {
			t.Fatalf("alert %s while watch subscribed to %s: %v", id, sub.Subject, err)
		}
		msg, err := sub.NextMsg(time.Second)
		if err == nil {
			// Alerts sent before the interest arrived are not delivered;
			// take the newest one that was.
			for {
				next, err := sub.NextMsg(100 * time.Millisecond)
				if err != nil {
					break
				}
				msg = next
			}
			if got, want := string(msg.Data), alertJSON(id, "hosta"); msg.Subject != "integrity.disk_mismatch.hosta" || got != want {
				t.Errorf("watch received %s on %s, want %s on integrity.disk_mismatch.hosta", got, msg.Subject, want)
			}
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch did not receive alert %s on %s: %v", id, sub.Subject, err)
		}
	}
}

// syncLeaf sends a request from hub node i to the responder on the leaf
// node. The reply comes after the leaf node has handled every interest
// change of the HOSTS account that node i sent before the request,
// because both travel in order on that account's route and on the leaf
// connection.
func syncLeaf(t *testing.T, h *hub, i int) {
	t.Helper()
	ops, _ := h.connectTo(t, i, "ops")
	if _, err := ops.Request("binwatch.agent.hosta.counters", nil, 5*time.Second); err != nil {
		t.Fatalf("request from %s to the leaf node: %v", h.nodes[i].name, err)
	}
	ops.Close()
}

// TestHostsPermissionsExcludeAlerts loads the hub configuration and checks
// the subscribe permissions of every HOSTS user, leaf node users among
// them: none may overlap integrity.>.
func TestHostsPermissionsExcludeAlerts(t *testing.T) {
	for _, kv := range configEnv() {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(repoRoot, "server-config", "hub-1.conf"))
	if err != nil {
		t.Fatalf("loading hub-1.conf: %v", err)
	}
	hosts := 0
	for _, u := range opts.Users {
		if u.Account == nil || u.Account.Name != "HOSTS" {
			continue
		}
		hosts++
		if u.Permissions == nil || u.Permissions.Subscribe == nil || len(u.Permissions.Subscribe.Allow) == 0 {
			t.Errorf("user %s of HOSTS may subscribe to every subject, want an allow list without integrity.>", u.Username)
			continue
		}
		for _, subject := range u.Permissions.Subscribe.Allow {
			if server.SubjectsCollide(subject, "integrity.>") {
				t.Errorf("user %s of HOSTS may subscribe to %s, which overlaps integrity.>", u.Username, subject)
			}
		}
	}
	if hosts == 0 {
		t.Fatal("hub-1.conf has no user in account HOSTS")
	}
}
