// Package schema names the NATS subjects and headers of the binwatch wire
// contract. The messages themselves live in package binwatchv1.
package schema

import (
	"fmt"
	"strings"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// Subjects and wildcards.
const (
	// ProcessSubjectPrefix is followed by the host token.
	ProcessSubjectPrefix = "binwatch.process."
	// ProcessSubjectAll matches every host's process records.
	ProcessSubjectAll = "binwatch.process.*"
	// AlertSubjectPrefix is followed by "<kind>.<host>".
	AlertSubjectPrefix = "integrity."
	// AlertSubjectAll matches every alert.
	AlertSubjectAll = "integrity.>"
)

// Header names and values.
const (
	HeaderContentType = "Content-Type"
	HeaderMessageType = "Binwatch-Message"
	// HeaderMsgID is the JetStream de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"

	ContentTypeProtobuf = "application/protobuf"
	ContentTypeJSON     = "application/json"

	MessageTypeProcessBatch   = "binwatch.v1.ProcessBatch"
	MessageTypeIntegrityAlert = "binwatch.v1.IntegrityAlert"
)

// MaxHostTokenLen bounds a host token; Linux host names are at most 64
// bytes, and a configured id gets the same room.
const MaxHostTokenLen = 64

// HostToken maps a host name to a subject token: every byte outside
// [A-Za-z0-9_-] becomes '_', and an empty name becomes "_". A multi-byte
// UTF-8 character therefore becomes one '_' per byte.
func HostToken(hostname string) string {
	if hostname == "" {
		return "_"
	}
	b := []byte(hostname)
	for i, c := range b {
		if !isTokenByte(c) {
			b[i] = '_'
		}
	}
	if len(b) > MaxHostTokenLen {
		b = b[:MaxHostTokenLen]
	}
	return string(b)
}

// ValidateHostToken returns an error unless token is a non-empty string of
// at most MaxHostTokenLen bytes from [A-Za-z0-9_-].
func ValidateHostToken(token string) error {
	if token == "" {
		return fmt.Errorf("invalid host token: empty")
	}
	if len(token) > MaxHostTokenLen {
		return fmt.Errorf("invalid host token %q: longer than %d bytes", token, MaxHostTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if !isTokenByte(token[i]) {
			return fmt.Errorf("invalid host token %q: byte %d is %q, want only A-Z, a-z, 0-9, '_' and '-'", token, i, token[i])
		}
	}
	return nil
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ProcessSubject returns the subject a collector publishes host's records on.
func ProcessSubject(host string) string {
	return ProcessSubjectPrefix + host
}

// HostFromProcessSubject returns the host token of a process subject, or
// an error when subject is not binwatch.process.<valid token>.
func HostFromProcessSubject(subject string) (string, error) {
	host, ok := strings.CutPrefix(subject, ProcessSubjectPrefix)
	if !ok {
		return "", fmt.Errorf("subject %q does not start with %q", subject, ProcessSubjectPrefix)
	}
	if err := ValidateHostToken(host); err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return host, nil
}

// KindToken returns the subject token of an alert kind, e.g.
// "disk_mismatch", or "unspecified" for an unknown value.
func KindToken(kind binwatchv1.AlertKind) string {
	name, ok := binwatchv1.AlertKind_name[int32(kind)]
	if !ok {
		return "unspecified"
	}
	return strings.ToLower(strings.TrimPrefix(name, "ALERT_KIND_"))
}

// AlertSubject returns integrity.<kind>.<host>.
func AlertSubject(kind binwatchv1.AlertKind, host string) string {
	return AlertSubjectPrefix + KindToken(kind) + "." + host
}
