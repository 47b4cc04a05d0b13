package procfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Cmdline returns the arguments of /proc/<pid>/cmdline as raw bytes. It
// reads at most maxBytes+1 bytes and returns at most maxArgs arguments.
// truncated is true when either limit cut something off, and then the last
// argument may be partial. A zombie or kernel thread has an empty command
// line, which gives no arguments and no error.
func (fs FS) Cmdline(pid, maxArgs, maxBytes int) (argv [][]byte, truncated bool, err error) {
	if maxArgs <= 0 || maxBytes <= 0 {
		return nil, false, fmt.Errorf("invalid cmdline limits %d arguments, %d bytes: both must be positive", maxArgs, maxBytes)
	}
	path := fs.path(pid, "cmdline")
	f, err := os.Open(path)
	if err != nil {
		return nil, false, processError(err)
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, int64(maxBytes)+1))
	if err != nil {
		return nil, false, processError(fmt.Errorf("reading %s: %w", path, err))
	}
	argv, truncated = splitCmdline(data, maxArgs, maxBytes)
	return argv, truncated, nil
}

// splitCmdline splits NUL-separated arguments. Each argument's capacity ends
// at its length, so appending to one never overwrites the next.
func splitCmdline(data []byte, maxArgs, maxBytes int) ([][]byte, bool) {
	truncated := false
	if len(data) > maxBytes {
		data = data[:maxBytes]
		truncated = true
	}
	data = bytes.TrimSuffix(data, []byte{0})
	if len(data) == 0 {
		return nil, truncated
	}
	argv := bytes.SplitN(data, []byte{0}, maxArgs+1)
	if len(argv) > maxArgs {
		argv = argv[:maxArgs]
		truncated = true
	}
	return argv, truncated
}
