// Command binwatch-agent derives integrity alerts from process records and
// publishes them on integrity.<kind>.<host>. With no NATS URL it starts an
// embedded nats-server and runs the collector in-process, so one command
// covers one host.
package main

import (
	"errors"
	"flag"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/binwatch/binwatch/agent"
	"github.com/binwatch/binwatch/internal/natsconn"
	"github.com/binwatch/binwatch/internal/startup"
	"github.com/binwatch/binwatch/schema"
)

type config struct {
	NATS                natsconn.Options
	Leaf                agent.LeafOptions
	Listen              string               `envconfig:"LISTEN" default:"127.0.0.1:4222"`
	StateDir            string               `envconfig:"STATE_DIR" default:"/var/lib/binwatch"`
	Interval            time.Duration        `envconfig:"INTERVAL" default:"30s"`
	Once                bool                 `ignored:"true"`
	HostID              string               `envconfig:"HOST_ID"`
	SimilarityThreshold int                  `envconfig:"SIMILARITY_THRESHOLD" default:"80"`
	Collect             startup.OptionalBool `envconfig:"COLLECT"`
	CreateStream        startup.OptionalBool `envconfig:"CREATE_STREAM"`
	StreamReplicas      int                  `envconfig:"STREAM_REPLICAS" default:"1"`
	Subject             string               `envconfig:"SUBJECT" default:"binwatch.process.*"`
	AlertAck            bool                 `envconfig:"ALERT_ACK" default:"true"`
	MaxFileSize         int64                `envconfig:"MAX_FILE_SIZE" default:"536870912"`
	Proc                string               `envconfig:"PROC" default:"/proc"`
	LogFormat           string               `envconfig:"LOG_FORMAT" default:"text"`
}

func main() { startup.Main("binwatch-agent", run) }

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	if err := envconfig.Process("BINWATCH", &c); err != nil {
		return c, startup.Usagef("%v", err)
	}
	fs := flag.NewFlagSet("binwatch-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.NATS.RegisterFlags(fs, "NATS server URL(s) to use; empty starts an embedded server")
	fs.StringVar(&c.Listen, "listen", c.Listen, "embedded server's client address, host:port; port 0 picks a free one (BINWATCH_LISTEN)")
	fs.StringVar(&c.Leaf.URL, "leaf-url", c.Leaf.URL, "hub leafnode URL; makes the embedded server a leaf node (BINWATCH_LEAF_URL)")
	fs.StringVar(&c.Leaf.User, "leaf-user", c.Leaf.User, "user name for the hub's leafnode port (BINWATCH_LEAF_USER)")
	fs.StringVar(&c.Leaf.Password, "leaf-password", c.Leaf.Password, "password for the hub's leafnode port (BINWATCH_LEAF_PASSWORD)")
	fs.StringVar(&c.Leaf.Creds, "leaf-creds", c.Leaf.Creds, "credentials file for the hub's leafnode port (BINWATCH_LEAF_CREDS)")
	fs.StringVar(&c.Leaf.CA, "leaf-ca", c.Leaf.CA, "CA certificate file that verifies the hub (BINWATCH_LEAF_CA)")
	fs.StringVar(&c.Leaf.Cert, "leaf-cert", c.Leaf.Cert, "leaf certificate file for mutual TLS (BINWATCH_LEAF_CERT)")
	fs.StringVar(&c.Leaf.Key, "leaf-key", c.Leaf.Key, "leaf key file for mutual TLS (BINWATCH_LEAF_KEY)")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for baselines, undelivered alerts and the JetStream store (BINWATCH_STATE_DIR)")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between scans of the in-process collector, 1s to 24h (BINWATCH_INTERVAL)")
	fs.BoolVar(&c.Once, "once", false, "scan once, deliver every alert, print a summary and exit")
	fs.StringVar(&c.HostID, "host-id", c.HostID, "host token [A-Za-z0-9_-]; default: the host name with other bytes mapped to _ (BINWATCH_HOST_ID)")
	fs.IntVar(&c.SimilarityThreshold, "similarity-threshold", c.SimilarityThreshold, "binary_change fires below this ssdeep score, 1 to 99 (BINWATCH_SIMILARITY_THRESHOLD)")
	fs.Var(&c.Collect, "collect", "run the collector in-process; default true with the embedded server (BINWATCH_COLLECT)")
	fs.Var(&c.CreateStream, "create-stream", "create or update the INTEGRITY stream at start; default true with the embedded server, unless it is a leaf node (BINWATCH_CREATE_STREAM)")
	fs.StringVar(&c.Subject, "subject", c.Subject, "subject to read records from; binwatch.process.<host> where permissions allow only one host (BINWATCH_SUBJECT)")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", c.StreamReplicas, "replicas of the INTEGRITY stream when created, 1 to 5 (BINWATCH_STREAM_REPLICAS)")
	fs.BoolVar(&c.AlertAck, "alert-ack", c.AlertAck, "wait for a JetStream acknowledgement of each alert and retry until it arrives; false publishes on core NATS only (BINWATCH_ALERT_ACK)")
	fs.Int64Var(&c.MaxFileSize, "max-file-size", c.MaxFileSize, "largest executable hashed by the in-process collector, in bytes (BINWATCH_MAX_FILE_SIZE)")
	fs.StringVar(&c.Proc, "proc", c.Proc, "procfs mount the in-process collector scans (BINWATCH_PROC)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json (BINWATCH_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, startup.Usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return c, startup.Usagef("unexpected argument %q", fs.Arg(0))
	}
	return c, validate(c)
}

func validate(c config) error {
	if c.SimilarityThreshold < 1 || c.SimilarityThreshold > 99 {
		return startup.Usagef("--similarity-threshold (BINWATCH_SIMILARITY_THRESHOLD) is %d, want 1 to 99", c.SimilarityThreshold)
	}
	if c.Interval < time.Second || c.Interval > 24*time.Hour {
		return startup.Usagef("--interval (BINWATCH_INTERVAL) is %s, want 1s to 24h", c.Interval)
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		return startup.Usagef("--stream-replicas (BINWATCH_STREAM_REPLICAS) is %d, want 1 to 5", c.StreamReplicas)
	}
	if c.MaxFileSize < 1 {
		return startup.Usagef("--max-file-size (BINWATCH_MAX_FILE_SIZE) is %d, want at least 1 byte", c.MaxFileSize)
	}
	if c.Subject != schema.ProcessSubjectAll {
		if _, err := schema.HostFromProcessSubject(c.Subject); err != nil {
			return startup.Usagef("--subject (BINWATCH_SUBJECT) is %q, want %s or %s<host>", c.Subject, schema.ProcessSubjectAll, schema.ProcessSubjectPrefix)
		}
	}
	if c.StateDir == "" {
		return startup.Usagef("--state-dir (BINWATCH_STATE_DIR) is empty, want a directory")
	}
	if c.NATS.URL == "" {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil {
			return startup.Usagef("--listen (BINWATCH_LISTEN) is %q, want host:port", c.Listen)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return startup.Usagef("--listen (BINWATCH_LISTEN) is %q, want a port from 0 to 65535", c.Listen)
		}
	}
	if c.Leaf.URL != "" {
		if u, err := url.Parse(c.Leaf.URL); err != nil || u.Host == "" {
			return startup.Usagef("--leaf-url (BINWATCH_LEAF_URL) is %q, want nats-leaf://host:port or tls://host:port", natsconn.Redact(c.Leaf.URL))
		}
	}
	if c.NATS.URL != "" && c.Leaf.URL != "" {
		return startup.Usagef("--leaf-url needs the embedded server, but --nats-url is set to %s", natsconn.Redact(c.NATS.URL))
	}
	if err := c.NATS.Validate(); err != nil {
		return startup.Usagef("%v", err)
	}
	return nil
}
