package exe

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// memfdDevices creates memfds and returns the devices that fstat reports
// for them. Every memfd lives on one kernel-internal mount (shmem, or
// hugetlbfs for MFD_HUGETLB), so its device is the same for all of them
// and differs from every mounted file system. The hugetlb memfd fails on
// kernels without huge pages and is then left out.
func memfdDevices() []uint64 {
	var devs []uint64
	for _, flags := range []int{unix.MFD_CLOEXEC, unix.MFD_CLOEXEC | unix.MFD_HUGETLB} {
		fd, err := unix.MemfdCreate("binwatch-probe", flags)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil {
			devs = append(devs, uint64(st.Dev))
		}
		unix.Close(fd)
	}
	return devs
}

// isMemfd reports whether the running image, whose fstat is st and exe link
// is link, is an anonymous memory file. The device decides. Only when no
// memfd could be created to learn the device (memfd_create blocked or
// missing) does the link text decide, together with a link count of 0:
// the kernel names a memfd "/memfd:<name> (deleted)".
func (in *Inspector) isMemfd(st *unix.Stat_t, link []byte) bool {
	if len(in.memfdDevs) > 0 {
		for _, dev := range in.memfdDevs {
			if uint64(st.Dev) == dev {
				return true
			}
		}
		return false
	}
	return st.Nlink == 0 && bytes.HasPrefix(link, []byte("/memfd:")) && bytes.HasSuffix(link, []byte(deletedSuffix))
}
