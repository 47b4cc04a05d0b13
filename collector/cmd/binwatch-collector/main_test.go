package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/internal/startup"
	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func TestInvalidSettingsExitTwo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"interval", []string{"--interval", "0s"}, "want 1s to 24h"},
		{"max file size", []string{"--max-file-size", "0"}, "at least 1 byte"},
		{"empty url", []string{"--nats-url", ""}, "--nats-url"},
		{"host id", []string{"--host-id", "a*b"}, "invalid host token"},
		{"key without cert", []string{"--nats-key", "k.pem"}, "must be set together"},
		{"log format", []string{"--log-format", "yaml"}, "want text or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if code := startup.ExitCode(err); code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
		})
	}
}

func TestOnceUnreachableServerFails(t *testing.T) {
	err := run(context.Background(), []string{"--once", "--nats-url", "nats://127.0.0.1:1"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("run --once against a closed port = nil, want an error")
	}
	if code := startup.ExitCode(err); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
}

func TestOncePublishesScan(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(schema.ProcessSubject("cmd-test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"--once", "--nats-url", srv.ClientURL(), "--host-id", "cmd-test"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run --once: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "processes seen:") {
		t.Errorf("summary lacks the process count:\n%s", stdout.String())
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no batch on %s: %v", sub.Subject, err)
	}
	b := &binwatchv1.ProcessBatch{}
	if err := proto.Unmarshal(m.Data, b); err != nil {
		t.Fatal(err)
	}
	if b.HostId != "cmd-test" || b.ScanSeq != 1 || len(b.Records) == 0 {
		t.Errorf("batch host %q scan %d with %d records, want cmd-test, 1 and some records", b.HostId, b.ScanSeq, len(b.Records))
	}
	if got := m.Header.Get(schema.HeaderMessageType); got != schema.MessageTypeProcessBatch {
		t.Errorf("%s header = %q, want %q", schema.HeaderMessageType, got, schema.MessageTypeProcessBatch)
	}
}

func TestEnvironmentVariablesNameSettings(t *testing.T) {
	t.Setenv("BINWATCH_NATS_URL", "nats://127.0.0.1:4231")
	t.Setenv("BINWATCH_NATS_USER", "collector")
	t.Setenv("BINWATCH_NATS_PASSWORD", "pw")
	t.Setenv("BINWATCH_MAX_FILE_SIZE", "1024")
	c, err := parseConfig(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://127.0.0.1:4231" || c.NATS.User != "collector" || c.NATS.Password != "pw" || c.MaxFileSize != 1024 {
		t.Errorf("settings from the environment = %+v, want the URL, user, password and size set", c)
	}
}
