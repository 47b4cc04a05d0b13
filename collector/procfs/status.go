package procfs

import (
	"bytes"
	"fmt"
	"strconv"
)

// UIDs returns the real, effective, saved and filesystem user ids from the
// Uid line of /proc/<pid>/status.
func (fs FS) UIDs(pid int) ([4]uint32, error) {
	path := fs.path(pid, "status")
	data, err := readBounded(path, maxSmallFile)
	if err != nil {
		return [4]uint32{}, processError(err)
	}
	ids, err := parseIDLine(data, "Uid")
	if err != nil {
		return [4]uint32{}, fmt.Errorf("parsing %s: %w", path, err)
	}
	return ids, nil
}

// statusField returns the value of the "key:" line of a status file, with
// surrounding white space removed.
func statusField(data []byte, key string) ([]byte, bool) {
	for line := range bytes.Lines(data) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && string(name) == key {
			return bytes.TrimSpace(value), true
		}
	}
	return nil, false
}

// parseIDLine parses a Uid or Gid line: four decimal ids.
func parseIDLine(data []byte, key string) ([4]uint32, error) {
	var ids [4]uint32
	value, ok := statusField(data, key)
	if !ok {
		return ids, fmt.Errorf("missing %s line", key)
	}
	fields := bytes.Fields(value)
	if len(fields) != len(ids) {
		return ids, fmt.Errorf("%s line has %d fields, want %d", key, len(fields), len(ids))
	}
	for i, f := range fields {
		id, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil {
			return ids, fmt.Errorf("invalid %s %q", key, f)
		}
		ids[i] = uint32(id)
	}
	return ids, nil
}

// parseCapLine parses a hexadecimal capability set such as CapEff.
func parseCapLine(data []byte, key string) (uint64, error) {
	value, ok := statusField(data, key)
	if !ok {
		return 0, fmt.Errorf("missing %s line", key)
	}
	caps, err := strconv.ParseUint(string(value), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q", key, value)
	}
	return caps, nil
}

// parseGroups parses the supplementary group ids of the Groups line, which
// is empty for a process without supplementary groups.
func parseGroups(data []byte) ([]uint32, error) {
	value, ok := statusField(data, "Groups")
	if !ok {
		return nil, fmt.Errorf("missing Groups line")
	}
	var groups []uint32
	for _, f := range bytes.Fields(value) {
		id, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid group %q", f)
		}
		groups = append(groups, uint32(id))
	}
	return groups, nil
}
