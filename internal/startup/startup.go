// Package startup holds what both binwatch binaries do before their real
// work: reading settings from the environment and flags, building the
// logger and choosing the host token.
package startup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/binwatch/binwatch/schema"
)

// ErrUsage marks invalid configuration; binaries exit with status 2 on it.
var ErrUsage = errors.New("invalid configuration")

// Usagef returns an error wrapping ErrUsage.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// ExitCode maps the error run returned to the process exit status: 0 for
// nil and for --help, 2 for invalid configuration, 1 otherwise.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}

// NewLogger returns a slog logger writing to w as "text" or "json".
func NewLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, Usagef("--log-format (BINWATCH_LOG_FORMAT) is %q, want text or json", format)
}

// HostID returns the host token and the unmapped host name. A configured
// id must already be a valid token; otherwise the kernel's host name is
// mapped to one.
func HostID(configured string) (token, hostname string, err error) {
	hostname, err = os.Hostname()
	if err != nil {
		return "", "", fmt.Errorf("reading host name: %w", err)
	}
	if configured != "" {
		if err := schema.ValidateHostToken(configured); err != nil {
			return "", "", Usagef("--host-id (BINWATCH_HOST_ID): %v", err)
		}
		return configured, hostname, nil
	}
	return schema.HostToken(hostname), hostname, nil
}

// OptionalBool is a boolean flag that remembers whether it was set, for
// settings whose default depends on other settings.
type OptionalBool struct {
	IsSet bool
	Value bool
}

// String implements flag.Value.
func (b *OptionalBool) String() string {
	if b == nil || !b.IsSet {
		return ""
	}
	return strconv.FormatBool(b.Value)
}

// Set implements flag.Value.
func (b *OptionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	b.IsSet, b.Value = true, v
	return nil
}

// IsBoolFlag lets the flag be given without a value.
func (b *OptionalBool) IsBoolFlag() bool { return true }

// Decode implements envconfig.Decoder.
func (b *OptionalBool) Decode(s string) error { return b.Set(s) }

// StopGrace is how long a binary may take to stop after a signal before
// it exits anyway. A scan blocked in the kernel (a hung FUSE or NFS mount)
// cannot be interrupted otherwise.
const StopGrace = 15 * time.Second

// ExitAfterGrace exits the process with status 1 when ctx has been done
// for StopGrace and the process is still running.
func ExitAfterGrace(ctx context.Context, name string) {
	go func() {
		<-ctx.Done()
		time.Sleep(StopGrace)
		fmt.Fprintf(os.Stderr, "%s: did not stop within %s of the signal; exiting\n", name, StopGrace)
		os.Exit(1)
	}()
}

// Main runs a binary's run function with a context that signals cancel,
// prints the error it returns after the binary's name, and exits with
// ExitCode. It does not return.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ExitAfterGrace(ctx, name)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	os.Exit(ExitCode(err))
}
