package agent

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	_, err = StartEmbedded(EmbeddedOptions{Listen: l.Addr().String()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatalf("StartEmbedded on a port in use = nil error, want one")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error = %v, want it to name the cause", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("StartEmbedded took %s to fail, want it to fail as soon as the listen fails", d)
	}
}

func TestStartEmbeddedInvalidListen(t *testing.T) {
	for _, listen := range []string{"nope", "127.0.0.1:x", "127.0.0.1:70000"} {
		if _, err := StartEmbedded(EmbeddedOptions{Listen: listen}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			t.Errorf("StartEmbedded(%q) = nil error, want one", listen)
		}
	}
}
