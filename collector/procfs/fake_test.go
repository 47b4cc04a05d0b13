package procfs

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var fake = NewFS("testdata/proc")

func TestPIDsFake(t *testing.T) {
	got, err := fake.PIDs()
	if err != nil {
		t.Fatalf("PIDs() error = %v", err)
	}
	want := []int{1, 2, 42, 43, 77, 78, 79, 80, 81}
	if !slices.Equal(got, want) {
		t.Errorf("PIDs() = %v, want %v", got, want)
	}
}

func TestStatFake(t *testing.T) {
	tests := []struct {
		pid     int
		want    Stat
		kthread bool
	}{
		{1, Stat{PID: 1, PPID: 0, Comm: "init", State: 'S', Flags: 4194560, StartTicks: 23}, false},
		{2, Stat{PID: 2, PPID: 0, Comm: "kthreadd", State: 'S', Flags: 0x208040, StartTicks: 23}, true},
		{42, Stat{PID: 42, PPID: 1, Comm: "a) (b c\nd", State: 'R', Flags: 4194304, StartTicks: 123456}, false},
	}
	for _, tt := range tests {
		got, err := fake.Stat(tt.pid)
		if err != nil {
			t.Errorf("Stat(%d) error = %v", tt.pid, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Stat(%d) = %+v, want %+v", tt.pid, got, tt.want)
		}
		if got.KernelThread() != tt.kthread {
			t.Errorf("Stat(%d).KernelThread() = %v, want %v", tt.pid, got.KernelThread(), tt.kthread)
		}
	}
}

func TestStatFakeErrors(t *testing.T) {
	tests := []struct {
		pid     int
		wantMsg string
	}{
		{77, "missing \"pid (\" prefix"},
		{78, "got 4 fields after comm"},
		{79, "invalid ppid"},
		{80, "invalid state"},
		{81, "missing ')' after comm"},
	}
	for _, tt := range tests {
		_, err := fake.Stat(tt.pid)
		if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("Stat(%d) error = %v, want one containing %q", tt.pid, err, tt.wantMsg)
		}
		if errors.Is(err, ErrExited) {
			t.Errorf("Stat(%d) error = %v matches ErrExited, want a parse error", tt.pid, err)
		}
	}
}

func TestVanishedFake(t *testing.T) {
	const pid = 999
	if _, err := fake.Stat(pid); !errors.Is(err, ErrExited) {
		t.Errorf("Stat(%d) error = %v, want ErrExited", pid, err)
	}
	if _, err := fake.UIDs(pid); !errors.Is(err, ErrExited) {
		t.Errorf("UIDs(%d) error = %v, want ErrExited", pid, err)
	}
	if _, _, err := fake.Cmdline(pid, 10, 100); !errors.Is(err, ErrExited) {
		t.Errorf("Cmdline(%d) error = %v, want ErrExited", pid, err)
	}
	if _, err := fake.ExeLink(pid); !errors.Is(err, ErrExited) {
		t.Errorf("ExeLink(%d) error = %v, want ErrExited", pid, err)
	}
}

func TestExeLinkFakeKernelThread(t *testing.T) {
	// pid 2 has PF_KTHREAD in its flags and no exe link, as kthreadd does.
	_, err := fake.ExeLink(2)
	if !errors.Is(err, ErrNoExecutable) {
		t.Errorf("ExeLink(2) error = %v, want ErrNoExecutable", err)
	}
	if errors.Is(err, ErrExited) {
		t.Errorf("ExeLink(2) error = %v matches ErrExited, want only ErrNoExecutable", err)
	}
}

func TestUIDsFake(t *testing.T) {
	tests := []struct {
		pid     int
		want    [4]uint32
		wantErr string
	}{
		{pid: 1, want: [4]uint32{0, 0, 0, 0}},
		{pid: 42, want: [4]uint32{1000, 1001, 1002, 1003}},
		{pid: 77, wantErr: "missing Uid line"},
		{pid: 80, wantErr: "Uid line has 3 fields, want 4"},
		{pid: 81, wantErr: "invalid Uid \"4294967296\""},
	}
	for _, tt := range tests {
		got, err := fake.UIDs(tt.pid)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("UIDs(%d) error = %v, want one containing %q", tt.pid, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("UIDs(%d) error = %v", tt.pid, err)
			continue
		}
		if got != tt.want {
			t.Errorf("UIDs(%d) = %v, want %v", tt.pid, got, tt.want)
		}
	}
}

func TestCmdlineFake(t *testing.T) {
	long := bytes.Repeat([]byte("A"), 100)
	tests := []struct {
		pid           int
		maxArgs       int
		maxBytes      int
		want          []string
		wantTruncated bool
	}{
		{pid: 1, maxArgs: 10, maxBytes: 4096, want: []string{"/sbin/init", "splash"}},
		{pid: 1, maxArgs: 1, maxBytes: 4096, want: []string{"/sbin/init"}, wantTruncated: true},
		// The file is exactly 18 bytes; 18 still fits.
		{pid: 1, maxArgs: 10, maxBytes: 18, want: []string{"/sbin/init", "splash"}},
		// Cutting off the final NUL loses nothing else, but the reader
		// cannot know that, so it reports truncation.
		{pid: 1, maxArgs: 10, maxBytes: 17, want: []string{"/sbin/init", "splash"}, wantTruncated: true},
		{pid: 1, maxArgs: 10, maxBytes: 13, want: []string{"/sbin/init", "sp"}, wantTruncated: true},
		{pid: 2, maxArgs: 10, maxBytes: 4096, want: nil},
		{
			pid: 42, maxArgs: 10, maxBytes: 4096,
			want: []string{"prog", "--flag=a b", "", "\xff\xfe\nx", string(long)},
		},
		{
			pid: 42, maxArgs: 10, maxBytes: 40,
			want:          []string{"prog", "--flag=a b", "", "\xff\xfe\nx", string(long[:18])},
			wantTruncated: true,
		},
		{pid: 43, maxArgs: 10, maxBytes: 4096, want: []string{"worker: idle"}},
	}
	for _, tt := range tests {
		argv, truncated, err := fake.Cmdline(tt.pid, tt.maxArgs, tt.maxBytes)
		if err != nil {
			t.Errorf("Cmdline(%d, %d, %d) error = %v", tt.pid, tt.maxArgs, tt.maxBytes, err)
			continue
		}
		var got []string
		for _, a := range argv {
			got = append(got, string(a))
		}
		if !slices.Equal(got, tt.want) || truncated != tt.wantTruncated {
			t.Errorf("Cmdline(%d, %d, %d) = %q, %v, want %q, %v",
				tt.pid, tt.maxArgs, tt.maxBytes, got, truncated, tt.want, tt.wantTruncated)
		}
	}
}

func TestCmdlineArgumentsDoNotAlias(t *testing.T) {
	argv, _, err := fake.Cmdline(1, 10, 4096)
	if err != nil {
		t.Fatalf("Cmdline(1) error = %v", err)
	}
	_ = append(argv[0], 'X')
	if got := string(argv[1]); got != "splash" {
		t.Errorf("after appending to argv[0], argv[1] = %q, want %q", got, "splash")
	}
}

func TestCmdlineInvalidLimits(t *testing.T) {
	for _, lim := range [][2]int{{0, 10}, {10, 0}, {-1, -1}} {
		if _, _, err := fake.Cmdline(1, lim[0], lim[1]); err == nil {
			t.Errorf("Cmdline(1, %d, %d) error = nil, want an error", lim[0], lim[1])
		}
	}
}

func TestBootFake(t *testing.T) {
	id, err := fake.BootID()
	if err != nil {
		t.Fatalf("BootID() error = %v", err)
	}
	if want := "0f6d0c3e-9a2b-4c1d-8e7f-123456789abc"; id != want {
		t.Errorf("BootID() = %q, want %q", id, want)
	}
	// The btime line follows an intr line longer than the reader's buffer.
	bt, err := fake.BootTime()
	if err != nil {
		t.Fatalf("BootTime() error = %v", err)
	}
	if want := time.Unix(1700000000, 0); !bt.Equal(want) {
		t.Errorf("BootTime() = %v, want %v", bt, want)
	}
}

func TestBootErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "sys/kernel/random/boot_id", "not-a-uuid\n")
	writeFile(t, dir, "stat", "cpu 1 2 3\nbtime x\n")
	fs := NewFS(dir)
	if _, err := fs.BootID(); err == nil {
		t.Errorf("BootID() with %q error = nil, want an error", "not-a-uuid")
	}
	if _, err := fs.BootTime(); err == nil {
		t.Errorf("BootTime() with %q error = nil, want an error", "btime x")
	}
	writeFile(t, dir, "stat", "cpu 1 2 3\n")
	if _, err := fs.BootTime(); err == nil || !strings.Contains(err.Error(), "missing \"btime\" line") {
		t.Errorf("BootTime() without btime error = %v, want a missing line error", err)
	}
	if _, err := NewFS(t.TempDir()).BootID(); err == nil {
		t.Errorf("BootID() on an empty root error = nil, want an error")
	}
}

func TestStartTime(t *testing.T) {
	boot := time.Unix(1700000000, 0)
	tests := []struct {
		ticks uint64
		want  time.Time
	}{
		{0, boot},
		{100, boot.Add(time.Second)},
		{12345, boot.Add(123*time.Second + 450*time.Millisecond)},
	}
	for _, tt := range tests {
		if got := StartTime(boot, tt.ticks); !got.Equal(tt.want) {
			t.Errorf("StartTime(boot, %d) = %v, want %v", tt.ticks, got, tt.want)
		}
	}
}

func TestParsePID(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1, true},
		{"4194304", 4194304, true},
		{"0", 0, false},
		{"0012", 0, false},
		{"+5", 0, false},
		{"-5", 0, false},
		{"self", 0, false},
		{"", 0, false},
		{"99999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := parsePID(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parsePID(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
