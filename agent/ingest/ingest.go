// Package ingest decodes and validates the ProcessBatch messages that
// collectors publish on binwatch.process.<host>. Every message is
// untrusted, so DecodeBatch accepts a batch only when it decodes
// completely and its batch-level fields are plausible, and then removes
// each record that a real collector could not have produced. The rules
// never see a message of another type that happens to decode, a batch
// published for another host, or absurd values.
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

// ErrInvalid is wrapped by every error that Decode, DecodeBatch and
// Validate return, and by every RecordError.
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

// Result is a batch that DecodeBatch accepted.
type Result struct {
	// Batch is the decoded batch without the rejected records. The other
	// records keep their order.
	Batch *binwatchv1.ProcessBatch
	// Rejected lists the records removed from Batch, in their order in
	// the message.
	Rejected []RecordError
}

// RecordError is the rejection of one record of an accepted batch.
type RecordError struct {
	// Index is the record's position in the message as received.
	Index int
	// PID is the record's pid as received, which may be the invalid
	// value.
	PID int32
	// Err is an *Error wrapping ErrInvalid, so Reason(Err) returns its
	// label.
	Err error
}

func (e RecordError) Error() string { return fmt.Sprintf("pid %d: %v", e.PID, e.Err) }

// Unwrap returns e.Err, so that errors.Is(e, ErrInvalid) and Reason(e)
// work on a RecordError too.
func (e RecordError) Unwrap() error { return e.Err }

// DecodeBatch parses and validates one message received on subject with
// the given headers (nats.Header has the same type). The message as a
// whole must be a plausible batch of the subject's host: right headers, a
// payload of at most MaxBatchBytes, no fields unknown to the schema,
// plausible scan, batch and stats fields, and at most MaxRecords records.
// Otherwise DecodeBatch returns an *Error wrapping ErrInvalid. Then each
// record is checked on its own: an invalid one is removed from the batch
// and listed in Result.Rejected, so that one odd process cannot hide the
// others of its host. A batch may be accepted with no record left, and it
// still counts for the scan's sequence.
//
// Header names match case-insensitively. A Binwatch-Message or
// Content-Type header, when present, must name a ProcessBatch in protobuf
// encoding. A message without them is judged by its content alone.
func DecodeBatch(subject string, header map[string][]string, data []byte) (Result, error) {
	return decodeBatchAt(subject, header, data, time.Now())
}

// Decode is DecodeBatch for callers that take a batch only whole: it
// returns the error of the first invalid record instead of removing it,
// so every batch that it returns passes Validate. Fuzz tests and
// benchmarks use it as the strictest form of decoding.
func Decode(subject string, header map[string][]string, data []byte) (*binwatchv1.ProcessBatch, error) {
	return decodeAt(subject, header, data, time.Now())
}

func decodeAt(subject string, header map[string][]string, data []byte, now time.Time) (*binwatchv1.ProcessBatch, error) {
	res, err := decodeBatchAt(subject, header, data, now)
	if err != nil {
		return nil, err
	}
	if len(res.Rejected) > 0 {
		return nil, res.Rejected[0].Err
	}
	return res.Batch, nil
}

func decodeBatchAt(subject string, header map[string][]string, data []byte, now time.Time) (Result, error) {
	host, err := schema.HostFromProcessSubject(subject)
	if err != nil {
		return Result{}, reject(ReasonSubject, "", "subject %s is not %s<host token>", quote(subject), schema.ProcessSubjectPrefix)
	}
	if err := checkHeaders(header); err != nil {
		return Result{}, err
	}
	if len(data) == 0 {
		return Result{}, reject(ReasonEmpty, "", "empty payload")
	}
	if len(data) > MaxBatchBytes {
		return Result{}, reject(ReasonOversized, "", "payload of %d bytes, want at most %d", len(data), MaxBatchBytes)
	}
	b := new(binwatchv1.ProcessBatch)
	if err := proto.Unmarshal(data, b); err != nil {
		return Result{}, reject(ReasonDecode, "", "not a binwatch.v1.ProcessBatch: %s", quote(err.Error()))
	}
	if err := validateBatch(b, host, now); err != nil {
		return Result{}, err
	}
	return Result{Batch: b, Rejected: removeInvalidRecords(b)}, nil
}

// removeInvalidRecords removes the records of b that fail checkRecord and
// returns their rejections. It reuses the records slice.
func removeInvalidRecords(b *binwatchv1.ProcessBatch) []RecordError {
	var rejected []RecordError
	kept := b.Records[:0]
	for i, r := range b.Records {
		if err := checkRecord(r, recordField{i}); err != nil {
			rejected = append(rejected, RecordError{Index: i, PID: r.GetPid(), Err: err})
			continue
		}
		kept = append(kept, r)
	}
	clear(b.Records[len(kept):])
	b.Records = kept
	return rejected
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
