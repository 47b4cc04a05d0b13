// Package natsconn builds NATS client connections for the binwatch
// binaries from their shared settings, and logs connection events.
package natsconn

import (
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Options are the client settings both binaries accept. The binaries
// embed them as a field named NATS, so envconfig reads BINWATCH_NATS_URL
// and so on: it puts the field name before each tag.
type Options struct {
	URL      string `envconfig:"URL"`
	User     string `envconfig:"USER"`
	Password string `envconfig:"PASSWORD"`
	Creds    string `envconfig:"CREDS"`
	CA       string `envconfig:"CA"`
	Cert     string `envconfig:"CERT"`
	Key      string `envconfig:"KEY"`
}

// RegisterFlags defines the --nats-* flags on fs, with o's current values
// as defaults. urlHelp describes --nats-url, whose meaning differs
// between the binaries.
func (o *Options) RegisterFlags(fs *flag.FlagSet, urlHelp string) {
	fs.StringVar(&o.URL, "nats-url", o.URL, urlHelp+" (BINWATCH_NATS_URL)")
	fs.StringVar(&o.User, "nats-user", o.User, "NATS user name (BINWATCH_NATS_USER)")
	fs.StringVar(&o.Password, "nats-password", o.Password, "NATS password (BINWATCH_NATS_PASSWORD)")
	fs.StringVar(&o.Creds, "nats-creds", o.Creds, "NATS credentials file (BINWATCH_NATS_CREDS)")
	fs.StringVar(&o.CA, "nats-ca", o.CA, "CA certificate file that verifies the server (BINWATCH_NATS_CA)")
	fs.StringVar(&o.Cert, "nats-cert", o.Cert, "client certificate file for mutual TLS (BINWATCH_NATS_CERT)")
	fs.StringVar(&o.Key, "nats-key", o.Key, "client key file for mutual TLS (BINWATCH_NATS_KEY)")
}

// Validate reports settings that cannot work together.
func (o Options) Validate() error {
	if (o.Cert == "") != (o.Key == "") {
		return fmt.Errorf("invalid NATS TLS settings: --nats-cert (%q) and --nats-key (%q) must be set together", o.Cert, o.Key)
	}
	if o.Creds != "" && o.User != "" {
		return fmt.Errorf("invalid NATS auth settings: set --nats-creds or --nats-user, not both")
	}
	if o.Password != "" && o.User == "" {
		return fmt.Errorf("invalid NATS auth settings: --nats-password needs --nats-user")
	}
	return nil
}

// Hooks are called on connection events, in addition to logging.
type Hooks struct {
	Reconnected  func()
	Disconnected func(error)
	// AsyncError receives slow-consumer and permission errors.
	AsyncError func(*nats.Subscription, error)
}

// Connect dials o.URL as client name, retrying in the background when the
// server is not up yet, and reconnecting forever. Events are logged with
// logger and passed to hooks.
func Connect(o Options, name string, logger *slog.Logger, hooks Hooks, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close was called; ClosedHandler logs it.
			}
			logger.Warn("nats disconnected", "error", err)
			if hooks.Disconnected != nil {
				hooks.Disconnected(err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			if hooks.Reconnected != nil {
				hooks.Reconnected()
			}
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			logger.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
		}),
		nats.ClosedHandler(func(_ *nats.Conn) {
			logger.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Error("nats asynchronous error", "subject", subject, "error", err)
			if hooks.AsyncError != nil {
				hooks.AsyncError(sub, err)
			}
		}),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		// nats.go's error may quote the URL, password included.
		msg := strings.ReplaceAll(err.Error(), o.URL, Redact(o.URL))
		return nil, fmt.Errorf("connecting to NATS at %s: %s", Redact(o.URL), msg)
	}
	return nc, nil
}

// Redact returns the server list urls with any password replaced by
// "xxxxx", for logs and errors.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			// Unparsable: hide everything between the scheme and the last
			// '@', where a password would be.
			if at := strings.LastIndex(p, "@"); at >= 0 {
				start := strings.Index(p, "://") + len("://")
				if start < len("://") || start > at {
					start = 0
				}
				parts[i] = p[:start] + "xxxxx" + p[at:]
			}
			continue
		}
		if u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
