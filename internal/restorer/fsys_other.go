//go:build !linux || runup_osroot

package restorer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/runup/runup/internal/tree"
)

// root does every filesystem operation of a restore through an os.Root:
// on these systems the Go runtime confines each path to the target (a
// link planted in the target cannot lead a write outside it). Linux has
// the stricter fsys_linux.go, which follows no link at all below the
// target. Paths are slash-separated and relative to the target.
type root struct {
	r    *os.Root
	path string // for messages
}

func openRoot(path string) (*root, error) {
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("restore location %s: %w", path, err)
	}
	return &root{r: r, path: path}, nil
}

func (r *root) close() { r.r.Close() }

// name turns a restore path into one os.Root takes ("" is the target).
func name(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// statT carries what the restore needs of lstat: the Unix file type bits.
type statT struct{ Mode uint32 }

// File type bits as the tree records them, and the modes for mknod.
const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeFifo     = 0o010000
	modeChar     = 0o020000
	modeBlock    = 0o060000
	modeReg      = 0o100000
	modeLink     = 0o120000
	modeSock     = 0o140000
)

func unixType(m fs.FileMode) uint32 {
	switch {
	case m.IsDir():
		return modeDir
	case m&fs.ModeSymlink != 0:
		return modeLink
	case m&fs.ModeNamedPipe != 0:
		return modeFifo
	case m&fs.ModeSocket != 0:
		return modeSock
	case m&fs.ModeCharDevice != 0:
		return modeChar
	case m&fs.ModeDevice != 0:
		return modeBlock
	}
	return modeReg
}

func (r *root) lstat(rel string) (statT, bool, error) {
	fi, err := r.r.Lstat(name(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return statT{}, false, nil
	}
	if err != nil {
		return statT{}, false, err
	}
	return statT{Mode: unixType(fi.Mode())}, true, nil
}

func (r *root) mkdir(rel string) (bool, error) {
	err := r.r.Mkdir(name(rel), 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	fi, err := r.r.Lstat(name(rel))
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		return false, nil
	}
	if err := r.r.Remove(name(rel)); err != nil {
		return false, fmt.Errorf("replace %s by a directory: %w", typeName(unixType(fi.Mode())), err)
	}
	return true, r.r.Mkdir(name(rel), 0o700)
}

func (r *root) remove(rel string) error {
	err := r.r.RemoveAll(name(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// handle is an open file of the restore.
type handle = *os.File

var noHandle handle

func (r *root) create(rel string) (handle, error) {
	return r.r.OpenFile(name(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

func (r *root) openWrite(rel string) (handle, error) {
	return r.r.OpenFile(name(rel), os.O_WRONLY, 0)
}

func (r *root) openRead(rel string) (*os.File, error) {
	fi, err := r.r.Lstat(name(rel))
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return r.r.Open(name(rel))
}

// readdir lists directory rel's names.
func (r *root) readdir(rel string) ([]string, error) {
	fi, err := r.r.Lstat(name(rel))
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, errors.New("not a directory")
	}
	f, err := r.r.Open(name(rel))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// errNoSymlinkPrivilege: Windows lets only administrators, or everyone in
// Developer Mode, create symbolic links (ERROR_PRIVILEGE_NOT_HELD).
const errNoSymlinkPrivilege = syscall.Errno(1314)

func (r *root) symlink(target, rel string) error {
	err := r.r.Symlink(target, name(rel))
	if runtime.GOOS == "windows" && errors.Is(err, errNoSymlinkPrivilege) {
		return fmt.Errorf("%w: symbolic link not restored: Windows creates them only for administrators or in Developer Mode", errors.ErrUnsupported)
	}
	return err
}

func (r *root) mknod(rel string, mode uint32, dev uint64) error {
	return fmt.Errorf("%w: special files (fifos, devices) are not restored on %s", errors.ErrUnsupported, runtime.GOOS)
}

func (r *root) link(oldRel, newRel string) error { return r.r.Link(name(oldRel), name(newRel)) }

// metaTarget is what setMeta works on: the entry's path in the root and,
// when the restore holds it open, the file.
type metaTarget struct {
	r   *root
	rel string
	f   *os.File
	own bool // f was opened for the metadata: close it after
}

func (r *root) fileMeta(rel string, f *os.File) metaTarget { return metaTarget{r: r, rel: rel, f: f} }
func (r *root) handleMeta(rel string, f handle) metaTarget { return metaTarget{r: r, rel: rel, f: f} }

func (r *root) openMeta(rel string, t tree.Type) (metaTarget, error) {
	m := metaTarget{r: r, rel: rel}
	if t == tree.Dir {
		if f, err := r.r.Open(name(rel)); err == nil {
			m.f, m.own = f, true
		}
	}
	return m, nil
}

func (m metaTarget) chown(uid, gid int) error {
	if m.f != nil {
		return m.f.Chown(uid, gid)
	}
	return m.r.r.Lchown(name(m.rel), uid, gid)
}

func (m metaTarget) chmod(mode uint32) error {
	perm := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		perm |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		perm |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		perm |= fs.ModeSticky
	}
	if m.f != nil {
		return m.f.Chmod(perm)
	}
	return m.r.r.Chmod(name(m.rel), perm)
}

func (m metaTarget) setxattr(attr string, value []byte) error {
	if m.f == nil {
		return errNotSupported
	}
	return setxattrFile(m.f, attr, value)
}

func (m metaTarget) utimes(t tree.Time) error {
	mt := time.Unix(t.Sec, int64(t.Nsec))
	return m.r.r.Chtimes(name(m.rel), mt, mt)
}

func (m metaTarget) close() {
	if m.own {
		m.f.Close()
	}
}

// linkMeta sets a symbolic link's owner; os.Root has no call that sets a
// link's own times, so they are left as the restore made them.
func (r *root) linkMeta(rel string, n *tree.Node, owner bool) []error {
	if owner {
		if err := r.r.Lchown(name(rel), int(n.UID), int(n.GID)); err != nil {
			return []error{fmt.Errorf("owner not restored: %w", err)}
		}
	}
	return nil
}

func typeName(mode uint32) string {
	switch mode & modeTypeMask {
	case modeLink:
		return "symbolic link"
	case modeReg:
		return "file"
	case modeFifo:
		return "fifo"
	case modeSock:
		return "socket"
	}
	return "special file"
}

// split cuts rel into its parent and its name.
func split(rel string) (string, string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

func pwriteAll(f handle, b []byte, off int64) error {
	n, err := f.WriteAt(b, off)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	return err
}

func ftruncate(f handle, size int64) error { return f.Truncate(size) }
func closeFD(f handle) error               { return f.Close() }

// errNotSupported is what a filesystem without extended attributes says.
var errNotSupported = errors.ErrUnsupported
