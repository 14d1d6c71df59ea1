//go:build linux || darwin || freebsd

package archiver

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/runup/runup/internal/tree"
)

// readXattrs returns a path's extended attributes; filesystems without them
// give none.
func readXattrs(path string) ([]tree.XAttr, error) {
	var buf [1024]byte
	names := buf[:]
	n, err := unix.Llistxattr(path, names)
	if errors.Is(err, unix.ERANGE) {
		sz, err2 := unix.Llistxattr(path, nil)
		if err2 != nil {
			return nil, err2
		}
		names = make([]byte, sz)
		n, err = unix.Llistxattr(path, names)
	}
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, err
	}
	var out []tree.XAttr
	for _, name := range splitNUL(names[:n]) {
		sz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			continue // removed meanwhile
		}
		val := make([]byte, sz)
		sz, err = unix.Lgetxattr(path, name, val)
		if err != nil {
			continue
		}
		out = append(out, tree.XAttr{Name: name, Value: val[:sz]})
	}
	return out, nil
}
