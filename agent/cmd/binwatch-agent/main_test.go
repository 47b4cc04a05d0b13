package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/binwatch/binwatch/internal/startup"
)

func TestInvalidSettingsExitTwo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"threshold 0", []string{"--similarity-threshold", "0"}, nil, "want 1 to 99"},
		{"threshold 100", []string{"--similarity-threshold", "100"}, nil, "want 1 to 99"},
		{"threshold env", nil, map[string]string{"BINWATCH_SIMILARITY_THRESHOLD": "-1"}, "want 1 to 99"},
		{"threshold not a number", nil, map[string]string{"BINWATCH_SIMILARITY_THRESHOLD": "high"}, "BINWATCH_SIMILARITY_THRESHOLD"},
		{"interval too short", []string{"--interval", "10ms"}, nil, "want 1s to 24h"},
		{"host id with dot", []string{"--host-id", "web.example"}, nil, "invalid host token"},
		{"log format", []string{"--log-format", "xml"}, nil, "want text or json"},
		{"leaf with url", []string{"--nats-url", "nats://127.0.0.1:1", "--leaf-url", "nats-leaf://127.0.0.1:2"}, nil, "--leaf-url needs the embedded server"},
		{"cert without key", []string{"--nats-cert", "c.pem"}, nil, "must be set together"},
		{"subject of two tokens", []string{"--subject", "binwatch.process.a.b"}, nil, "--subject"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"bad listen", []string{"--listen", "nope"}, nil, "want host:port"},
		{"listen port too large", []string{"--listen", "127.0.0.1:99999"}, nil, "0 to 65535"},
		{"leaf url without host", []string{"--leaf-url", "nats-leaf://user:S3cret@"}, nil, "--leaf-url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			for i, a := range args {
				if a == "STATE" {
					args[i] = t.TempDir()
				}
			}
			var stderr bytes.Buffer
			err := run(context.Background(), args, &bytes.Buffer{}, &stderr)
			if err == nil {
				t.Fatalf("run(%q) = nil, want an error", args)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want a message containing %q", args, err, tc.want)
			}
			if strings.Contains(err.Error(), "S3cret") {
				t.Errorf("error %q shows the password", err)
			}
			if startup.ExitCode(err) != 2 {
				t.Errorf("exit code = %d, want 2", startup.ExitCode(err))
			}
		})
	}
}

func TestOncePrintsSummary(t *testing.T) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := run(ctx, []string{"--once", "--listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--host-id", "once-test"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run --once: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, line := range []string{"processes seen:", "executables hashed:", "cache hits:", "bytes hashed:",
		"coverage:", "executable states:", "alerts:", "duration:"} {
		if !strings.Contains(stdout.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "agent stopped") {
		t.Errorf("log lacks the stop line:\n%s", stderr.String())
	}
}

func TestEnvironmentVariablesNameSettings(t *testing.T) {
	env := map[string]string{
		"BINWATCH_NATS_URL":      "nats://127.0.0.1:4222",
		"BINWATCH_NATS_USER":     "agent-a",
		"BINWATCH_NATS_PASSWORD": "pw",
		"BINWATCH_NATS_CA":       "/etc/ca.pem",
		"BINWATCH_LEAF_USER":     "leaf-a",
		"BINWATCH_LEAF_PASSWORD": "leafpw",
		"BINWATCH_LEAF_CREDS":    "/etc/leaf.creds",
		"BINWATCH_HOST_ID":       "host-a",
		"BINWATCH_INTERVAL":      "45s",
		"BINWATCH_SUBJECT":       "binwatch.process.host-a",
		"BINWATCH_ALERT_ACK":     "false",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err := parseConfig(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"BINWATCH_NATS_URL":      c.NATS.URL,
		"BINWATCH_NATS_USER":     c.NATS.User,
		"BINWATCH_NATS_PASSWORD": c.NATS.Password,
		"BINWATCH_NATS_CA":       c.NATS.CA,
		"BINWATCH_LEAF_USER":     c.Leaf.User,
		"BINWATCH_LEAF_PASSWORD": c.Leaf.Password,
		"BINWATCH_LEAF_CREDS":    c.Leaf.Creds,
		"BINWATCH_HOST_ID":       c.HostID,
		"BINWATCH_INTERVAL":      c.Interval.String(),
		"BINWATCH_SUBJECT":       c.Subject,
		"BINWATCH_ALERT_ACK":     strconv.FormatBool(c.AlertAck),
	}
	for k, want := range env {
		if k == "BINWATCH_INTERVAL" {
			want = "45s"
		}
		if got[k] != want {
			t.Errorf("%s=%q: setting = %q, want %q", k, want, got[k], want)
		}
	}
}
