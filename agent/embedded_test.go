package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/binwatch/binwatch/schema"
)

func TestStartEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	_, err = StartEmbedded(EmbeddedOptions{Listen: l.Addr().String()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatalf("StartEmbedded on a port in use = nil error, want one")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error = %v, want it to name the cause", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("StartEmbedded took %s to fail, want it to fail as soon as the listen fails", d)
	}
}

func TestStartEmbeddedInvalidListen(t *testing.T) {
	for _, listen := range []string{"nope", "127.0.0.1:x", "127.0.0.1:70000"} {
		if _, err := StartEmbedded(EmbeddedOptions{Listen: listen}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			t.Errorf("StartEmbedded(%q) = nil error, want one", listen)
		}
	}
}

func TestEmbeddedAuthorization(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := StartEmbedded(EmbeddedOptions{
		Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Name: "auth",
		InternalUser: "binwatch", InternalPassword: "internal-secret",
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()

	internal, err := nats.Connect(srv.ClientURL(), nats.UserInfo("binwatch", "internal-secret"))
	if err != nil {
		t.Fatalf("internal user: %v", err)
	}
	defer internal.Close()
	js, err := jetstream.New(internal)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStream(ctx, js, 1); err != nil {
		t.Fatalf("internal user creating the stream: %v", err)
	}

	violations := make(chan error, 10)
	anon, err := nats.Connect(srv.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	if err != nil {
		t.Fatalf("anonymous connection: %v", err)
	}
	defer anon.Close()

	// Anonymous clients watch alerts.
	alerts, err := anon.SubscribeSync(schema.AlertSubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := anon.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := internal.Publish("integrity.disk_mismatch.h", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := alerts.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("anonymous subscriber did not receive an alert: %v", err)
	}

	// They may not feed records to the agent.
	records, err := internal.SubscribeSync(schema.ProcessSubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := internal.Flush(); err != nil {
		t.Fatal(err)
	}
	anon.Publish(schema.ProcessSubject("h"), []byte("forged"))
	anon.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("publishing records: error %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("publishing records as anonymous raised no permissions violation")
	}
	if m, err := records.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("forged record delivered: %q", m.Data)
	}

	// They may read the stream but not delete it.
	ajs, err := jetstream.New(anon)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.Stream(ctx, StreamName); err != nil {
		t.Errorf("anonymous stream info: %v", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if err := ajs.DeleteStream(dctx, StreamName); err == nil {
		t.Error("anonymous client deleted the stream")
	}
	if _, err := js.Stream(ctx, StreamName); err != nil {
		t.Errorf("stream gone after the anonymous delete attempt: %v", err)
	}
}
