//go:build darwin || freebsd

package mount

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// detach unmounts by force: these systems have no lazy unmount.
func detach(dir string) error { return unix.Unmount(dir, unix.MNT_FORCE) }

// errNoAttr is the answer for an extended attribute the file lacks.
const errNoAttr = syscall.ENOATTR
