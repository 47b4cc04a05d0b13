package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/collector"
	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// oddUID is the largest uid that setuid accepts: 4294967295 is (uid_t)-1,
// which means "unchanged".
const oddUID = 4294967294

// scanHost scans this host's processes with the collector's defaults.
func scanHost(t *testing.T) *collector.Scan {
	t.Helper()
	s, err := collector.NewScanner(collector.Options{})
	if err != nil {
		t.Fatalf("collector.NewScanner: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scan, err := s.Scan(ctx)
	if err != nil {
		t.Fatalf("collector scan: %v", err)
	}
	if len(scan.Records) == 0 {
		t.Fatal("collector scan found no process, want at least this test")
	}
	return scan
}

// checkScanAccepted splits scan into batches of at most 1 MiB as the
// collector publishes them, and requires every batch to pass Validate and
// a protobuf round trip through Decode and DecodeBatch.
func checkScanAccepted(t *testing.T, scan *collector.Scan) {
	t.Helper()
	p, err := collector.NewPublisher(nil, testHost, "web-01.example.org")
	if err != nil {
		t.Fatalf("collector.NewPublisher: %v", err)
	}
	batches, oversized := p.Split(scan, 1<<20)
	if oversized != 0 {
		t.Errorf("Split dropped %d oversized records, want 0", oversized)
	}
	header := map[string][]string{
		schema.HeaderContentType: {schema.ContentTypeProtobuf},
		schema.HeaderMessageType: {schema.MessageTypeProcessBatch},
	}
	for _, b := range batches {
		if err := Validate(b, testHost); err != nil {
			t.Errorf("Validate(batch %d of scan %d) = %v, want nil", b.BatchIndex, b.ScanSeq, err)
		}
		data, err := proto.Marshal(b)
		if err != nil {
			t.Fatalf("marshal batch %d: %v", b.BatchIndex, err)
		}
		if _, err := Decode(testSubject, header, data); err != nil {
			t.Errorf("Decode(batch %d of scan %d) = %v, want nil", b.BatchIndex, b.ScanSeq, err)
		}
		res, err := DecodeBatch(testSubject, header, data)
		if err != nil {
			t.Fatalf("DecodeBatch(batch %d of scan %d) = %v, want nil", b.BatchIndex, b.ScanSeq, err)
		}
		if len(res.Rejected) != 0 {
			t.Errorf("DecodeBatch(batch %d of scan %d) rejected %v, want no record rejected", b.BatchIndex, b.ScanSeq, res.Rejected)
		}
	}
}

// TestValidateCollectorScan validates every batch of a real scan of this
// host. The scan includes a copy of sleep that is as odd as a local user
// can make it: a 2 TiB sparse file dated 1960 at a path of 4095 bytes,
// the longest that readlink of /proc/<pid>/exe returns, named with 15
// bytes that are not UTF-8, and run as uid 4294967294 when the test runs
// as root. One scan serves both checks because hashing every program of
// the host is slow under the race detector.
func TestValidateCollectorScan(t *testing.T) {
	odd := startOddProcess(t)
	scan := scanHost(t)
	t.Run("odd process", func(t *testing.T) { checkOddRecord(t, scan, odd) })
	t.Run("all batches", func(t *testing.T) { checkScanAccepted(t, scan) })
}

// oddProcess is the process that startOddProcess started.
type oddProcess struct {
	pid   int
	path  string
	mtime time.Time
	// uid is oddUID when the test runs as root, and -1 otherwise.
	uid int64
}

func startOddProcess(t *testing.T) oddProcess {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("no sleep program to copy: %v", err)
	}
	root := t.TempDir()
	// A process of another uid must be able to reach the copy.
	for _, dir := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := string(bytes.Repeat([]byte{0xff}, 15))
	dir := deepDir(t, root, MaxPathLen-1-len("/"+name))
	odd := oddProcess{path: filepath.Join(dir, name), uid: -1}
	if len(odd.path) != MaxPathLen-1 {
		t.Fatalf("executable path is %d bytes, want %d", len(odd.path), MaxPathLen-1)
	}
	copyFile(t, sleep, odd.path)
	if err := os.Truncate(odd.path, 2<<40); err != nil {
		t.Skipf("no sparse file of 2 TiB on %s: %v", root, err)
	}
	odd.mtime = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(odd.path, odd.mtime, odd.mtime); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("./"+name, "60")
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		odd.uid = oddUID
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: oddUID, Gid: oddUID}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", odd.path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	odd.pid = cmd.Process.Pid
	waitExec(t, odd.pid, odd.path)
	return odd
}

// checkOddRecord finds the record of odd in scan, checks that it carries
// the odd values and that it passes validation.
func checkOddRecord(t *testing.T, scan *collector.Scan, odd oddProcess) {
	var rec *binwatchv1.ProcessRecord
	for _, r := range scan.Records {
		if r.GetPid() == int32(odd.pid) {
			rec = r
		}
	}
	if rec == nil {
		t.Fatalf("collector scan has no record of pid %d", odd.pid)
	}
	x := rec.GetExecutable()
	if got := x.GetRunning().GetSize(); got != 2<<40 {
		t.Errorf("running size = %d, want %d", got, uint64(2<<40))
	}
	if got := x.GetRunning().GetMtimeNs(); got != odd.mtime.UnixNano() {
		t.Errorf("running mtime_ns = %d, want %d", got, odd.mtime.UnixNano())
	}
	if got := x.GetPath(); !bytes.Equal(got, []byte(odd.path)) {
		t.Errorf("path is %d bytes, want the %d bytes of the copy", len(got), len(odd.path))
	}
	if got, want := rec.GetName(), escapedName(15); got != want {
		t.Errorf("name = %q, want %q", got, want)
	}
	if err := checkRecord(rec, recordField{0}); err != nil {
		t.Errorf("record of the odd process: %v, want nil", err)
	}
	if odd.uid < 0 {
		t.Skip("not root, so the process runs with this test's uid: uid 4294967294 not checked")
	}
	for i, uid := range rec.GetUids() {
		if int64(uid) != odd.uid {
			t.Errorf("uids[%d] = %d, want %d", i, uid, odd.uid)
		}
	}
}

// deepDir creates nested directories under root whose path has exactly n
// bytes, each name at most 255 bytes, and returns it.
func deepDir(t *testing.T, root string, n int) string {
	t.Helper()
	dir := root
	for len(dir) < n {
		size := min(255, n-len(dir)-1)
		if size < 1 {
			t.Fatalf("cannot extend %d-byte path to %d bytes", len(dir), n)
		}
		if rest := n - len(dir) - 1 - size; rest == 1 {
			size-- // leave room for a separator and a one-byte name
		}
		dir += "/" + strings.Repeat("d", size)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitExec polls until process pid runs the program at path.
func waitExec(t *testing.T, pid int, path string) {
	t.Helper()
	link := "/proc/" + strconv.Itoa(pid) + "/exe"
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := os.Readlink(link)
		if err == nil && got == path {
			return
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("readlink %s: %v", link, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d does not run %d-byte path after 10s (readlink: %d bytes, %v)", pid, len(path), len(got), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
