package archiver

import (
	"io/fs"
	"syscall"

	"github.com/runup/runup/internal/tree"
)

// openFlags never follow a link swapped in since lstat and let the
// runtime poll what can block; noATime spares the access time, which only
// the file's owner (or root) may ask for.
const (
	openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	noATime   = syscall.O_NOATIME
)

func fillSys(n *tree.Node, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	n.UID, n.GID = st.Uid, st.Gid
	n.MTime = tree.Time{Sec: int64(st.Mtim.Sec), Nsec: int32(st.Mtim.Nsec)}
	n.CTime = tree.Time{Sec: int64(st.Ctim.Sec), Nsec: int32(st.Ctim.Nsec)}
	n.Inode, n.Device, n.Links, n.Rdev = st.Ino, uint64(st.Dev), uint64(st.Nlink), uint64(st.Rdev)
}
