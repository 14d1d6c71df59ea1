//go:build darwin || freebsd || (linux && runup_osroot)

package restorer

import (
	"os"

	"golang.org/x/sys/unix"
)

// setxattrFile sets an extended attribute through an open file: the inode
// the restore made, whatever a path would lead to now.
func setxattrFile(f *os.File, attr string, value []byte) error {
	return unix.Fsetxattr(int(f.Fd()), attr, value, 0)
}
