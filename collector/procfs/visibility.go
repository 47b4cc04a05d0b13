package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// capSysPtrace is CAP_SYS_PTRACE's bit number in a capability set.
const capSysPtrace = 19

// Visibility is the result of checking whether the procfs mount hides
// processes from the caller.
type Visibility struct {
	// Partial is true when the kernel hides some processes from the
	// caller or makes them unreadable, so a scan may see only part of the
	// machine. Hidden processes cannot be counted, so Partial can be true
	// while every process happens to be visible (all of them run as the
	// caller's user, for example).
	Partial bool
	// Detail explains the decision: the mount options, the privilege that
	// applied and the cross-check.
	Detail string
}

// Visibility decides whether the caller sees every process under the root.
//
// The kernel hides a process from a reader when the mount has hidepid=1
// (noaccess: the directory is listed but unreadable), hidepid=2
// (invisible) or hidepid=4 (ptraceable), unless the reader may ptrace the
// process: it holds CAP_SYS_PTRACE, or it runs as the process's owner and
// the process is dumpable. For noaccess and invisible, membership of the
// mount's gid= group also grants access. Visibility therefore reads the
// super options of the proc mount at the root from <root>/self/mountinfo
// and the caller's CapEff, Gid and Groups lines from <root>/self/status.
// Without CAP_SYS_PTRACE (or the group), some processes are hidden unless
// every process runs as the caller's user, which Visibility does not assume.
//
// As a cross-check that needs no mount facts, pid 1 must be listed: it
// exists in every pid namespace that has processes, so its absence means
// the listing hides processes. When mountinfo has no proc mount at the root
// (a fake tree, or a root reached through a bind mount), the cross-check
// alone decides. subset=pid hides only the files that are not per-process,
// so it is reported in Detail without making the view partial.
//
// The error is non-nil only when the root cannot be listed.
func (fs FS) Visibility() (Visibility, error) {
	pids, err := fs.PIDs()
	if err != nil {
		return Visibility{}, err
	}
	var v Visibility
	var notes []string

	opts, err := fs.mountOptions()
	if err != nil {
		notes = append(notes, fmt.Sprintf("mount options unknown (%v), judged by the pid 1 cross-check", err))
	} else {
		hidden, note := fs.hiddenByMount(opts)
		v.Partial = hidden
		notes = append(notes, note)
		if slices.Contains(opts, "subset=pid") {
			notes = append(notes, "subset=pid hides the files that are not per-process, but no processes")
		}
	}
	if !slices.Contains(pids, 1) {
		v.Partial = true
		notes = append(notes, "pid 1 is not listed")
	}
	v.Detail = strings.Join(notes, "; ")
	return v, nil
}

// hiddenByMount decides from the super options of the proc mount and the
// caller's privileges whether processes are hidden.
func (fs FS) hiddenByMount(opts []string) (bool, string) {
	mode := "off"
	var gid uint32
	hasGID := false
	for _, o := range opts {
		name, value, _ := strings.Cut(o, "=")
		switch name {
		case "hidepid":
			mode = hidePIDName(value)
		case "gid":
			if id, err := strconv.ParseUint(value, 10, 32); err == nil {
				gid, hasGID = uint32(id), true
			}
		}
	}
	where := fmt.Sprintf("proc at %s mounted with hidepid=%s", fs.root, mode)
	if mode == "off" {
		return false, where
	}

	status, err := readBounded(fs.root+"/self/status", maxSmallFile)
	if err != nil {
		return true, fmt.Sprintf("%s, own capabilities unknown: %v", where, err)
	}
	caps, err := parseCapLine(status, "CapEff")
	if err != nil {
		return true, fmt.Sprintf("%s, own capabilities unknown: %v", where, err)
	}
	if caps&(1<<capSysPtrace) != 0 {
		return false, where + ", CAP_SYS_PTRACE present"
	}
	if hasGID && mode != "ptraceable" {
		member, err := inGroup(status, gid)
		if err != nil {
			return true, fmt.Sprintf("%s,gid=%d, CAP_SYS_PTRACE missing, own groups unknown: %v", where, gid, err)
		}
		if member {
			return false, fmt.Sprintf("%s,gid=%d, member of group %d", where, gid, gid)
		}
		return true, fmt.Sprintf("%s,gid=%d, CAP_SYS_PTRACE missing and not in group %d", where, gid, gid)
	}
	return true, where + ", CAP_SYS_PTRACE missing"
}

// hidePIDName maps the numeric hidepid values of kernels before 5.8 to the
// names that later kernels print.
func hidePIDName(value string) string {
	switch value {
	case "0":
		return "off"
	case "1":
		return "noaccess"
	case "2":
		return "invisible"
	case "4":
		return "ptraceable"
	}
	return value
}

// inGroup reports whether the caller's filesystem gid or one of its
// supplementary groups is gid, which is the kernel's in_group_p test.
func inGroup(status []byte, gid uint32) (bool, error) {
	gids, err := parseIDLine(status, "Gid")
	if err != nil {
		return false, err
	}
	if gids[3] == gid {
		return true, nil
	}
	groups, err := parseGroups(status)
	if err != nil {
		return false, err
	}
	return slices.Contains(groups, gid), nil
}

// mountOptions returns the super options of the proc mount at the root from
// the caller's <root>/self/mountinfo. The last entry for the mount point is
// the one on top.
func (fs FS) mountOptions() ([]string, error) {
	target, err := filepath.Abs(fs.root)
	if err != nil {
		return nil, err
	}
	if resolved, err := filepath.EvalSymlinks(target); err == nil {
		target = resolved
	}
	path := fs.root + "/self/mountinfo"
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var found *mountInfo
	sc := bufio.NewScanner(io.LimitReader(f, maxTableFile))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		m, err := parseMountInfo(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		if m.mountPoint == target {
			found = &m
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if found == nil {
		return nil, fmt.Errorf("no mount at %s in %s", target, path)
	}
	if found.fsType != "proc" {
		return nil, fmt.Errorf("%s is a %s mount, not proc", target, found.fsType)
	}
	return found.superOptions, nil
}

// mountInfo holds the fields of a mountinfo line that Visibility uses.
type mountInfo struct {
	mountPoint   string
	fsType       string
	superOptions []string
}

// parseMountInfo parses one line of mountinfo (proc(5)): six fixed fields,
// optional fields up to a "-", then the fs type, source and super options.
func parseMountInfo(line []byte) (mountInfo, error) {
	fields := strings.Fields(string(line))
	sep := slices.Index(fields, "-")
	if sep < 6 || len(fields) < sep+4 {
		return mountInfo{}, fmt.Errorf("invalid mountinfo line %q", line)
	}
	point, err := unescapeOctal(fields[4])
	if err != nil {
		return mountInfo{}, fmt.Errorf("invalid mount point %q: %w", fields[4], err)
	}
	return mountInfo{
		mountPoint:   point,
		fsType:       fields[sep+1],
		superOptions: strings.Split(fields[sep+3], ","),
	}, nil
}

// unescapeOctal undoes the kernel's \ooo escaping of space, tab, newline
// and backslash in mountinfo paths.
func unescapeOctal(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", errors.New("truncated escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("invalid escape %q", s[i:i+4])
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}
