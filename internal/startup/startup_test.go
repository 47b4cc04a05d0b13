package startup

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{Usagef("bad"), 2},
		{fmt.Errorf("wrapped: %w", Usagef("bad")), 2},
		{errors.New("other"), 1},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestHostID(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	token, hostname, err := HostID("")
	if err != nil || hostname != name || token == "" {
		t.Errorf("HostID(\"\") = %q, %q, %v, want a token for %q", token, hostname, err, name)
	}
	if token, _, err := HostID("web-01"); err != nil || token != "web-01" {
		t.Errorf("HostID(web-01) = %q, %v, want web-01", token, err)
	}
	for _, bad := range []string{"web.01", "a b", "a>", "*"} {
		if _, _, err := HostID(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("HostID(%q) = %v, want an ErrUsage error", bad, err)
		}
	}
}

func TestNewLogger(t *testing.T) {
	for _, format := range []string{"", "text", "json"} {
		if _, err := NewLogger(format, io.Discard); err != nil {
			t.Errorf("NewLogger(%q) = %v, want nil", format, err)
		}
	}
	if _, err := NewLogger("xml", io.Discard); !errors.Is(err, ErrUsage) {
		t.Errorf("NewLogger(xml) = %v, want an ErrUsage error", err)
	}
}

func TestOptionalBool(t *testing.T) {
	var b OptionalBool
	if b.IsSet || b.String() != "" {
		t.Fatalf("zero OptionalBool = %+v, want unset", b)
	}
	if err := b.Set("false"); err != nil || !b.IsSet || b.Value {
		t.Errorf("Set(false) = %v, %+v, want set to false", err, b)
	}
	if err := b.Decode("true"); err != nil || !b.Value {
		t.Errorf("Decode(true) = %v, %+v, want true", err, b)
	}
	if err := b.Set("maybe"); err == nil {
		t.Error("Set(maybe) = nil, want an error")
	}
}
