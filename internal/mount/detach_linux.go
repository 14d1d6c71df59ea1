package mount

import "syscall"

// detach unmounts lazily: the mountpoint goes now, busy readers get errors.
func detach(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }

// errNoAttr is the answer for an extended attribute the file lacks.
const errNoAttr = syscall.ENODATA
