//go:build linux || darwin

package vfs

import "syscall"

// Free returns the bytes available to an unprivileged writer on the file
// system holding path (statfs f_bavail × f_bsize).
func Free(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
