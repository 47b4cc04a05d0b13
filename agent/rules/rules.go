package rules

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/agent/baseline"
	"github.com/binwatch/binwatch/internal/fuzzyhash"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// partialVisibility raises one coverage_degraded alert per host, boot and
// visibility detail when /proc hides processes from the collector.
func (ev *evaluation) partialVisibility() {
	b := ev.batch
	detail := b.GetStats().GetVisibilityDetail()
	id := AlertID(b.GetHostId(), binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED,
		"partial_visibility", b.GetBootId(), detail)
	if !ev.first(id) {
		return
	}
	a := ev.newAlert(id, binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED, binwatchv1.Severity_SEVERITY_MEDIUM)
	a.CoverageReason = binwatchv1.CoverageReason_COVERAGE_REASON_PARTIAL_VISIBILITY
	a.Message = fmt.Sprintf("coverage degraded on host %s: /proc hides processes from the collector", b.GetHostId())
	a.Detail = "the collector cannot see every process (e.g. /proc mounted with hidepid), " +
		"so executables of hidden processes are not checked"
	if detail != "" {
		a.Detail += ": " + PathText([]byte(detail))
	}
	ev.alerts = append(ev.alerts, a)
}

// coverageDegraded raises one alert per running executable and reason. The
// executable is named by its file identity and SHA-256 when the collector
// could stat it, and by its path otherwise.
func (ev *evaluation) coverageDegraded(r *binwatchv1.ProcessRecord) {
	x := r.GetExecutable()
	reason := x.GetCoverageReason()
	key := []string{"path", string(x.GetPath())}
	switch {
	case x.GetRunning() != nil:
		key = append([]string{"file"}, identity(x.GetRunning())...)
	case len(x.GetPath()) == 0:
		// Neither the file nor its path could be read. The process name
		// is used in place of the executable, so that the workers of one
		// program raise one alert and different programs one each.
		key = []string{"name", r.GetName()}
	}
	key = append(key, reason.String())
	id := AlertID(ev.batch.GetHostId(), binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED, key...)
	if !ev.first(id) {
		return
	}
	a := ev.newProcessAlert(id, binwatchv1.AlertKind_ALERT_KIND_COVERAGE_DEGRADED, binwatchv1.Severity_SEVERITY_MEDIUM, r)
	a.Message = fmt.Sprintf("coverage degraded for pid %d %s: %s", r.GetPid(), a.Process.Executable, reasonText(reason))
	if a.Process.Executable == "" {
		a.Message = fmt.Sprintf("coverage degraded for pid %d: %s", r.GetPid(), reasonText(reason))
	}
	a.Detail = coverageDetail(reason)
	if d := x.GetCoverageDetail(); d != "" {
		a.Detail += ": " + PathText([]byte(d))
	}
	ev.alerts = append(ev.alerts, a)
}

func coverageDetail(reason binwatchv1.CoverageReason) string {
	switch reason {
	case binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED:
		return "SHA-256 was computed but ssdeep was not, so a change of this binary cannot be scored for similarity"
	case binwatchv1.CoverageReason_COVERAGE_REASON_ACCESS_DENIED:
		return "the collector was denied access to the executable, so it is not hashed"
	case binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE:
		return "the executable is larger than the collector's size cap, so it is not hashed"
	case binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR:
		return "opening or reading the executable failed, so it is not hashed"
	}
	return "the executable is not fully hashed (" + reasonText(reason) + ")"
}

// diskMismatch raises one alert per state, running file and on-disk file
// when the running image is not the file at its path. The on-disk file is
// named by its SHA-256, or by its identity when it was not hashed.
func (ev *evaluation) diskMismatch(r *binwatchv1.ProcessRecord) {
	x := r.GetExecutable()
	state := x.GetState()
	onDisk := x.GetOnDisk()
	onDiskKey := ""
	if onDisk != nil && onDisk.GetSha256() == "" {
		onDiskKey = identity(onDisk)[0]
	}
	key := append([]string{state.String()}, identity(x.GetRunning())...)
	key = append(key, onDisk.GetSha256(), onDiskKey)
	id := AlertID(ev.batch.GetHostId(), binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH, key...)
	if !ev.first(id) {
		return
	}

	a := ev.newProcessAlert(id, binwatchv1.AlertKind_ALERT_KIND_DISK_MISMATCH, binwatchv1.Severity_SEVERITY_HIGH, r)
	path := a.Process.Executable
	switch state {
	case binwatchv1.ExecutableState_EXECUTABLE_STATE_REPLACED:
		a.OnDisk = &binwatchv1.Hashes{Sha256: onDisk.GetSha256(), Ssdeep: onDisk.GetSsdeep()}
		a.Message = fmt.Sprintf("pid %d runs %s, but another file is now at that path", r.GetPid(), path)
		a.Detail = fmt.Sprintf("running SHA-256 %s, on-disk SHA-256 %s",
			shortSHA(x.GetRunning().GetSha256()), shortSHA(onDisk.GetSha256()))
		score, note := similarity(x.GetRunning().GetSsdeep(), onDisk.GetSsdeep(), "the running file", "the on-disk file")
		if score >= 0 {
			a.Similarity = proto.Int32(int32(score))
			a.Detail += fmt.Sprintf(", ssdeep similarity %d", score)
		} else if x.OnDiskSimilarity != nil {
			s := x.GetOnDiskSimilarity()
			a.Similarity = &s
			a.Detail += fmt.Sprintf(", ssdeep similarity %d as the collector computed it (%s)", s, note)
		} else {
			a.Detail += ", " + note
		}
	case binwatchv1.ExecutableState_EXECUTABLE_STATE_UNLINKED:
		a.Message = fmt.Sprintf("pid %d runs %s, which was deleted from disk", r.GetPid(), path)
		a.Detail = fmt.Sprintf("the running image (SHA-256 %s) has no links left and nothing is at its path",
			shortSHA(x.GetRunning().GetSha256()))
	default:
		a.Message = fmt.Sprintf("pid %d runs %s, an anonymous memory file (fileless execution)", r.GetPid(), path)
		a.Detail = fmt.Sprintf("the running image (SHA-256 %s) was created with memfd_create and exists on no file system",
			shortSHA(x.GetRunning().GetSha256()))
	}
	if d := x.GetStateDetail(); d != "" {
		a.Detail += "; " + PathText([]byte(d))
	}
	ev.alerts = append(ev.alerts, a)
}

// binaryChange compares an on-disk executable with the baseline of its
// host and path. The first sighting sets the baseline. A new SHA-256 with
// an ssdeep similarity at or above the threshold is an update, which moves
// the baseline silently. Below the threshold, or with the similarity
// unknown, it raises an alert and moves the baseline too, so a changed
// binary alerts once.
//
// NOTE: records name no mount namespace, so containers that run different
// binaries at one path share a baseline. The baseline then moves between
// them, and the alert ids (old, new) and (new, old) each alert once.
func (ev *evaluation) binaryChange(r *binwatchv1.ProcessRecord) {
	store := ev.engine.store
	host := ev.batch.GetHostId()
	x := r.GetExecutable()
	path := x.GetPath()
	sha, ssd := x.GetRunning().GetSha256(), x.GetRunning().GetSsdeep()

	old, ok := store.Get(host, path)
	if !ok {
		store.Put(host, path, baseline.Entry{SHA256: sha, SSDeep: ssd, FirstSeen: ev.now, LastSeen: ev.now})
		return
	}
	if old.SHA256 == sha {
		if old.SSDeep == "" && ssd != "" {
			store.Put(host, path, baseline.Entry{SHA256: sha, SSDeep: ssd, FirstSeen: old.FirstSeen, LastSeen: ev.now})
			return
		}
		store.Touch(host, path)
		return
	}
	store.Put(host, path, baseline.Entry{SHA256: sha, SSDeep: ssd, FirstSeen: ev.now, LastSeen: ev.now})

	score, note := similarity(old.SSDeep, ssd, "the previous binary", "the new binary")
	if score >= ev.engine.threshold {
		return
	}
	id := AlertID(host, binwatchv1.AlertKind_ALERT_KIND_BINARY_CHANGE, string(path), old.SHA256, sha)
	if !ev.first(id) {
		return
	}
	a := ev.newProcessAlert(id, binwatchv1.AlertKind_ALERT_KIND_BINARY_CHANGE, binwatchv1.Severity_SEVERITY_MEDIUM, r)
	a.Previous = &binwatchv1.Hashes{Sha256: old.SHA256, Ssdeep: old.SSDeep}
	var why string
	if score >= 0 {
		a.Similarity = proto.Int32(int32(score))
		why = fmt.Sprintf("ssdeep similarity %d is below the threshold %d", score, ev.engine.threshold)
	} else {
		why = note + ", so the change is reported without a score"
	}
	a.Message = fmt.Sprintf("pid %d runs a changed binary at %s: SHA-256 %s, was %s",
		r.GetPid(), a.Process.Executable, shortSHA(sha), shortSHA(old.SHA256))
	a.Detail = fmt.Sprintf("%s; the previous binary was seen from %s to %s; the new one is now the baseline",
		why, formatTime(old.FirstSeen), formatTime(old.LastSeen))
	ev.alerts = append(ev.alerts, a)
}

// similarity returns the ssdeep score of digests a and b of the files
// named nameA and nameB, or -1 and the reason when a digest is missing or
// the comparison fails.
func similarity(a, b, nameA, nameB string) (int, string) {
	var missing []string
	if a == "" {
		missing = append(missing, nameA)
	}
	if b == "" {
		missing = append(missing, nameB)
	}
	if len(missing) > 0 {
		return -1, "similarity unknown: no ssdeep digest for " + strings.Join(missing, " or ")
	}
	score, err := fuzzyhash.Compare(a, b)
	if err != nil {
		return -1, "similarity unknown: comparing ssdeep digests failed: " + err.Error()
	}
	return score, ""
}
