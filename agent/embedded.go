package agent

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/binwatch/binwatch/internal/natsconn"
	"github.com/binwatch/binwatch/schema"
)

// LeafOptions make the embedded server a leaf node of a hub. The agent
// embeds them as a field named Leaf, so envconfig reads BINWATCH_LEAF_URL
// and so on.
type LeafOptions struct {
	// URL is the hub's leafnode URL, e.g. nats-leaf://hub:7422.
	URL      string `envconfig:"URL"`
	User     string `envconfig:"USER"`
	Password string `envconfig:"PASSWORD"`
	Creds    string `envconfig:"CREDS"`
	CA       string `envconfig:"CA"`
	Cert     string `envconfig:"CERT"`
	Key      string `envconfig:"KEY"`
}

// EmbeddedOptions configure the agent's own nats-server.
type EmbeddedOptions struct {
	// Listen is the client address, host:port.
	Listen string
	// StoreDir is the JetStream store; empty disables JetStream.
	StoreDir string
	// Name is the server name, unique in a cluster of leaf nodes.
	Name string
	// MaxPayload is the largest message the server accepts, in bytes;
	// 0 selects DefaultMaxPayload. nats-server rejects a value above its
	// max_pending (64 MiB by default).
	MaxPayload int32
	Leaf       LeafOptions
	// InternalUser and InternalPassword, when set, turn on authorization.
	// That user (the agent and the in-process collector) may do anything.
	// Every other client connects as an anonymous user that may only watch
	// alerts, read the INTEGRITY stream and query the micro services.
	// Without them any local user could publish records or delete the
	// stream. The password may be a bcrypt hash. Empty leaves the server
	// open, for tests.
	InternalUser, InternalPassword string
	// AnonymousRecordsHost, when set with InternalPassword, also lets
	// anonymous clients publish that host's records and serve the
	// collector's micro service, so that a separate binwatch-collector
	// without credentials can feed the agent.
	AnonymousRecordsHost string
}

// AnonymousUser is the user that clients without credentials become on an
// embedded server with authorization.
const AnonymousUser = "anonymous"

// anonymousPermissions allow watching and reading alerts and the micro
// services, and nothing that changes the stream or feeds the agent.
func anonymousPermissions(recordsHost string) *server.Permissions {
	publish := []string{
		"$SRV.>",
		"binwatch.agent.*.counters", "binwatch.collector.*.counters",
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
		"$JS.API.STREAM.INFO." + StreamName,
		"$JS.API.STREAM.MSG.GET." + StreamName,
		"$JS.API.DIRECT.GET." + StreamName, "$JS.API.DIRECT.GET." + StreamName + ".>",
		"$JS.API.CONSUMER.CREATE." + StreamName, "$JS.API.CONSUMER.CREATE." + StreamName + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + StreamName + ".>",
		"$JS.API.CONSUMER.INFO." + StreamName + ".>",
		"$JS.API.CONSUMER.NAMES." + StreamName, "$JS.API.CONSUMER.LIST." + StreamName,
		"$JS.API.CONSUMER.MSG.NEXT." + StreamName + ".>",
		"$JS.API.CONSUMER.DELETE." + StreamName + ".>",
		"$JS.ACK." + StreamName + ".>", "$JS.FC." + StreamName + ".>",
	}
	subscribe := []string{schema.AlertSubjectAll, "_INBOX.>"}
	var responses *server.ResponsePermission
	if recordsHost != "" {
		// A separate collector also serves its micro service.
		publish = append(publish, schema.ProcessSubject(recordsHost))
		subscribe = append(subscribe, "$SRV.PING", "$SRV.INFO", "$SRV.STATS",
			"$SRV.*.binwatch-collector", "$SRV.*.binwatch-collector.*",
			"binwatch.collector."+recordsHost+".counters")
		responses = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: publish},
		Subscribe: &server.SubjectPermission{Allow: subscribe},
		Response:  responses,
	}
}

// DefaultMaxPayload is the embedded server's max payload when
// EmbeddedOptions.MaxPayload is 0. Records of a large host fit in one
// message more often with room, but the publisher splits batches under any
// limit.
const DefaultMaxPayload = 8 << 20

// StartEmbedded starts a nats-server in this process and waits until it
// accepts clients. JetStream runs when StoreDir is set. The caller stops
// it with Shutdown and WaitForShutdown.
func StartEmbedded(o EmbeddedOptions, logger *slog.Logger) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("invalid listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("invalid listen address %q: port must be 0 to 65535", o.Listen)
	}
	if port == 0 {
		// nats-server reads 0 as its default port, 4222.
		port = server.RANDOM_PORT
	}
	if o.MaxPayload < 0 {
		return nil, fmt.Errorf("invalid max payload %d: want 0 (default %d) or more bytes", o.MaxPayload, DefaultMaxPayload)
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       port,
		NoSigs:     true,
		MaxPayload: o.MaxPayload,
	}
	if o.InternalPassword != "" {
		opts.Users = []*server.User{
			{Username: o.InternalUser, Password: o.InternalPassword},
			// Clients without credentials become this user whatever its
			// password; a hash keeps nats-server from warning about a
			// plain-text one.
			{Username: AnonymousUser, Password: o.InternalPassword, Permissions: anonymousPermissions(o.AnonymousRecordsHost)},
		}
		opts.NoAuthUser = AnonymousUser
	}
	if o.StoreDir != "" {
		opts.JetStream = true
		opts.StoreDir = filepath.Clean(o.StoreDir)
	}
	if o.Leaf.URL != "" {
		remote, err := leafRemote(o.Leaf)
		if err != nil {
			return nil, err
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
		opts.LeafNode.ReconnectInterval = time.Second
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded nats-server: %w", err)
	}
	log := &serverLog{logger: logger.With("component", "nats-server")}
	s.SetLoggerV2(log, false, false, false)
	go s.Start()
	// A failed listen is only logged by the server, as a fatal error, so
	// the wait for readiness also watches the log.
	deadline := time.Now().Add(10 * time.Second)
	for !s.ReadyForConnections(100 * time.Millisecond) {
		if msg := log.fatal.Load(); msg != nil {
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats-server on %s failed: %s", o.Listen, *msg)
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats-server on %s did not become ready within 10s", o.Listen)
		}
	}
	return s, nil
}

func leafRemote(l LeafOptions) (*server.RemoteLeafOpts, error) {
	u, err := url.Parse(l.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid --leaf-url %q: want nats-leaf://host:port or tls://host:port", natsconn.Redact(l.URL))
	}
	if l.User != "" {
		u.User = url.UserPassword(l.User, l.Password)
	}
	r := &server.RemoteLeafOpts{URLs: []*url.URL{u}, Credentials: l.Creds}
	if (l.Cert == "") != (l.Key == "") {
		return nil, fmt.Errorf("invalid leaf TLS settings: --leaf-cert and --leaf-key must be set together")
	}
	if l.CA != "" || l.Cert != "" || u.Scheme == "tls" {
		tc := &server.TLSConfigOpts{CaFile: l.CA, CertFile: l.Cert, KeyFile: l.Key}
		cfg, err := server.GenTLSConfig(tc)
		if err != nil {
			return nil, fmt.Errorf("loading leaf TLS files: %w", err)
		}
		cfg.MinVersion = tls.VersionTLS12
		// GenTLSConfig loads the CA into ClientCAs; a soliciting leaf is a
		// client, so the CA must verify the hub.
		cfg.RootCAs = cfg.ClientCAs
		r.TLS = true
		r.TLSConfig = cfg
	}
	return r, nil
}

// serverLog passes nats-server's log lines to slog and keeps the first
// fatal one.
type serverLog struct {
	logger *slog.Logger
	fatal  atomic.Pointer[string]
}

func (l *serverLog) Noticef(format string, v ...any) { l.logger.Info(fmt.Sprintf(format, v...)) }
func (l *serverLog) Warnf(format string, v ...any)   { l.logger.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLog) Errorf(format string, v ...any)  { l.logger.Error(fmt.Sprintf(format, v...)) }
func (l *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.fatal.CompareAndSwap(nil, &msg)
	l.logger.Error(msg)
}
func (l *serverLog) Debugf(format string, v ...any) { l.logger.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLog) Tracef(format string, v ...any) {}
