//go:build darwin || freebsd

package archiver

import (
	"io/fs"
	"syscall"

	"github.com/runup/runup/internal/tree"
)

// openFlags: see node_linux.go. These systems have no O_NOATIME.
const (
	openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	noATime   = 0
)

func fillSys(n *tree.Node, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	n.UID, n.GID = st.Uid, st.Gid
	n.MTime = tree.Time{Sec: int64(st.Mtimespec.Sec), Nsec: int32(st.Mtimespec.Nsec)}
	n.CTime = tree.Time{Sec: int64(st.Ctimespec.Sec), Nsec: int32(st.Ctimespec.Nsec)}
	n.Inode, n.Device, n.Links, n.Rdev = uint64(st.Ino), uint64(st.Dev), uint64(st.Nlink), uint64(st.Rdev)
}
