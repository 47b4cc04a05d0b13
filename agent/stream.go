package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/binwatch/binwatch/schema"
)

// StreamName is the JetStream stream that captures alerts.
const StreamName = "INTEGRITY"

// StreamConfig returns the INTEGRITY stream's settings: every alert
// subject, file storage, 30 days or 1 GiB, whichever ends first, and a
// two-minute window in which a repeated Nats-Msg-Id is stored once.
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "binwatch integrity alerts",
		Subjects:    []string{schema.AlertSubjectAll},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      30 * 24 * time.Hour,
		MaxBytes:    1 << 30,
		Duplicates:  2 * time.Minute,
		Replicas:    replicas,
	}
}

// EnsureStream creates the INTEGRITY stream, or updates it to
// StreamConfig when it exists; running it again changes nothing.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if _, err := js.CreateOrUpdateStream(ctx, StreamConfig(replicas)); err != nil {
		return fmt.Errorf("creating stream %s: %w", StreamName, err)
	}
	return nil
}
