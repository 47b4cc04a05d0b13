package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestHubTLS turns on the TLS includes of the hub and leaf configurations:
// mutual TLS on the client, route and leafnode ports, with certificates that
// the test issues from its own CA.
func TestHubTLS(t *testing.T) {
	pki := newTestPKI(t)
	h := startHub(t, pki)
	admin, _ := h.connect(t, "admin")
	adminJS := newJetStream(t, admin)

	t.Run("routes form over mutual TLS", func(t *testing.T) {
		// An R3 stream needs all three nodes, which talk over the routes.
		info := createStream(t, adminJS, streamConfig(t))
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream cluster info = %+v, want a leader and 2 replicas", info.Cluster)
		}
		for _, n := range h.nodes {
			requireClientCertificate(t, loopback(n.cluster), pki, false)
		}
	})

	t.Run("client with certificate", func(t *testing.T) {
		ops, _ := h.connect(t, "ops")
		state, err := ops.TLSConnectionState()
		if err != nil {
			t.Fatalf("TLSConnectionState: %v", err)
		}
		if !state.HandshakeComplete || len(state.VerifiedChains) == 0 {
			t.Errorf("TLS state: handshake complete %v, %d verified chains, want true and at least 1",
				state.HandshakeComplete, len(state.VerifiedChains))
		}
	})

	t.Run("client without certificate rejected", func(t *testing.T) {
		nc, err := nats.Connect(h.nodes[0].clientURL(pki),
			nats.UserInfo("ops", h.passwords["ops"]),
			nats.RootCAs(pki.path("ca.pem")))
		if err == nil {
			nc.Close()
			t.Fatal("connecting without a client certificate succeeded, want an error")
		}
		if errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connecting without a client certificate: %v, want a TLS error before authentication", err)
		}
		t.Logf("without a client certificate: %v", err)
		for _, n := range h.nodes {
			requireClientCertificate(t, loopback(n.client), pki, true)
		}
	})

	t.Run("leaf node over mutual TLS", func(t *testing.T) {
		for _, n := range h.nodes {
			requireClientCertificate(t, loopback(n.leaf), pki, true)
		}
		leafURL, local := startLeaf(t, h, "leaf-hosta", "hosta", "leaf-hosta")
		h.waitForLeaf(t, "HOSTS", "leaf-hosta")
		agent, _ := connectUser(t, leafURL, "agent", local["agent"],
			nats.RootCAs(pki.path("ca.pem")),
			nats.ClientCert(pki.path("client.pem"), pki.path("client-key.pem")))
		js := newJetStream(t, agent)
		var ack *jetstream.PubAck
		poll(t, 10*time.Second, "alert from the TLS leaf node", func() error {
			var err error
			ack, err = js.Publish(testContext(t, time.Second), "integrity.binary_change.hosta",
				[]byte(alertJSON("tls-leaf-1", "hosta")), jetstream.WithMsgID("tls-leaf-1"))
			return err
		})
		if ack.Stream != streamName {
			t.Errorf("publish ack stream = %q, want %s", ack.Stream, streamName)
		}
	})
}

// requireClientCertificate checks that the nats-server port at addr
// rejects a TLS client that trusts the server but has no certificate of its
// own. Client and leafnode ports send an INFO line in clear text before the
// handshake (infoFirst), route ports start with the handshake.
func requireClientCertificate(t *testing.T, addr string, pki *testPKI, infoFirst bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if infoFirst {
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatalf("reading INFO from %s: %v", addr, err)
		}
		if !strings.HasPrefix(line, "INFO ") || !strings.Contains(line, `"tls_required":true`) {
			t.Fatalf("%s sent %q, want an INFO line with tls_required", addr, line)
		}
	}

	pem, err := os.ReadFile(pki.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	err = client.Handshake()
	if err == nil {
		// With TLS 1.3 the server rejects the missing certificate after
		// the client has finished its part of the handshake.
		_, err = client.Read(make([]byte, 1))
	}
	if err == nil {
		t.Fatalf("%s accepted a TLS client without a certificate", addr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: no answer to a TLS client without a certificate: %v", addr, err)
	}
}
