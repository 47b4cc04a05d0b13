package integration

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// units are the systemd units of deployments/systemd with the security
// settings that each must keep, and the highest exposure that
// `systemd-analyze security` may rate it (0 to 100, shown there divided by
// 10).
var units = []struct {
	name         string
	binary       string
	maxExposure  int
	wantSettings []string
}{
	{
		name:        "binwatch-collector.service",
		binary:      "binwatch-collector",
		maxExposure: 25,
		wantSettings: []string{
			"User=root",
			"CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
			"NoNewPrivileges=yes",
			"ProtectSystem=strict",
			"ProtectKernelTunables=yes",
			"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
			"SocketBindDeny=any",
			"SystemCallFilter=@system-service",
			"Restart=on-failure",
			"EnvironmentFile=-/etc/binwatch/binwatch.env",
		},
	},
	{
		name:        "binwatch-agent.service",
		binary:      "binwatch-agent",
		maxExposure: 15,
		wantSettings: []string{
			"DynamicUser=yes",
			"StateDirectory=binwatch",
			"CapabilityBoundingSet=",
			"NoNewPrivileges=yes",
			"ProtectSystem=strict",
			"SystemCallFilter=@system-service",
			"Restart=on-failure",
			"EnvironmentFile=-/etc/binwatch/binwatch.env",
		},
	},
}

// TestSystemdUnits runs systemd-analyze verify and security on the unit
// files. verify needs the ExecStart binary to exist, so the test runs it
// on a copy whose only change is that path, pointing at an executable
// stub.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found; install systemd to check the unit files")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		t.Run(u.name, func(t *testing.T) {
			src := filepath.Join(repoRoot, "deployments", "systemd", u.name)
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			settings := unitSettings(string(data))
			for _, want := range u.wantSettings {
				if !settings[want] {
					t.Errorf("%s lacks %q", u.name, want)
				}
			}
			execStart := "ExecStart=/usr/local/bin/" + u.binary
			if !settings[execStart] {
				t.Fatalf("%s lacks %q", u.name, execStart)
			}
			text := strings.Replace(string(data), execStart, "ExecStart="+stub, 1)
			unit := filepath.Join(dir, u.name)
			if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}

			// verify exits with status 0 after warnings such as unknown
			// settings, so any output fails the test.
			out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u.name, err, out)
			}
			out, err = exec.Command(analyze, "security", "--offline=yes",
				"--threshold="+strconv.Itoa(u.maxExposure), unit).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security --threshold=%d %s: %v\n%s", u.maxExposure, u.name, err, lastLines(out, 3))
			}
		})
	}
}

// TestSystemdEnvironment checks that every variable in binwatch.env and
// in the units' Environment= lines is a setting of a binwatch binary.
func TestSystemdEnvironment(t *testing.T) {
	help := binaryHelp(t, "binwatch-agent") + binaryHelp(t, "binwatch-collector")
	path := filepath.Join(repoRoot, "deployments", "systemd", "binwatch.env")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := 0
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(scanner.Text()), "#")
		name, _, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(name, "BINWATCH_") || strings.ContainsAny(name, " \t") {
			continue
		}
		names++
		if !hasVariable(help, name) {
			t.Errorf("binwatch.env: %s is not a setting of binwatch-agent or binwatch-collector", name)
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if names == 0 {
		t.Error("binwatch.env names no BINWATCH_ variable")
	}
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join(repoRoot, "deployments", "systemd", u.name))
		if err != nil {
			t.Fatal(err)
		}
		unitHelp := binaryHelp(t, u.binary)
		for setting := range unitSettings(string(data)) {
			assignment, ok := strings.CutPrefix(setting, "Environment=")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(assignment, "=")
			if !hasVariable(unitHelp, name) {
				t.Errorf("%s: %s is not a setting of %s", u.name, name, u.binary)
			}
		}
	}
}

// TestProcRootIgnoresServiceMounts backs the reasoning of the collector
// unit: a mount in the collector's own mount namespace, as PrivateTmp= and
// ProtectHome= make, hides a file at its plain path but not through
// /proc/<pid>/root of a process in the host's namespace.
func TestProcRootIgnoresServiceMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a mount namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) not found")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "executable")
	if err := os.WriteFile(file, []byte("contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	through := filepath.Join("/proc", strconv.Itoa(os.Getpid()), "root", file)
	script := `mount -t tmpfs tmpfs "$1" || exit 90
if test -e "$2"; then echo "plain path still visible"; exit 91; fi
cat "$3"`
	out, err := exec.Command(unshare, "--mount", "--propagation", "private",
		"sh", "-c", script, "sh", dir, file, through).CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 90 {
			t.Skipf("cannot mount in a new mount namespace here: %s", out)
		}
		t.Fatalf("reading %s from a new mount namespace: %v\n%s", through, err, out)
	}
	if string(out) != "contents" {
		t.Errorf("cat %s in a namespace that hides %s = %q, want %q", through, dir, out, "contents")
	}
}

// unitSettings returns the "Key=value" lines of a unit file.
func unitSettings(text string) map[string]bool {
	settings := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		settings[line] = true
	}
	return settings
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
