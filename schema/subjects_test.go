package schema_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

var hostNames = []struct {
	name, want string
}{
	{"web-01", "web-01"},
	{"web01.example.com", "web01_example_com"},
	{"with space", "with_space"},
	{"star*", "star_"},
	{"gt>", "gt_"},
	{"a..b", "a__b"},
	{".", "_"},
	{"", "_"},
	{"tab\tnewline\n", "tab_newline_"},
	{"héllo", "h__llo"},
	{"日本", "______"},
	{"under_score", "under_score"},
	{strings.Repeat("x", 300), strings.Repeat("x", schema.MaxHostTokenLen)},
}

func TestHostToken(t *testing.T) {
	for _, tc := range hostNames {
		got := schema.HostToken(tc.name)
		if got != tc.want {
			t.Errorf("HostToken(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if err := schema.ValidateHostToken(got); err != nil {
			t.Errorf("ValidateHostToken(HostToken(%q)) = %v, want nil", tc.name, err)
		}
	}
}

func TestValidateHostTokenRejects(t *testing.T) {
	for _, token := range []string{"", "a.b", "a*", ">", "a b", "é", strings.Repeat("x", schema.MaxHostTokenLen+1)} {
		if err := schema.ValidateHostToken(token); err == nil {
			t.Errorf("ValidateHostToken(%q) = nil, want an error", token)
		}
	}
}

func TestHostFromProcessSubject(t *testing.T) {
	if got, err := schema.HostFromProcessSubject("binwatch.process.web-01"); err != nil || got != "web-01" {
		t.Errorf("HostFromProcessSubject(binwatch.process.web-01) = %q, %v, want web-01, nil", got, err)
	}
	for _, subject := range []string{"binwatch.process.a.b", "binwatch.process.", "other.process.a", "binwatch.process.*"} {
		if _, err := schema.HostFromProcessSubject(subject); err == nil {
			t.Errorf("HostFromProcessSubject(%q) = nil error, want one", subject)
		}
	}
}

func TestKindToken(t *testing.T) {
	tests := map[binwatchv1.AlertKind]string{
		binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED: "coverage_degraded",
		binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH:     "disk_mismatch",
		binwatchv1.AlertKind_ALERT_KIND_BINARY_CHANGE:     "binary_change",
		binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP:     "telemetry_gap",
		binwatchv1.AlertKind(99):                          "unspecified",
	}
	for kind, want := range tests {
		if got := schema.KindToken(kind); got != want {
			t.Errorf("KindToken(%d) = %q, want %q", kind, got, want)
		}
	}
}

// TestHostTokensThroughServer publishes on the process and alert subjects
// of every mapped host name through a real nats-server, and checks that
// each message reaches exactly its own host's subscription and the
// wildcards.
func TestHostTokensThroughServer(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	all, err := nc.SubscribeSync(schema.ProcessSubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := nc.SubscribeSync(schema.AlertSubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]bool{}
	for _, tc := range hostNames {
		tokens[schema.HostToken(tc.name)] = true
	}
	own := map[string]*nats.Subscription{}
	for token := range tokens {
		sub, err := nc.SubscribeSync(schema.ProcessSubject(token))
		if err != nil {
			t.Fatalf("subscribing to %s: %v", schema.ProcessSubject(token), err)
		}
		own[token] = sub
	}
	for token := range tokens {
		if err := nc.Publish(schema.ProcessSubject(token), []byte(token)); err != nil {
			t.Fatalf("publishing on %s: %v", schema.ProcessSubject(token), err)
		}
		subject := schema.AlertSubject(binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH, token)
		if err := nc.Publish(subject, []byte(token)); err != nil {
			t.Fatalf("publishing on %s: %v", subject, err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for token, sub := range own {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("subscription of %q: %v", token, err)
		}
		if string(m.Data) != token {
			t.Errorf("subscription of %q got the message of %q", token, m.Data)
		}
		if n, _, _ := sub.Pending(); n != 0 {
			t.Errorf("subscription of %q got %d extra messages", token, n)
		}
	}
	for _, sub := range []*nats.Subscription{all, alerts} {
		for range tokens {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("wildcard %s: %v", sub.Subject, err)
			}
			if !tokens[string(m.Data)] {
				t.Errorf("wildcard %s got unknown payload %q", sub.Subject, m.Data)
			}
		}
	}
}
