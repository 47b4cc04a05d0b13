// Package ingest decodes and validates the ProcessBatch messages that
// collectors publish on binwatch.process.<host>. Every message is
// untrusted, so Decode accepts a batch only when it decodes completely and
// every field is plausible. The rules never see a message of another type
// that happens to decode, a batch published for another host, or absurd
// values.
package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/binwatch/binwatch/schema"
	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// ErrInvalid is wrapped by every error that Decode and Validate return.
var ErrInvalid = errors.New("invalid batch")

// Reason labels for counting dropped messages. Reason returns one of them.
const (
	ReasonEmpty          = "empty"           // payload has no bytes
	ReasonOversized      = "oversized"       // payload larger than MaxBatchBytes
	ReasonSubject        = "subject"         // subject is not binwatch.process.<host token>
	ReasonWrongType      = "wrong_type"      // headers name another message or content type
	ReasonDecode         = "decode"          // bytes are not a ProcessBatch in protobuf encoding
	ReasonUnknownField   = "unknown_field"   // fields that binwatch.v1 does not define
	ReasonHostMismatch   = "host_mismatch"   // host_id invalid or not the subject's token
	ReasonMissingField   = "missing_field"   // a required field is absent
	ReasonFieldRange     = "field_range"     // a number or time outside its plausible range
	ReasonFieldShape     = "field_shape"     // a string or byte field of the wrong form
	ReasonOversizedField = "oversized_field" // a string, byte or list field over its bound
	ReasonDigestShape    = "digest_shape"    // a SHA-256 or ssdeep digest of the wrong form
	ReasonEnum           = "enum"            // an enum value that is undefined or unspecified
	ReasonInconsistent   = "inconsistent"    // fields that contradict each other
	ReasonOther          = "other"           // an error that did not come from this package
)

// maxQuotedValue bounds how many bytes of an offending value an error
// message quotes.
const maxQuotedValue = 64

// Error is a rejection: which field failed, why, and a label for counting.
// It wraps ErrInvalid.
type Error struct {
	// Reason is one of the Reason* labels.
	Reason string
	// Field is the path of the offending field, e.g. "records[3].pid". It
	// is empty when the message as a whole is rejected.
	Field string
	// Detail is the problem found, with the value quoted and bounded.
	Detail string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return ErrInvalid.Error() + ": " + e.Detail
	}
	return ErrInvalid.Error() + ": " + e.Field + ": " + e.Detail
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Reason returns the short, stable label of a rejection for counting drops:
// one of the Reason* constants, ReasonOther for an error that did not come
// from this package, and "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonOther
}

func reject(reason, field, format string, args ...any) *Error {
	return &Error{Reason: reason, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// quote renders an untrusted value for an error message: at most
// maxQuotedValue bytes, Go-quoted so that control characters and invalid
// UTF-8 are escaped, and marked when cut.
func quote(s string) string {
	if len(s) <= maxQuotedValue {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuotedValue]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// Decode parses and validates one message received on subject with the
// given headers (nats.Header has the same type). It returns the batch, or
// an *Error wrapping ErrInvalid. Header names match case-insensitively.
// A Binwatch-Message or Content-Type header, when present, must name a
// ProcessBatch in protobuf encoding. A message without them is judged by
// its content alone.
func Decode(subject string, header map[string][]string, data []byte) (*binwatchv1.ProcessBatch, error) {
	return decodeAt(subject, header, data, time.Now())
}

func decodeAt(subject string, header map[string][]string, data []byte, now time.Time) (*binwatchv1.ProcessBatch, error) {
	host, err := schema.HostFromProcessSubject(subject)
	if err != nil {
		return nil, reject(ReasonSubject, "", "subject %s is not %s<host token>", quote(subject), schema.ProcessSubjectPrefix)
	}
	if err := checkHeaders(header); err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, reject(ReasonEmpty, "", "empty payload")
	}
	if len(data) > MaxBatchBytes {
		return nil, reject(ReasonOversized, "", "payload of %d bytes, want at most %d", len(data), MaxBatchBytes)
	}
	b := new(binwatchv1.ProcessBatch)
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, reject(ReasonDecode, "", "not a binwatch.v1.ProcessBatch: %s", quote(err.Error()))
	}
	if err := validateAt(b, host, now); err != nil {
		return nil, err
	}
	return b, nil
}

func checkHeaders(header map[string][]string) error {
	for name, values := range header {
		var want string
		switch {
		case strings.EqualFold(name, schema.HeaderMessageType):
			want = schema.MessageTypeProcessBatch
		case strings.EqualFold(name, schema.HeaderContentType):
			want = schema.ContentTypeProtobuf
		default:
			continue
		}
		for _, v := range values {
			if v != want {
				return reject(ReasonWrongType, "header "+name, "%s, want %q", quote(v), want)
			}
		}
	}
	return nil
}
