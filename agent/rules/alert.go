package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// alertIDDomain is the first part of every alert id's input. It keeps alert
// ids apart from SHA-256 digests of the same parts made for other purposes,
// and a new id scheme would use a new domain.
const alertIDDomain = "binwatch.alert.v1"

// AlertID returns the deterministic id of an alert: the lower-case hex
// SHA-256 of the domain "binwatch.alert.v1", host, the kind's subject token
// and each key part, each preceded by its length as 8 big-endian bytes.
// The length prefixes make the parts unambiguous: ("ab", "c") and
// ("a", "bc") give different ids. It is used as the Nats-Msg-Id header.
func AlertID(host string, kind binwatchv1.AlertKind, key ...string) string {
	h := sha256.New()
	var n [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(alertIDDomain)
	write(host)
	write(schema.KindToken(kind))
	for _, k := range key {
		write(k)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PathText renders raw path bytes as text, as the body of a Go quoted
// string (strconv.Quote without the quotes). Valid printable UTF-8 other
// than '"' and '\' is kept. A newline becomes \n, an invalid byte \xff,
// and '"' and '\' are escaped too. Adding '"' at both ends gives a string
// that strconv.Unquote turns back into the bytes.
func PathText(path []byte) string {
	q := strconv.Quote(string(path))
	return q[1 : len(q)-1]
}

// kindRule returns the rule name of kind, e.g. "binwatch.disk_mismatch".
func kindRule(kind binwatchv1.AlertKind) string {
	return "binwatch." + schema.KindToken(kind)
}

// enumText turns an enum value name into lower-case words without its
// prefix, e.g. COVERAGE_REASON_ACCESS_DENIED into "access denied".
func enumText(name, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, prefix)), "_", " ")
}

func reasonText(r binwatchv1.CoverageReason) string {
	return enumText(r.String(), "COVERAGE_REASON_")
}

// shortSHA returns the first 12 hex digits of a SHA-256 for messages, or
// "unknown".
func shortSHA(s string) string {
	switch {
	case s == "":
		return "unknown"
	case len(s) > 12:
		return s[:12]
	}
	return s
}

// newAlert returns an alert with the fields that every alert carries.
func (ev *evaluation) newAlert(id string, kind binwatchv1.AlertKind, severity binwatchv1.Severity) *binwatchv1.IntegrityAlert {
	b := ev.batch
	return &binwatchv1.IntegrityAlert{
		Id:       id,
		Kind:     kind,
		Severity: severity,
		Rule:     kindRule(kind),
		Time:     timestamppb.New(ev.now),
		Host: &binwatchv1.AlertHost{
			Id:       b.GetHostId(),
			Hostname: b.GetHostname(),
			BootId:   b.GetBootId(),
		},
		SimilarityThreshold: int32(ev.engine.threshold),
	}
}

// newProcessAlert returns an alert about the process of record r.
func (ev *evaluation) newProcessAlert(id string, kind binwatchv1.AlertKind, severity binwatchv1.Severity, r *binwatchv1.ProcessRecord) *binwatchv1.IntegrityAlert {
	a := ev.newAlert(id, kind, severity)
	x := r.GetExecutable()
	a.Process = &binwatchv1.AlertProcess{
		Pid:           r.GetPid(),
		StartTicks:    r.GetStartTicks(),
		StartTime:     startTime(r),
		Name:          r.GetName(),
		Executable:    PathText(x.GetPath()),
		ExecutableRaw: bytes.Clone(x.GetPath()),
		Hash: &binwatchv1.Hashes{
			Sha256: x.GetRunning().GetSha256(),
			Ssdeep: x.GetRunning().GetSsdeep(),
		},
	}
	a.State = x.GetState()
	a.CoverageReason = x.GetCoverageReason()
	return a
}

// identity returns the parts that name a file in alert ids: its
// (device, inode, size, mtime, ctime) and its SHA-256, empty when not
// computed.
func identity(h *binwatchv1.FileHash) []string {
	return []string{
		strconv.FormatUint(h.GetDevice(), 10) + ":" + strconv.FormatUint(h.GetInode(), 10) + ":" +
			strconv.FormatUint(h.GetSize(), 10) + ":" + strconv.FormatInt(h.GetMtimeNs(), 10) + ":" +
			strconv.FormatInt(h.GetCtimeNs(), 10),
		h.GetSha256(),
	}
}

// startTime copies r's start time, so that the alert shares no message
// with the batch.
func startTime(r *binwatchv1.ProcessRecord) *timestamppb.Timestamp {
	if r.GetStartTime() == nil {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: r.GetStartTime().GetSeconds(), Nanos: r.GetStartTime().GetNanos()}
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
