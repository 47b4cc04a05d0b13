package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// BootID returns the kernel's random boot id from
// <root>/sys/kernel/random/boot_id, a UUID that changes at every boot.
func (fs FS) BootID() (string, error) {
	path := fs.root + "/sys/kernel/random/boot_id"
	data, err := readBounded(path, maxSmallFile)
	if err != nil {
		return "", err
	}
	id := string(bytes.TrimSpace(data))
	if !isUUID(id) {
		return "", fmt.Errorf("parsing %s: invalid boot id %q", path, id)
	}
	return id, nil
}

// isUUID reports whether s has the textual form of a UUID, lower or upper
// case: 8-4-4-4-12 hexadecimal digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			isHex := '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
			if !isHex {
				return false
			}
		}
	}
	return true
}

// BootTime returns the boot time from the btime line of <root>/stat, with
// one-second resolution.
func (fs FS) BootTime() (time.Time, error) {
	path := fs.root + "/stat"
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()

	value, err := findLine(io.LimitReader(f, maxTableFile), []byte("btime "))
	if err != nil {
		return time.Time{}, fmt.Errorf("reading %s: %w", path, err)
	}
	sec, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, fmt.Errorf("parsing %s: invalid btime %q", path, value)
	}
	return time.Unix(sec, 0), nil
}

// findLine returns the rest of the first line that starts with prefix.
// Lines longer than the reader's buffer (the intr line of a machine with
// many interrupts) are skipped without being held in memory.
func findLine(r io.Reader, prefix []byte) ([]byte, error) {
	br := bufio.NewReaderSize(r, 4096)
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		if atLineStart && bytes.HasPrefix(line, prefix) && !errors.Is(err, bufio.ErrBufferFull) {
			return bytes.Clone(line[len(prefix):]), nil
		}
		atLineStart = !errors.Is(err, bufio.ErrBufferFull)
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("missing %q line", bytes.TrimSpace(prefix))
		default:
			return nil, err
		}
	}
}
