// Package integration tests the deployment files of binwatch (the
// nats-server configurations, systemd units and compose file) against real
// programs: nats-server built from the module's pinned version, started as
// separate processes on loopback ports, and systemd-analyze.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// natsServerBin is the nats-server binary that TestMain builds.
var natsServerBin string

// repoRoot is the repository's top directory; go test runs each package in
// its own directory.
const repoRoot = ".."

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "binwatch-integration-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: creating temporary directory: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: building nats-server: %v\n%s", err, out)
		return 1
	}
	natsServerBin = bin
	return m.Run()
}
