package procfs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to dir/name, creating parent directories.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setEnv returns env with key set to value, replacing earlier settings,
// because os.Getenv in a process started by syscall.Exec returns the first
// of duplicate entries.
func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// escapeMountPoint escapes a path the way mountinfo does.
func escapeMountPoint(p string) string {
	r := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`)
	return r.Replace(p)
}

func TestVisibilityFake(t *testing.T) {
	const (
		allCaps    = "000001ffffffffff"
		noCaps     = "0000000000000000"
		ptraceOnly = "0000000000080000"
	)
	type mount struct{ fsType, opts string }
	tests := []struct {
		name        string
		mounts      []mount // entries at the root, in mountinfo order
		noMountinfo bool
		capEff      string // empty leaves the CapEff line out
		gid         string
		groups      string
		noPID1      bool
		wantPartial bool
		wantDetail  string
	}{
		{name: "no hidepid", mounts: []mount{{"proc", "rw"}}, capEff: noCaps,
			wantDetail: "hidepid=off"},
		{name: "invisible without ptrace", mounts: []mount{{"proc", "rw,hidepid=invisible"}}, capEff: noCaps,
			wantPartial: true, wantDetail: "hidepid=invisible, CAP_SYS_PTRACE missing"},
		{name: "numeric 2 with ptrace", mounts: []mount{{"proc", "rw,hidepid=2"}}, capEff: ptraceOnly,
			wantDetail: "hidepid=invisible, CAP_SYS_PTRACE present"},
		{name: "numeric 1 without ptrace", mounts: []mount{{"proc", "rw,hidepid=1"}}, capEff: allCaps[:8] + "fff7ffff",
			wantPartial: true, wantDetail: "hidepid=noaccess, CAP_SYS_PTRACE missing"},
		{name: "gid member by group", mounts: []mount{{"proc", "rw,hidepid=noaccess,gid=27"}}, capEff: noCaps, groups: "4 27",
			wantDetail: "member of group 27"},
		{name: "gid member by fsgid", mounts: []mount{{"proc", "rw,hidepid=invisible,gid=100"}}, capEff: noCaps, gid: "5\t5\t5\t100",
			wantDetail: "member of group 100"},
		{name: "gid not member", mounts: []mount{{"proc", "rw,hidepid=invisible,gid=27"}}, capEff: noCaps, groups: "4",
			wantPartial: true, wantDetail: "not in group 27"},
		{name: "ptraceable ignores gid", mounts: []mount{{"proc", "rw,hidepid=ptraceable,gid=27"}}, capEff: noCaps, groups: "27",
			wantPartial: true, wantDetail: "hidepid=ptraceable, CAP_SYS_PTRACE missing"},
		{name: "subset pid", mounts: []mount{{"proc", "rw,subset=pid"}}, capEff: noCaps,
			wantDetail: "subset=pid hides the files that are not per-process"},
		{name: "last mount wins", mounts: []mount{{"proc", "rw,hidepid=invisible"}, {"proc", "rw"}}, capEff: noCaps,
			wantDetail: "hidepid=off"},
		{name: "last mount wins hidden", mounts: []mount{{"proc", "rw"}, {"proc", "rw,hidepid=invisible"}}, capEff: noCaps,
			wantPartial: true, wantDetail: "hidepid=invisible"},
		{name: "capabilities unknown", mounts: []mount{{"proc", "rw,hidepid=invisible"}},
			wantPartial: true, wantDetail: "own capabilities unknown"},
		{name: "not a proc mount", mounts: []mount{{"tmpfs", "rw"}}, capEff: noCaps,
			wantDetail: "is a tmpfs mount, not proc"},
		{name: "no mountinfo", noMountinfo: true, capEff: noCaps,
			wantDetail: "mount options unknown"},
		{name: "no mountinfo and no pid 1", noMountinfo: true, noPID1: true, capEff: noCaps,
			wantPartial: true, wantDetail: "pid 1 is not listed"},
		{name: "pid 1 hidden despite options", mounts: []mount{{"proc", "rw"}}, noPID1: true, capEff: allCaps,
			wantPartial: true, wantDetail: "pid 1 is not listed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A space in the root exercises the mountinfo escapes.
			root := filepath.Join(t.TempDir(), "pro c\\x")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			resolved, err := filepath.EvalSymlinks(root)
			if err != nil {
				t.Fatal(err)
			}
			var mi strings.Builder
			mi.WriteString("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
			for i, m := range tt.mounts {
				fmt.Fprintf(&mi, "%d 22 0:%d / %s rw,relatime - %s %s %s\n", 60+i, 40+i, escapeMountPoint(resolved), m.fsType, m.fsType, m.opts)
			}
			mi.WriteString("99 22 0:50 / /other rw - proc proc rw,hidepid=invisible\n")
			if !tt.noMountinfo {
				writeFile(t, root, "self/mountinfo", mi.String())
			}
			gid := tt.gid
			if gid == "" {
				gid = "0\t0\t0\t0"
			}
			status := "Name:\tcollector\nUid:\t0\t0\t0\t0\nGid:\t" + gid + "\nGroups:\t" + tt.groups + "\n"
			if tt.capEff != "" {
				status += "CapEff:\t" + tt.capEff + "\n"
			}
			writeFile(t, root, "self/status", status)
			writeFile(t, root, "4242/stat", "")
			if !tt.noPID1 {
				writeFile(t, root, "1/stat", "")
			}

			got, err := NewFS(root).Visibility()
			if err != nil {
				t.Fatalf("Visibility() error = %v", err)
			}
			if got.Partial != tt.wantPartial {
				t.Errorf("Visibility().Partial = %v, want %v (detail %q)", got.Partial, tt.wantPartial, got.Detail)
			}
			if !strings.Contains(got.Detail, tt.wantDetail) {
				t.Errorf("Visibility().Detail = %q, want it to contain %q", got.Detail, tt.wantDetail)
			}
		})
	}
}

func TestParseMountInfoErrors(t *testing.T) {
	for _, line := range []string{
		"",
		"22 1 254:0 / / rw",
		"22 1 254:0 / / rw - ext4",
		`22 1 254:0 / /a\04 rw - proc proc rw`,
		`22 1 254:0 / /a\999 rw - proc proc rw`,
	} {
		if _, err := parseMountInfo([]byte(line)); err == nil {
			t.Errorf("parseMountInfo(%q) error = nil, want an error", line)
		}
	}
	m, err := parseMountInfo([]byte(`36 35 98:0 /mnt1 /a\040b\012c rw,noatime master:1 shared:2 - proc none rw,hidepid=2`))
	if err != nil {
		t.Fatalf("parseMountInfo error = %v", err)
	}
	if m.mountPoint != "/a b\nc" || m.fsType != "proc" || strings.Join(m.superOptions, ",") != "rw,hidepid=2" {
		t.Errorf("parseMountInfo = %+v, want mount point %q, proc, rw,hidepid=2", m, "/a b\nc")
	}
}

// hasCapSysPtrace reports whether the test process holds CAP_SYS_PTRACE.
func hasCapSysPtrace(t *testing.T) bool {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	caps, err := parseCapLine(status, "CapEff")
	if err != nil {
		t.Fatal(err)
	}
	return caps&(1<<capSysPtrace) != 0
}

func TestVisibilityRealProc(t *testing.T) {
	if os.Geteuid() != 0 || !hasCapSysPtrace(t) {
		t.Skip("needs root with CAP_SYS_PTRACE, which sees every process whatever the mount options")
	}
	v, err := real.Visibility()
	if err != nil {
		t.Fatalf("Visibility() error = %v", err)
	}
	if v.Partial {
		t.Errorf("Visibility() on /proc as root = partial (%q), want full", v.Detail)
	}
}

func TestVisibilityHidePIDMount(t *testing.T) {
	if os.Geteuid() != 0 || !hasCapSysPtrace(t) {
		t.Skip("needs root with CAP_SYS_PTRACE to mount proc in a private mount namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) not found; install util-linux")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv(1) not found; install util-linux")
	}

	// The unprivileged helper must be able to run the test binary and
	// reach the mount point, so both live in a world-readable directory.
	dir, err := os.MkdirTemp("", "procfs-hidepid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "procfs.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	procDir := filepath.Join(dir, "proc")
	if err := os.Mkdir(procDir, 0o755); err != nil {
		t.Fatal(err)
	}
	allPIDs, err := real.PIDs()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		argv        []string
		wantPartial bool
	}{
		{"root with ptrace", []string{bin}, false},
		{"root without ptrace", []string{setpriv, "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", bin}, true},
		{"nobody", []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			argv, err := json.Marshal(tt.argv)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, unshare, "--mount", "--propagation", "private", bin)
			cmd.Env = setEnv(os.Environ(), helperEnv, "mount-hidepid")
			cmd.Env = setEnv(cmd.Env, "PROCFS_TEST_PROC", procDir)
			cmd.Env = setEnv(cmd.Env, "PROCFS_TEST_ARGV", string(argv))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helper %q: %v\nstderr: %s", tt.argv, err, stderr.Bytes())
			}
			var rep visibilityReport
			if err := json.Unmarshal(out, &rep); err != nil {
				t.Fatalf("decoding helper output %q: %v", out, err)
			}
			if rep.Visibility.Partial != tt.wantPartial {
				t.Errorf("Visibility() as %q = partial %v (%q), want %v", tt.argv, rep.Visibility.Partial, rep.Visibility.Detail, tt.wantPartial)
			}
			if !strings.Contains(rep.Visibility.Detail, "hidepid=invisible") {
				t.Errorf("Visibility().Detail = %q, want it to name hidepid=invisible", rep.Visibility.Detail)
			}
			// The scenario is real only if the unprivileged helpers see fewer
			// processes than root does on the normal /proc.
			if tt.wantPartial && tt.argv[1] == "--reuid=65534" && rep.PIDs >= len(allPIDs) {
				t.Errorf("helper as uid %d listed %d pids, want fewer than root's %d", rep.UID, rep.PIDs, len(allPIDs))
			}
		})
	}
}
