package natsconn

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:secret@127.0.0.1:4222", "nats://alice:xxxxx@127.0.0.1:4222"},
		{"nats://a:s1@h1:4222,nats://b:s2@h2:4222", "nats://a:xxxxx@h1:4222,nats://b:xxxxx@h2:4222"},
		{"nats://token@127.0.0.1:4222", "nats://token@127.0.0.1:4222"},
		{"", ""},
		{"nats://u:Pw%zzSecret@127.0.0.1:1", "nats://xxxxx@127.0.0.1:1"},
		{"nats-leaf://leafuser:S3cret@", "nats-leaf://leafuser:xxxxx@"},
	}
	for _, tc := range tests {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []Options{
		{Cert: "c.pem"},
		{Key: "k.pem"},
		{Creds: "x.creds", User: "u"},
		{Password: "p"},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", o)
		}
	}
	if err := (Options{User: "u", Password: "p", Cert: "c", Key: "k"}).Validate(); err != nil {
		t.Errorf("Validate(valid) = %v, want nil", err)
	}
}

func TestConnectErrorHidesPassword(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, url := range []string{"nats://alice:topsecret@127.0.0.1:1", "nats://alice:top%zzsecret@127.0.0.1:1"} {
		_, err := Connect(Options{URL: url}, "test", logger, Hooks{},
			nats.RetryOnFailedConnect(false), nats.Timeout(time.Second))
		if err == nil {
			t.Fatalf("Connect(%q) = nil error, want one", url)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q contains the password", err)
		}
	}
}

func startServer(t *testing.T, port int) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func TestConnectCallsReconnectHook(t *testing.T) {
	srv := startServer(t, -1)
	port := srv.Addr().(*net.TCPAddr).Port
	reconnected := make(chan struct{}, 1)
	nc, err := Connect(Options{URL: srv.ClientURL()}, "test", slog.New(slog.NewTextHandler(io.Discard, nil)),
		Hooks{Reconnected: func() { reconnected <- struct{}{} }}, nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
	startServer(t, port)
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("Reconnected hook not called within 10s of the server's return")
	}
}
