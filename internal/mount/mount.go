//go:build !windows

package mount

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/runup/runup/internal/browse"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// Mount is a mounted repository.
type Mount struct {
	server *fuse.Server
	dir    string
}

// New mounts r at dir. The caller keeps r open (and locked) until Wait
// returns.
func New(r *repo.Repository, dir string, o Options) (*Mount, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCache
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	m := &mounter{r: r, cache: newChunkCache(r, o.CacheBytes), logf: o.Logf, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		started: time.Now()}
	m.jobs = browse.NewJobCache(r, o.Refresh)
	m.jobs.OnProblem = func(err error) { o.Logf("%v", err) }
	// The job list is read once before mounting: a repository that cannot
	// be listed is an error now, not an empty folder later.
	if _, err := m.jobs.Get(context.Background()); err != nil {
		return nil, err
	}
	short := o.Refresh / 2
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: o.FsName, Name: "runup", AllowOther: o.AllowOther, Debug: o.Debug,
			// The kernel checks the job's modes and owners.
			Options:      []string{"ro", "default_permissions"},
			MaxReadAhead: 1 << 20,
		},
		EntryTimeout: &short, AttrTimeout: &short, NegativeTimeout: &short,
		Logger: log.New(logWriter(o.Logf), "", 0),
	}
	server, err := fs.Mount(dir, &rootNode{m: m}, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return &Mount{server: server, dir: dir}, nil
}

type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", string(p))
	return len(p), nil
}

// Wait returns once the filesystem is unmounted (by Unmount or umount).
func (m *Mount) Wait() { m.server.Wait() }

// Unmount unmounts; when a process still uses the mount, it is detached
// lazily (the mountpoint goes now, the busy reader gets errors), so that
// stopping never hangs on a reader.
func (m *Mount) Unmount() error {
	err := m.server.Unmount()
	if err == nil {
		return nil
	}
	if os.Geteuid() == 0 {
		if derr := detach(m.dir); derr == nil {
			return nil
		}
	}
	for _, prog := range []string{"fusermount3", "fusermount"} {
		if p, lerr := exec.LookPath(prog); lerr == nil {
			if out, rerr := exec.Command(p, "-u", "-z", m.dir).CombinedOutput(); rerr == nil {
				return nil
			} else {
				err = errors.Join(err, fmt.Errorf("%s: %v: %s", prog, rerr, out))
			}
		}
	}
	return err
}

// mounter is what every node shares.
type mounter struct {
	r        *repo.Repository
	jobs     *browse.JobCache
	cache    *chunkCache
	logf     func(format string, args ...any)
	uid, gid uint32
	started  time.Time // the time of the mount's own folders
}

// eio logs err and answers EIO (ENOENT for what does not exist).
func (m *mounter) eio(what string, err error) syscall.Errno {
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	m.logf("%s: %v", what, err)
	return syscall.EIO
}

// dirAttr is the attributes of the mount's own folders.
func (m *mounter) dirAttr(out *fuse.Attr) {
	out.Mode = fuse.S_IFDIR | 0o555
	out.Uid, out.Gid = m.uid, m.gid
	out.Nlink = 2
	out.SetTimes(&m.started, &m.started, &m.started)
}

// nodeAttr fills attributes from a job's node.
func nodeAttr(n *tree.Node, out *fuse.Attr) {
	out.Mode = n.Mode & 0o7777
	switch n.Type {
	case tree.File:
		out.Mode |= fuse.S_IFREG
		out.Size = n.Size
	case tree.Dir:
		out.Mode |= fuse.S_IFDIR
		out.Nlink = 2
	case tree.Symlink:
		out.Mode |= fuse.S_IFLNK
		out.Size = uint64(len(n.Target))
	case tree.Fifo:
		out.Mode |= syscall.S_IFIFO
	case tree.Socket:
		out.Mode |= syscall.S_IFSOCK
	case tree.CharDev:
		out.Mode |= syscall.S_IFCHR
		out.Rdev = uint32(n.Rdev)
	case tree.BlockDev:
		out.Mode |= syscall.S_IFBLK
		out.Rdev = uint32(n.Rdev)
	}
	if out.Nlink == 0 {
		out.Nlink = 1
	}
	out.Uid, out.Gid = n.UID, n.GID
	out.Blocks = (out.Size + 511) / 512
	mt, ct := n.MTime.Time(), n.CTime.Time()
	out.SetTimes(&mt, &mt, &ct)
}

func fuseType(n *tree.Node) uint32 {
	var a fuse.Attr
	nodeAttr(n, &a)
	return a.Mode & syscall.S_IFMT
}
