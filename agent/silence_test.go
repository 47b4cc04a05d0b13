package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

func TestSilentHostRaisedOnce(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := &Agent{scans: map[string]*hostScans{}, cfg: Config{Now: func() time.Time { return now }}}
	scan := func(seq uint64) {
		a.noteScan(&binwatchv1.ProcessBatch{HostId: "h", CollectorId: "c", ScanSeq: seq})
	}

	scan(1)
	now = now.Add(time.Hour)
	if got := a.silentHosts(now); len(got) != 0 {
		t.Fatalf("after one scan: %d alerts, want none (the interval is not known yet)", len(got))
	}
	scan(2) // 1 h after the first: the interval is 1 h
	now = now.Add(2 * time.Hour)
	if got := a.silentHosts(now); len(got) != 0 {
		t.Fatalf("2 h after a 1 h interval: %d alerts, want none before 3 intervals", len(got))
	}
	now = now.Add(time.Hour + time.Second)
	got := a.silentHosts(now)
	if len(got) != 1 {
		t.Fatalf("3 h after a 1 h interval: %d alerts, want 1", len(got))
	}
	if got[0].Kind != binwatchv1.AlertKind_ALERT_KIND_TELEMETRY_GAP || !strings.Contains(got[0].Message, "no scan from host h") {
		t.Errorf("alert = %v %q, want telemetry_gap about host h", got[0].Kind, got[0].Message)
	}
	if again := a.silentHosts(now.Add(time.Hour)); len(again) != 0 {
		t.Errorf("the same silence raised %d more alerts, want none", len(again))
	}

	scan(3) // the host is back, about 3 h after scan 2
	now = now.Add(8 * time.Hour)
	if got := a.silentHosts(now); len(got) != 0 {
		t.Errorf("8 h after a 3 h interval: %d alerts, want none", len(got))
	}
	now = now.Add(2 * time.Hour)
	if got := a.silentHosts(now); len(got) != 1 {
		t.Errorf("10 h after a 3 h interval: %d alerts, want 1 for the new silence", len(got))
	}
}

func TestSilenceFloor(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := &Agent{scans: map[string]*hostScans{}, cfg: Config{Now: func() time.Time { return now }}}
	a.noteScan(&binwatchv1.ProcessBatch{HostId: "h", ScanSeq: 1})
	now = now.Add(10 * time.Millisecond)
	a.noteScan(&binwatchv1.ProcessBatch{HostId: "h", ScanSeq: 2})
	if got := a.silentHosts(now.Add(silenceFloor - time.Millisecond)); len(got) != 0 {
		t.Errorf("before the floor: %d alerts, want none", len(got))
	}
	if got := a.silentHosts(now.Add(silenceFloor)); len(got) != 1 {
		t.Errorf("at the floor: %d alerts, want 1", len(got))
	}
}
