package procfs

import (
	"bytes"
	"fmt"
	"testing"
)

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 23 0 0\n"))
	f.Add([]byte("42 (a) (b c\nd) R 1 42 42 0 -1 4194304 1 2 3 4 5 6 7 8 20 0 1 0 9 0 0\n"))
	f.Add([]byte("7 () Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte("1 ((((( S"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Arbitrary input must not panic; a parsed record must be
		// consistent with the text.
		s, err := parseStat(data)
		if err == nil {
			if !bytes.Contains(data, []byte("("+s.Comm+")")) {
				t.Errorf("parseStat(%q).Comm = %q, not found in the input", data, s.Comm)
			}
			if s.PID <= 0 {
				t.Errorf("parseStat(%q).PID = %d, want > 0", data, s.PID)
			}
		}

		// Any comm round-trips when the fields after it are well formed,
		// because only the last ')' ends it.
		line := fmt.Sprintf("123 (%s) S 7 1 1 0 -1 %d 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", data, pfKthread, 555)
		s, err = parseStat([]byte(line))
		if err != nil {
			t.Fatalf("parseStat(%q) error = %v", line, err)
		}
		want := Stat{PID: 123, PPID: 7, Comm: string(data), State: 'S', Flags: pfKthread, StartTicks: 555}
		if s != want {
			t.Errorf("parseStat(%q) = %+v, want %+v", line, s, want)
		}
	})
}
