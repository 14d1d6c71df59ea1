//go:build linux && !runup_osroot

// The tag runup_osroot builds fsys_other.go on Linux instead, so that
// its tests run here: go test -tags runup_osroot ./internal/restorer

package restorer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/runup/runup/internal/tree"
)

// root does every filesystem operation of a restore relative to the
// target's directory descriptor, and never follows a symbolic link below
// it: a link planted in the target while a restore runs cannot redirect a
// write, a mode or an owner. Paths are slash-separated and relative to the
// target ("" is the target itself).
type root struct {
	fd   int
	path string // for messages
	// noOpenat2 is set once the kernel refused openat2 (Linux before 5.6):
	// then paths are resolved one component at a time.
	noOpenat2 atomic.Bool

	// Directories resolved lately, by path: files of one directory come
	// one after another, and resolving a path costs two system calls. A
	// cached descriptor stays on the directory it was opened on, which
	// was inside the target, whatever is renamed meanwhile.
	mu    sync.Mutex
	dirs  map[string]*dirRef
	clock uint64
}

type dirRef struct {
	fd    int
	refs  int
	used  uint64
	stale bool // its path was removed: close when released
}

// maxDirs bounds the descriptors the cache keeps open.
const maxDirs = 64

func openRoot(path string) (*root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore location %s: %w", path, err)
	}
	return &root{fd: fd, path: path, dirs: map[string]*dirRef{}}, nil
}

func (r *root) close() {
	r.mu.Lock()
	for rel, d := range r.dirs {
		unix.Close(d.fd)
		delete(r.dirs, rel)
	}
	r.mu.Unlock()
	unix.Close(r.fd)
}

// acquire returns the cached descriptor of directory rel, resolving it if
// needed; release gives it back.
func (r *root) acquire(rel string) (*dirRef, error) {
	r.mu.Lock()
	r.clock++
	if d, ok := r.dirs[rel]; ok {
		d.refs++
		d.used = r.clock
		r.mu.Unlock()
		return d, nil
	}
	r.mu.Unlock()
	fd, err := r.dir(rel)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.dirs[rel]; ok { // resolved meanwhile by another worker
		unix.Close(fd)
		d.refs++
		return d, nil
	}
	d := &dirRef{fd: fd, refs: 1, used: r.clock}
	r.dirs[rel] = d
	if len(r.dirs) > maxDirs {
		var oldest string
		var at uint64 = ^uint64(0)
		for p, x := range r.dirs {
			if x.refs == 0 && x.used < at {
				oldest, at = p, x.used
			}
		}
		if x, ok := r.dirs[oldest]; ok && x.refs == 0 {
			unix.Close(x.fd)
			delete(r.dirs, oldest)
		}
	}
	return d, nil
}

func (r *root) release(d *dirRef) {
	r.mu.Lock()
	d.refs--
	if d.refs == 0 && d.stale {
		unix.Close(d.fd)
	}
	r.mu.Unlock()
}

// forget drops cached directories at or below rel, before it is removed.
func (r *root) forget(rel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, d := range r.dirs {
		if rel == "" || p == rel || strings.HasPrefix(p, rel+"/") {
			delete(r.dirs, p)
			if d.refs == 0 {
				unix.Close(d.fd)
			} else {
				d.stale = true
			}
		}
	}
}

// dir opens the directory rel for use as the base of *at calls. No
// component may be a symbolic link, and none may climb out.
func (r *root) dir(rel string) (int, error) {
	if rel == "" {
		return unix.Dup(r.fd)
	}
	if !r.noOpenat2.Load() {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			if errors.Is(err, unix.ELOOP) {
				err = errSymlinkInPath
			}
			return fd, err
		}
		r.noOpenat2.Store(true) // seccomp or an old kernel
	}
	fd, err := unix.Dup(r.fd)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(rel, "/") {
		if !tree.ValidName(name) {
			unix.Close(fd)
			return -1, fmt.Errorf("invalid path %q", rel)
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				err = errSymlinkInPath
			}
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

var errSymlinkInPath = errors.New("a symbolic link or other non-directory is in the path; not followed")

// split cuts rel into its parent and its name.
func split(rel string) (string, string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// at runs fn with the descriptor of rel's parent and rel's name.
func (r *root) at(rel string, fn func(dirfd int, name string) error) error {
	parent, name := split(rel)
	d, err := r.acquire(parent)
	if err != nil {
		return err
	}
	defer r.release(d)
	return fn(d.fd, name)
}

// lstat describes rel without following it; ok is false when it is absent.
func (r *root) lstat(rel string) (st unix.Stat_t, ok bool, err error) {
	err = r.at(rel, func(dfd int, name string) error {
		return unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	})
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	return st, err == nil, err
}

// mkdir makes rel a directory: an existing directory is kept, anything
// else in the way is removed, never followed. It reports whether it made
// the directory.
func (r *root) mkdir(rel string) (made bool, err error) {
	err = r.at(rel, func(dfd int, name string) error {
		err := unix.Mkdirat(dfd, name, 0o700)
		if err == nil {
			made = true
			return nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		r.forget(rel)
		if err := unix.Unlinkat(dfd, name, 0); err != nil {
			return fmt.Errorf("replace %s by a directory: %w", typeName(st.Mode), err)
		}
		made = true
		return unix.Mkdirat(dfd, name, 0o700)
	})
	return made, err
}

// remove deletes rel, and everything below it when it is a directory,
// without following links. A missing entry is not an error.
func (r *root) remove(rel string) error {
	r.forget(rel)
	err := r.at(rel, func(dfd int, name string) error { return removeAt(dfd, name) })
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func removeAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if err := removeAt(fd, n); err != nil {
				f.Close()
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return err
		}
	}
	f.Close()
	return unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
}

// create makes a new regular file (mode 0600 until its metadata is set);
// whatever was in the way must be removed first.
func (r *root) create(rel string) (fd int, err error) {
	err = r.at(rel, func(dfd int, name string) error {
		fd, err = unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	return fd, err
}

// openWrite opens an existing regular file of the restore for writing.
func (r *root) openWrite(rel string) (fd int, err error) {
	err = r.at(rel, func(dfd int, name string) error {
		fd, err = unix.Openat(dfd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// openRead opens rel for reading if it is a regular file.
func (r *root) openRead(rel string) (*os.File, error) {
	var fd int
	err := r.at(rel, func(dfd int, name string) error {
		var err error
		fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, errors.New("not a regular file")
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// readdir lists directory rel's names, never following a link to it.
func (r *root) readdir(rel string) ([]string, error) {
	var fd int
	err := r.at(rel, func(dfd int, name string) error {
		if rel == "" {
			name = "."
		}
		var err error
		fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	return f.Readdirnames(-1)
}

func (r *root) symlink(target, rel string) error {
	return r.at(rel, func(dfd int, name string) error { return unix.Symlinkat(target, dfd, name) })
}

func (r *root) mknod(rel string, mode uint32, dev uint64) error {
	return r.at(rel, func(dfd int, name string) error { return unix.Mknodat(dfd, name, mode, int(dev)) })
}

// link makes newRel a hard link to oldRel (never to what a link points at).
func (r *root) link(oldRel, newRel string) error {
	return r.at(oldRel, func(ofd int, oname string) error {
		return r.at(newRel, func(nfd int, nname string) error { return unix.Linkat(ofd, oname, nfd, nname, 0) })
	})
}

// handle is an open file of the restore: a descriptor here.
type handle = int

const noHandle = -1

// fileMeta and handleMeta set metadata through an open file.
func (r *root) fileMeta(_ string, f *os.File) metaTarget  { return metaTarget{fd: int(f.Fd())} }
func (r *root) handleMeta(_ string, fd handle) metaTarget { return metaTarget{fd: fd} }

// metaTarget is what setMeta works on: an open descriptor of the entry
// itself, so that its owner, mode, attributes and times reach the inode
// that was checked, never one a link was swapped in for.
type metaTarget struct {
	fd   int
	path bool // an O_PATH descriptor: changes go through /proc/self/fd
}

// openMeta opens rel for its metadata. Directories and fifos open
// normally; anything else (devices) gets an O_PATH descriptor, which does
// not open the device. A symbolic link has none: see linkMeta.
func (r *root) openMeta(rel string, t tree.Type) (metaTarget, error) {
	flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
	switch t {
	case tree.Dir:
		flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	case tree.Fifo:
		flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC
	case tree.File:
		flags = unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	var fd int
	err := r.at(rel, func(dfd int, name string) error {
		var err error
		fd, err = unix.Openat(dfd, name, flags, 0)
		if errors.Is(err, unix.EACCES) {
			// Not readable by us (a directory of mode 0311, say): a
			// descriptor that only names the inode still serves.
			flags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
			fd, err = unix.Openat(dfd, name, flags, 0)
		}
		return err
	})
	if err != nil {
		return metaTarget{-1, false}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		unix.Close(fd)
		return metaTarget{-1, false}, errSymlinkInPath
	}
	return metaTarget{fd, flags&unix.O_PATH != 0}, nil
}

// procPath names an O_PATH descriptor's inode for calls that take a path.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func (m metaTarget) chown(uid, gid int) error {
	if m.path {
		return unix.Fchownat(m.fd, "", uid, gid, unix.AT_EMPTY_PATH)
	}
	return unix.Fchown(m.fd, uid, gid)
}

func (m metaTarget) chmod(mode uint32) error {
	if m.path {
		return unix.Chmod(procPath(m.fd), mode)
	}
	return unix.Fchmod(m.fd, mode)
}

func (m metaTarget) setxattr(name string, value []byte) error {
	if m.path {
		return unix.Setxattr(procPath(m.fd), name, value, 0)
	}
	return unix.Fsetxattr(m.fd, name, value, 0)
}

func (m metaTarget) utimes(t tree.Time) error {
	ts := [2]unix.Timespec{timespec(t), timespec(t)}
	if m.path {
		return unix.UtimesNanoAt(unix.AT_FDCWD, procPath(m.fd), ts[:], 0)
	}
	// futimens: utimensat with no path sets the descriptor's file's times.
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(m.fd), 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

func (m metaTarget) close() { unix.Close(m.fd) }

// linkMeta sets a symbolic link's owner and times through its parent's
// descriptor, without following it. Its extended attributes go through
// the parent's /proc path, which does not follow the link either.
func (r *root) linkMeta(rel string, n *tree.Node, owner bool) []error {
	var errs []error
	err := r.at(rel, func(dfd int, name string) error {
		if owner {
			if err := unix.Fchownat(dfd, name, int(n.UID), int(n.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				errs = append(errs, fmt.Errorf("owner not restored: %w", err))
			}
		}
		for _, x := range n.XAttrs {
			if err := unix.Lsetxattr(procPath(dfd)+"/"+name, x.Name, x.Value, 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
				errs = append(errs, fmt.Errorf("extended attribute %s not restored: %w", x.Name, err))
			}
		}
		ts := []unix.Timespec{timespec(n.MTime), timespec(n.MTime)}
		if err := unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, fmt.Errorf("times not restored: %w", err))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

// timespec converts through nanoseconds: the field types differ between
// 32- and 64-bit systems.
func timespec(t tree.Time) unix.Timespec { return unix.NsecToTimespec(t.Sec*1e9 + int64(t.Nsec)) }

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "symbolic link"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "special file"
}

// pwriteAll writes b at off, all of it or an error.
func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		if n <= 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func ftruncate(fd int, size int64) error { return unix.Ftruncate(fd, size) }
func closeFD(fd int) error               { return unix.Close(fd) }

// File type bits, and the device and fifo modes for mknod.
const (
	modeTypeMask = unix.S_IFMT
	modeDir      = unix.S_IFDIR
	modeFifo     = unix.S_IFIFO
	modeChar     = unix.S_IFCHR
	modeBlock    = unix.S_IFBLK
)

// errNotSupported is what a filesystem without extended attributes says.
var errNotSupported = unix.ENOTSUP
