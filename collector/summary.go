package collector

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// WriteSummary prints one scan's statistics, and alert counts by kind when
// alerts is not nil, as aligned "name: value" lines.
func WriteSummary(w io.Writer, st *binwatchv1.ScanStats, alerts map[string]uint64) {
	fmt.Fprintf(w, "processes seen:      %d (kernel threads skipped: %d, exited during scan: %d)\n",
		st.ProcessesSeen, st.KernelThreads, st.Exited)
	fmt.Fprintf(w, "executables hashed:  %d\n", st.ExecutablesHashed)
	fmt.Fprintf(w, "cache hits:          %d\n", st.CacheHits)
	fmt.Fprintf(w, "bytes hashed:        %d (%.1f MiB)\n", st.BytesHashed, float64(st.BytesHashed)/(1<<20))
	full := st.ProcessesSeen
	for _, n := range st.CoverageDegraded {
		full -= n
	}
	fmt.Fprintf(w, "coverage:            full %d%s\n", full, formatCounts(st.CoverageDegraded))
	fmt.Fprintf(w, "executable states:   %s\n", strings.TrimPrefix(formatCounts(st.States), ", "))
	if st.PartialVisibility {
		fmt.Fprintf(w, "visibility:          partial: %s\n", st.VisibilityDetail)
	}
	if st.RecordsOversized > 0 {
		fmt.Fprintf(w, "records dropped:     %d (larger than the max payload)\n", st.RecordsOversized)
	}
	if alerts != nil {
		text := strings.TrimPrefix(formatCounts(alerts), ", ")
		if text == "" {
			text = "none"
		}
		fmt.Fprintf(w, "alerts:              %s\n", text)
	}
	fmt.Fprintf(w, "duration:            %s\n", time.Duration(st.DurationNs).Round(time.Millisecond))
}

// formatCounts renders a map as ", key value" pairs in key order.
func formatCounts[V uint32 | uint64](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, ", %s %d", k, m[k])
	}
	return b.String()
}
