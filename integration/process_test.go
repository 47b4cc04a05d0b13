package integration

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// serverProcess is one nats-server process started by a test.
type serverProcess struct {
	name    string
	config  string
	env     []string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startServer runs nats-server with config and the extra environment
// variables env, logging to a file in a test directory. The process is
// stopped when the test ends, and its log is shown if the test failed.
func startServer(t *testing.T, name, config string, env []string) *serverProcess {
	t.Helper()
	p := &serverProcess{
		name:    name,
		config:  config,
		env:     env,
		logPath: filepath.Join(t.TempDir(), name+".log"),
	}
	p.start(t)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			showLog(t, p)
		}
	})
	return p
}

func (p *serverProcess) start(t *testing.T) {
	t.Helper()
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("opening log of %s: %v", p.name, err)
	}
	cmd := exec.Command(natsServerBin, "-c", p.config)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting nats-server %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	p.cmd = cmd
	p.done = done
}

// running reports whether the process has not exited yet.
func (p *serverProcess) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *serverProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("killing %s: %v", p.name, err)
	}
	<-p.done
}

// stop sends SIGTERM and kills the process if it has not exited after 10 s.
func (p *serverProcess) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func showLog(t *testing.T, p *serverProcess) {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("reading log of %s: %v", p.name, err)
		return
	}
	const tail = 6000
	if len(data) > tail {
		data = data[len(data)-tail:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	t.Logf("end of the log of %s:\n%s", p.name, data)
}

// waitForPort polls until addr accepts TCP connections, failing the test
// if the process exits or 15 s pass.
func waitForPort(t *testing.T, p *serverProcess, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if !p.running() {
			t.Fatalf("nats-server %s exited before listening on %s", p.name, addr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s: %s not accepting connections after 15s: %v", p.name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago. Another process may take one before the server binds it; the server
// then fails to start and the test reports it.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// loopback returns 127.0.0.1:port.
func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// poll calls check until it returns nil, failing the test with the last
// error when timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
