package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

const streamName = "INTEGRITY"

// TestHub starts the three hub nodes of server-config and checks the
// stream, the permissions of each kind of user, the leaf node of a host, and
// the loss of a node. The subtests share the cluster and run in order.
func TestHub(t *testing.T) {
	h := startHub(t, nil)
	admin, _ := h.connect(t, "admin")
	adminJS := newJetStream(t, admin)

	t.Run("stream created twice", func(t *testing.T) {
		cfg := streamConfig(t)
		first := createStream(t, adminJS, cfg)
		second := createStream(t, adminJS, cfg)
		if !second.Created.Equal(first.Created) {
			t.Errorf("second CreateOrUpdateStream: created %v, want the first stream's %v", second.Created, first.Created)
		}
		if got := second.Config.Replicas; got != 3 {
			t.Errorf("stream replicas = %d, want 3", got)
		}
		if second.Cluster == nil || second.Cluster.Leader == "" {
			t.Fatalf("stream cluster info = %+v, want a leader", second.Cluster)
		}
		if got := len(second.Cluster.Replicas); got != 2 {
			t.Errorf("stream has %d replicas besides the leader, want 2", got)
		}
		if got := second.Config.Subjects; !slices.Equal(got, []string{"integrity.>"}) {
			t.Errorf("stream subjects = %q, want [integrity.>]", got)
		}
	})

	t.Run("collector publishes only its host", func(t *testing.T) {
		ops, _ := h.connectTo(t, 0, "ops")
		records, err := ops.SubscribeSync("binwatch.process.>")
		if err != nil {
			t.Fatal(err)
		}
		flush(t, ops)
		collector, errs := h.connectTo(t, 0, "collector-hosta")

		// A forged record would reach the subscriber before the own one,
		// because both come from one connection through one server.
		publish(t, collector, "binwatch.process.hostb", "forged")
		waitForViolation(t, errs, "Publish", "binwatch.process.hostb")
		publish(t, collector, "binwatch.process.hosta", "own")
		flush(t, collector)

		msg, err := records.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("ops did not receive the record of hosta: %v", err)
		}
		if msg.Subject != "binwatch.process.hosta" || string(msg.Data) != "own" {
			t.Errorf("ops received %q on %s, want \"own\" on binwatch.process.hosta", msg.Data, msg.Subject)
		}
	})

	t.Run("collector cannot read records", func(t *testing.T) {
		collector, errs := h.connect(t, "collector-hosta")
		if _, err := collector.SubscribeSync("binwatch.process.hosta"); err != nil {
			t.Fatal(err)
		}
		waitForViolation(t, errs, "Subscription", "binwatch.process.hosta")
	})

	t.Run("agent reads only its host", func(t *testing.T) {
		agent, errs := h.connectTo(t, 1, "agent-hosta")
		own, err := agent.SubscribeSync("binwatch.process.hosta")
		if err != nil {
			t.Fatal(err)
		}
		for _, subject := range []string{"binwatch.process.hostb", "binwatch.process.*"} {
			if _, err := agent.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			waitForViolation(t, errs, "Subscription", subject)
		}
		flush(t, agent)
		collector, _ := h.connectTo(t, 1, "collector-hosta")
		publish(t, collector, "binwatch.process.hosta", "scan")
		flush(t, collector)
		if _, err := own.NextMsg(5 * time.Second); err != nil {
			t.Errorf("agent-hosta did not receive its own host's record: %v", err)
		}
	})

	t.Run("agent alerts acknowledged once", func(t *testing.T) {
		agent, _ := h.connect(t, "agent-hosta")
		js := newJetStream(t, agent)
		first := publishAlert(t, js, "integrity.disk_mismatch.hosta", "alert-1")
		if first.Stream != streamName || first.Duplicate {
			t.Errorf("first publish ack = %+v, want stream %s, not duplicate", first, streamName)
		}
		second := publishAlert(t, js, "integrity.disk_mismatch.hosta", "alert-1")
		if !second.Duplicate || second.Sequence != first.Sequence {
			t.Errorf("second publish ack = %+v, want a duplicate of sequence %d", second, first.Sequence)
		}
	})

	t.Run("agent publishes only its host", func(t *testing.T) {
		agent, errs := h.connect(t, "agent-hosta")
		publish(t, agent, "integrity.disk_mismatch.hostb", alertJSON("forged", "hostb"))
		waitForViolation(t, errs, "Publish", "integrity.disk_mismatch.hostb")
		if n := storedSubjects(t, adminJS, "integrity.*.hostb"); n != 0 {
			t.Errorf("stream has %d messages on integrity.*.hostb, want 0", n)
		}
	})

	t.Run("siem reads alerts", func(t *testing.T) {
		siem, errs := h.connect(t, "siem")
		js := newJetStream(t, siem)
		ctx := testContext(t, 5*time.Second)
		stream, err := js.Stream(ctx, streamName)
		if err != nil {
			t.Fatalf("siem: stream info: %v", err)
		}
		consumer, err := stream.CreateOrUpdateConsumer(ctx, siemConsumerConfig(t))
		if err != nil {
			t.Fatalf("siem: creating the durable consumer: %v", err)
		}

		batch, err := consumer.FetchNoWait(10)
		if err != nil {
			t.Fatalf("siem: fetch: %v", err)
		}
		var subjects []string
		for msg := range batch.Messages() {
			subjects = append(subjects, msg.Subject())
			if err := msg.DoubleAck(ctx); err != nil {
				t.Errorf("siem: ack of %s: %v", msg.Subject(), err)
			}
		}
		if err := batch.Error(); err != nil {
			t.Errorf("siem: fetch ended with %v", err)
		}

		if !slices.Equal(subjects, []string{"integrity.disk_mismatch.hosta"}) {
			t.Errorf("siem fetched %q, want [integrity.disk_mismatch.hosta]", subjects)
		}
		if err := errs.find("Permissions Violation"); err != nil {
			t.Errorf("siem got %v while reading", err)
		}
	})

	t.Run("siem cannot change the stream", func(t *testing.T) {
		siem, errs := h.connect(t, "siem")
		js := newJetStream(t, siem)
		before := streamMessages(t, adminJS)

		publish(t, siem, "integrity.disk_mismatch.hosta", alertJSON("forged", "hosta"))
		waitForViolation(t, errs, "Publish", "integrity.disk_mismatch.hosta")

		// A denied request has no responder, so each ends with its timeout.
		const denied = 500 * time.Millisecond
		if err := js.DeleteStream(testContext(t, denied), streamName); err == nil {
			t.Error("siem: DeleteStream succeeded, want an error")
		}
		waitForViolation(t, errs, "Publish", "$JS.API.STREAM.DELETE.INTEGRITY")

		stream, err := js.Stream(testContext(t, 2*time.Second), streamName)
		if err != nil {
			t.Fatalf("siem: stream info: %v", err)
		}
		if err := stream.Purge(testContext(t, denied)); err == nil {
			t.Error("siem: Purge succeeded, want an error")
		}
		waitForViolation(t, errs, "Publish", "$JS.API.STREAM.PURGE.INTEGRITY")

		other := siemConsumerConfig(t)
		other.Durable = "other"
		if _, err := stream.CreateOrUpdateConsumer(testContext(t, denied), other); err == nil {
			t.Error("siem: creating consumer \"other\" succeeded, want an error")
		}
		waitForViolation(t, errs, "Publish", "$JS.API.CONSUMER.CREATE.INTEGRITY.other")

		if after := streamMessages(t, adminJS); after != before {
			t.Errorf("stream has %d messages after the siem's attempts, want %d", after, before)
		}
	})

	t.Run("watch receives alerts only", func(t *testing.T) {
		watch, errs := h.connectTo(t, 2, "watch")
		alerts, err := watch.SubscribeSync("integrity.>")
		if err != nil {
			t.Fatal(err)
		}
		flush(t, watch)

		// The alert enters HOSTS at node 0 and reaches the subscriber of
		// ALERTS at node 2 through the service import and a route.
		agent, _ := h.connectTo(t, 0, "agent-hosta")
		publishAlert(t, newJetStream(t, agent), "integrity.binary_change.hosta", "watched-1")
		msg, err := alerts.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("watch did not receive alert watched-1: %v", err)
		}
		if got, want := string(msg.Data), alertJSON("watched-1", "hosta"); msg.Subject != "integrity.binary_change.hosta" || got != want {
			t.Errorf("watch received %s on %s, want %s on integrity.binary_change.hosta", got, msg.Subject, want)
		}

		before := streamMessages(t, adminJS)
		for _, subject := range []string{"integrity.disk_mismatch.hosta", "$JS.API.STREAM.INFO.INTEGRITY"} {
			publish(t, watch, subject, alertJSON("forged", "hosta"))
			waitForViolation(t, errs, "Publish", subject)
		}
		for _, subject := range []string{"binwatch.process.>", "_INBOX.>", "$SRV.>"} {
			if _, err := watch.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			waitForViolation(t, errs, "Subscription", subject)
		}
		if after := streamMessages(t, adminJS); after != before {
			t.Errorf("stream has %d messages after watch's attempts, want %d", after, before)
		}
	})

	// Any HOSTS subscription on integrity.> that ends withdraws the
	// service import's interest from the leaf nodes in nats-server 2.15.3,
	// so no HOSTS user may subscribe to an alert subject.
	t.Run("hosts cannot subscribe to alerts", func(t *testing.T) {
		subjects := []string{"integrity.>", "integrity.*.*", "integrity.disk_mismatch.hosta", ">"}
		for _, user := range []string{"ops", "collector-hosta", "agent-hosta", "collector-hostb", "agent-hostb"} {
			nc, errs := h.connect(t, user)
			for _, subject := range subjects {
				if _, err := nc.SubscribeSync(subject); err != nil {
					t.Fatal(err)
				}
				waitForViolation(t, errs, "Subscription", subject)
			}
		}
	})

	t.Run("leaf forwards its host's alerts", func(t *testing.T) {
		leafURL, local := startLeaf(t, h, "leaf-hosta", "hosta", "leaf-hosta")
		h.waitForLeaf(t, "HOSTS", "leaf-hosta")
		agent, agentErrs := connectUser(t, leafURL, "agent", local["agent"])
		js := newJetStream(t, agent)

		// The hub's interest in integrity.> reaches the leaf shortly after
		// it connects; until then the leaf has no responder.
		var ack *jetstream.PubAck
		poll(t, 10*time.Second, "alert from the leaf node", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var err error
			ack, err = js.Publish(ctx, "integrity.binary_change.hosta",
				[]byte(alertJSON("leaf-1", "hosta")), jetstream.WithMsgID("leaf-1"))
			return err
		})
		if ack.Stream != streamName {
			t.Errorf("leaf publish ack stream = %q, want %s", ack.Stream, streamName)
		}
		stream, err := adminJS.Stream(testContext(t, 5*time.Second), streamName)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stream.GetLastMsgForSubject(testContext(t, 5*time.Second), "integrity.binary_change.hosta")
		if err != nil {
			t.Fatalf("hub stream: last message on integrity.binary_change.hosta: %v", err)
		}
		if got, want := string(msg.Data), alertJSON("leaf-1", "hosta"); got != want {
			t.Errorf("hub stream message = %s, want %s", got, want)
		}

		t.Run("local users", func(t *testing.T) {
			records, err := agent.SubscribeSync("binwatch.process.*")
			if err != nil {
				t.Fatal(err)
			}
			flush(t, agent)
			collector, errs := connectUser(t, leafURL, "collector", local["collector"])
			publish(t, collector, "binwatch.process.hostb", "forged")
			waitForViolation(t, errs, "Publish", "binwatch.process.hostb")
			publish(t, collector, "binwatch.process.hosta", "own")
			flush(t, collector)
			msg, err := records.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("local agent did not receive the record: %v", err)
			}
			if msg.Subject != "binwatch.process.hosta" || string(msg.Data) != "own" {
				t.Errorf("local agent received %q on %s, want \"own\" on binwatch.process.hosta", msg.Data, msg.Subject)
			}
			publish(t, agent, "integrity.disk_mismatch.hostb", alertJSON("forged", "hostb"))
			waitForViolation(t, agentErrs, "Publish", "integrity.disk_mismatch.hostb")
		})

		t.Run("micro service reached from hub", func(t *testing.T) {
			svc, err := micro.AddService(agent, micro.Config{Name: "binwatch-agent", Version: "0.0.1"})
			if err != nil {
				t.Fatalf("adding micro service on the leaf: %v", err)
			}
			defer svc.Stop()
			ops, _ := h.connect(t, "ops")
			var ping micro.Ping
			poll(t, 10*time.Second, "$SRV.PING through the leaf", func() error {
				reply, err := ops.Request("$SRV.PING.binwatch-agent", nil, 500*time.Millisecond)
				if err != nil {
					return err
				}
				return json.Unmarshal(reply.Data, &ping)
			})
			if ping.Name != "binwatch-agent" || ping.ID != svc.Info().ID {
				t.Errorf("ping reply = %+v, want name binwatch-agent and id %s", ping, svc.Info().ID)
			}
		})
	})

	t.Run("leaf cannot speak for another host", func(t *testing.T) {
		// A leaf of hostb that logs in to the hub as leaf-hosta.
		leafURL, local := startLeaf(t, h, "leaf-forged", "hostb", "leaf-hosta")
		h.waitForLeaf(t, "HOSTS", "leaf-hostb")
		agent, _ := connectUser(t, leafURL, "agent", local["agent"])
		js := newJetStream(t, agent)
		ctx := testContext(t, 2*time.Second)
		_, err := js.Publish(ctx, "integrity.binary_change.hostb",
			[]byte(alertJSON("forged", "hostb")), jetstream.WithMsgID("forged-leaf"))
		if err == nil {
			t.Fatal("alert for hostb through the leaf of hosta was acknowledged, want an error")
		}
		if n := storedSubjects(t, adminJS, "integrity.*.hostb"); n != 0 {
			t.Errorf("stream has %d messages on integrity.*.hostb, want 0", n)
		}
	})

	t.Run("node killed without losing alerts", func(t *testing.T) {
		testNodeLoss(t, h, adminJS)
	})
}

// testNodeLoss publishes alerts while the stream's leader is killed with
// SIGKILL, retrying each unacknowledged alert with its Nats-Msg-Id. Once
// the restarted node has caught up, the stream must hold each alert
// exactly once.
func testNodeLoss(t *testing.T, h *hub, adminJS jetstream.JetStream) {
	const (
		total   = 200
		killAt  = 50
		subject = "integrity.telemetry_gap.hosta"
	)
	stream, err := adminJS.Stream(testContext(t, 5*time.Second), streamName)
	if err != nil {
		t.Fatal(err)
	}
	leaderName := stream.CachedInfo().Cluster.Leader
	leader := slices.IndexFunc(h.nodes, func(n *hubNode) bool { return n.name == leaderName })
	if leader < 0 {
		t.Fatalf("stream leader %q is not a hub node", leaderName)
	}
	agent, _ := h.connect(t, "agent-hosta")
	js := newJetStream(t, agent)

	var killed time.Time
	var longest time.Duration
	retries := 0
	for i := range total {
		if i == killAt {
			h.nodes[leader].proc.kill(t)
			killed = time.Now()
		}
		id := fmt.Sprintf("loss-%03d", i)
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := js.Publish(ctx, subject, []byte(alertJSON(id, "hosta")), jetstream.WithMsgID(id))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alert %s not acknowledged 30s after %s was killed: %v", id, leaderName, err)
			}
			retries++
			time.Sleep(50 * time.Millisecond)
		}
		longest = max(longest, time.Since(start))
	}
	t.Logf("killed stream leader %s at alert %d; %d retries; longest wait for an ack %s; all %d acknowledged %s after the kill",
		leaderName, killAt, retries, longest.Round(time.Millisecond), total, time.Since(killed).Round(time.Millisecond))

	// The restarted node replays its store and the stream leader brings it
	// up to date.
	restarted := time.Now()
	h.nodes[leader].proc.start(t)
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

	ids := storedPayloadIDs(t, adminJS, subject)
	if len(ids) != total {
		t.Errorf("stream has %d distinct alerts on %s, want %d", len(ids), subject, total)
	}
	for i := range total {
		id := fmt.Sprintf("loss-%03d", i)
		if n := ids[id]; n != 1 {
			t.Errorf("alert %s stored %d times, want 1", id, n)
		}
	}
}

// storedPayloadIDs reads the stream message by message, from the stream
// leader, and counts the alerts on subject per id. It starts over while
// the cluster does not respond.
func storedPayloadIDs(t *testing.T, js jetstream.JetStream, subject string) map[string]int {
	t.Helper()
	var ids map[string]int
	poll(t, 30*time.Second, "reading "+subject, func() error {
		ids = map[string]int{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := js.Stream(ctx, streamName)
		if err != nil {
			return fmt.Errorf("stream info: %w", err)
		}
		state := stream.CachedInfo().State
		for seq := state.FirstSeq; seq <= state.LastSeq; seq++ {
			msg, err := stream.GetMsg(ctx, seq)
			if err != nil {
				return fmt.Errorf("message %d: %w", seq, err)
			}
			if msg.Subject != subject {
				continue
			}
			var alert struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(msg.Data, &alert); err != nil {
				t.Fatalf("decoding message %d %s: %v", seq, msg.Data, err)
			}
			ids[alert.ID]++
		}
		return nil
	})
	return ids
}

// alertJSON returns a small alert in the protobuf JSON form of
// IntegrityAlert.
func alertJSON(id, host string) string {
	return fmt.Sprintf(`{"id":%q,"kind":"ALERT_KIND_DISK_MISMATCH","host":{"id":%q}}`, id, host)
}

func newJetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return js
}

func createStream(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) *jetstream.StreamInfo {
	t.Helper()
	stream, err := js.CreateOrUpdateStream(testContext(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("CreateOrUpdateStream(%s): %v", cfg.Name, err)
	}
	return stream.CachedInfo()
}

func publishAlert(t *testing.T, js jetstream.JetStream, subject, id string) *jetstream.PubAck {
	t.Helper()
	ack, err := js.Publish(testContext(t, 5*time.Second), subject, []byte(alertJSON(id, "hosta")), jetstream.WithMsgID(id))
	if err != nil {
		t.Fatalf("publishing alert %s on %s: %v", id, subject, err)
	}
	return ack
}

// storedSubjects returns how many messages of the stream match filter.
func storedSubjects(t *testing.T, js jetstream.JetStream, filter string) uint64 {
	t.Helper()
	ctx := testContext(t, 5*time.Second)
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatalf("stream info for %s: %v", filter, err)
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	return n
}

func streamMessages(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx := testContext(t, 5*time.Second)
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return stream.CachedInfo().State.Msgs
}

func publish(t *testing.T, nc *nats.Conn, subject, data string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(data)); err != nil {
		t.Fatalf("publishing on %s: %v", subject, err)
	}
}

func flush(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("flush: %v", err)
	}
}

// testContext returns a context that ends after timeout or with the test.
func testContext(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// connectTo connects user to hub node i only, so that subscribers and
// publishers on the same node see each other's interest at once.
func (h *hub) connectTo(t *testing.T, i int, user string) (*nats.Conn, *asyncErrors) {
	t.Helper()
	var opts []nats.Option
	if h.pki != nil {
		opts = append(opts, nats.RootCAs(h.pki.path("ca.pem")),
			nats.ClientCert(h.pki.path("client.pem"), h.pki.path("client-key.pem")))
	}
	return connectUser(t, h.nodes[i].clientURL(h.pki), user, h.passwords[user], opts...)
}
