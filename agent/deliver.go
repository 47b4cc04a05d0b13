package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Retry delays for alerts that were not acknowledged.
const (
	minRetryDelay  = 500 * time.Millisecond
	maxRetryDelay  = 30 * time.Second
	publishTimeout = 5 * time.Second
)

// deliverLoop publishes the outbox, oldest first, until ctx ends. After a
// failure it waits, doubling the delay up to maxRetryDelay, and starts over
// with the oldest alert, so alerts leave in the order they were raised.
func (a *Agent) deliverLoop(ctx context.Context) {
	delay := minRetryDelay
	for {
		failed := false
		for _, al := range a.outbox.snapshot() {
			if ctx.Err() != nil {
				return
			}
			if err := a.publishAlert(ctx, al); err != nil {
				if a.limit.Allow("publish") {
					a.log.Warn("alert not delivered, will retry", "id", al.Id,
						"subject", alertSubject(al), "pending", a.outbox.len(), "retry_in", delay, "error", err)
				}
				failed = true
				break
			}
			if err := a.outbox.remove(al.Id); err != nil {
				a.log.Error("removing delivered alert from outbox failed", "id", al.Id, "error", err)
			}
			a.count.update(func(c *Counters) { c.AlertsDelivered++ })
		}
		var retry <-chan time.Time
		if failed {
			retry = time.After(delay)
			delay = min(2*delay, maxRetryDelay)
		} else {
			delay = minRetryDelay
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-retry:
		}
	}
}

func alertSubject(al *binwatchv1.IntegrityAlert) string {
	return schema.AlertSubject(al.Kind, al.GetHost().GetId())
}

// publishAlert sends al as protobuf JSON with its id in Nats-Msg-Id. With
// AlertAck it waits for the stream's acknowledgement.
func (a *Agent) publishAlert(ctx context.Context, al *binwatchv1.IntegrityAlert) error {
	data, err := protojson.Marshal(al)
	if err != nil {
		return fmt.Errorf("encoding alert %s: %w", al.Id, err)
	}
	msg := nats.NewMsg(alertSubject(al))
	msg.Header.Set(schema.HeaderContentType, schema.ContentTypeJSON)
	msg.Header.Set(schema.HeaderMessageType, schema.MessageTypeIntegrityAlert)
	msg.Header.Set(schema.HeaderMsgID, al.Id)
	msg.Data = data
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if !a.cfg.AlertAck {
		if err := a.nc.PublishMsg(msg); err != nil {
			return err
		}
		return a.nc.FlushWithContext(ctx)
	}
	_, err = a.js.PublishMsg(ctx, msg, jetstream.WithMsgID(al.Id))
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no stream acknowledged %s (is the %s stream there and reachable?): %w",
			msg.Subject, StreamName, err)
	}
	return err
}

// WaitDelivered blocks until the outbox is empty or ctx ends.
func (a *Agent) WaitDelivered(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.outbox.len() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d alerts not delivered: %w", a.outbox.len(), ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}
