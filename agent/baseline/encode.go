package baseline

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// appendStateFile appends the JSON encoding of f to dst. The output is
// byte for byte what json.Marshal(f) returns for UTC times, which a test
// checks, at a fraction of the cost: Save writes up to DefaultMaxEntries
// baselines, and encoding/json spent half of Save's time on them. Like
// json.Marshal, it fails on a year outside 0 to 9999.
func appendStateFile(dst []byte, f *stateFile) ([]byte, error) {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendInt(dst, int64(f.Version), 10)
	dst = append(dst, `,"baselines":`...)
	if f.Baselines == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, b := range f.Baselines {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendBaseline(dst, &b); err != nil {
				return nil, fmt.Errorf("baselines[%d]: %w", i, err)
			}
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"alerts":`...)
	if f.Alerts == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, a := range f.Alerts {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendAlert(dst, &a); err != nil {
				return nil, fmt.Errorf("alerts[%d]: %w", i, err)
			}
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

func appendBaseline(dst []byte, b *baselineEntry) ([]byte, error) {
	dst = append(dst, `{"host":`...)
	dst = appendString(dst, b.Host)
	dst = append(dst, `,"path":`...)
	if b.Path == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b.Path)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"sha256":`...)
	dst = appendString(dst, b.SHA256)
	if b.SSDeep != "" {
		dst = append(dst, `,"ssdeep":`...)
		dst = appendString(dst, b.SSDeep)
	}
	dst = append(dst, `,"first_seen":`...)
	dst, err := appendTime(dst, b.FirstSeen)
	if err != nil {
		return nil, fmt.Errorf("first_seen: %w", err)
	}
	dst = append(dst, `,"last_seen":`...)
	if dst, err = appendTime(dst, b.LastSeen); err != nil {
		return nil, fmt.Errorf("last_seen: %w", err)
	}
	return append(dst, '}'), nil
}

func appendAlert(dst []byte, a *alertEntry) ([]byte, error) {
	dst = append(dst, '{')
	if a.Host != "" {
		dst = append(dst, `"host":`...)
		dst = appendString(dst, a.Host)
		dst = append(dst, ',')
	}
	dst = append(dst, `"id":`...)
	dst = appendString(dst, a.ID)
	dst = append(dst, `,"last_seen":`...)
	dst, err := appendTime(dst, a.LastSeen)
	if err != nil {
		return nil, fmt.Errorf("last_seen: %w", err)
	}
	return append(dst, '}'), nil
}

// appendString appends s as a JSON string. Printable ASCII that
// encoding/json does not escape is copied, and any other string is left
// to encoding/json, so the output matches it.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			data, _ := json.Marshal(s) // a string always encodes
			return append(dst, data...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendTime appends t as time.Time.MarshalJSON does. The store keeps UTC
// times, for which MarshalJSON fails only on a year outside 0 to 9999.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("time %s: year outside 0 to 9999", t)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}
