package exe

import (
	"errors"
	"testing"

	"github.com/binwatch/binwatch/collector/procfs"
)

// userPIDs returns the processes of the machine that run an executable.
func userPIDs(b *testing.B) []int {
	b.Helper()
	fs := procfs.NewFS("/proc")
	pids, err := fs.PIDs()
	if err != nil {
		b.Fatal(err)
	}
	var out []int
	for _, pid := range pids {
		st, err := fs.Stat(pid)
		if err == nil && !st.KernelThread() {
			out = append(out, pid)
		}
	}
	return out
}

// inspectAll inspects every pid once and returns the bytes hashed.
func inspectAll(b *testing.B, in *Inspector, pids []int) int64 {
	var bytes int64
	for _, pid := range pids {
		res, err := in.Inspect(pid, nil)
		if errors.Is(err, ErrExited) || errors.Is(err, procfs.ErrNoExecutable) {
			continue
		}
		if err != nil {
			b.Fatalf("Inspect(%d) error = %v", pid, err)
		}
		bytes += res.BytesHashed
	}
	return bytes
}

// BenchmarkInspectAllCold inspects every process of the machine with an
// empty cache, so each distinct executable is read and hashed once.
func BenchmarkInspectAllCold(b *testing.B) {
	pids := userPIDs(b)
	b.ReportAllocs()
	var bytes int64
	for b.Loop() {
		bytes += inspectAll(b, NewInspector(Options{}), pids)
	}
	b.ReportMetric(float64(len(pids)), "procs/op")
	b.SetBytes(bytes / int64(b.N))
}

// BenchmarkInspectAllWarm inspects every process of the machine with every
// executable already cached: the cost of a steady-state scan.
func BenchmarkInspectAllWarm(b *testing.B) {
	pids := userPIDs(b)
	in := NewInspector(Options{})
	inspectAll(b, in, pids)
	b.ReportAllocs()
	for b.Loop() {
		inspectAll(b, in, pids)
	}
	b.ReportMetric(float64(len(pids)), "procs/op")
}
