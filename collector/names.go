package collector

import (
	"strings"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// StateName returns the lower-case name of an executable state without
// its prefix, e.g. "on_disk".
func StateName(s binwatchv1.ExecutableState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "EXECUTABLE_STATE_"))
}

// ReasonName returns the lower-case name of a coverage reason without its
// prefix, e.g. "access_denied".
func ReasonName(r binwatchv1.CoverageReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "COVERAGE_REASON_"))
}
