//go:build !windows

package mount

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/tree"
)

// rootNode holds jobs/, projects/, tags/ and hosts/.
type rootNode struct {
	fs.Inode
	m *mounter
}

var (
	_ fs.NodeOnAdder   = (*rootNode)(nil)
	_ fs.NodeGetattrer = (*rootNode)(nil)
)

func (n *rootNode) OnAdd(ctx context.Context) {
	n.AddChild("jobs", n.NewPersistentInode(ctx, &jobsNode{m: n.m}, fs.StableAttr{Mode: fuse.S_IFDIR}), false)
	for name, kind := range map[string]groupKind{"projects": byProject, "tags": byTag, "hosts": byHost} {
		n.AddChild(name, n.NewPersistentInode(ctx, &groupsNode{m: n.m, kind: kind}, fs.StableAttr{Mode: fuse.S_IFDIR}), false)
	}
}

func (n *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.m.dirAttr(&out.Attr)
	return 0
}

// jobsNode is jobs/: one folder per job, named by its number.
type jobsNode struct {
	fs.Inode
	m *mounter
}

var (
	_ fs.NodeReaddirer = (*jobsNode)(nil)
	_ fs.NodeLookuper  = (*jobsNode)(nil)
	_ fs.NodeGetattrer = (*jobsNode)(nil)
)

func (n *jobsNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.m.dirAttr(&out.Attr)
	return 0
}

func (n *jobsNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	jobs, err := n.m.jobs.Get(ctx)
	if err != nil {
		return nil, n.m.eio("jobs", err)
	}
	entries := make([]fuse.DirEntry, 0, len(jobs))
	for num := range jobs {
		entries = append(entries, fuse.DirEntry{Name: itoa(num), Mode: fuse.S_IFDIR})
	}
	sortEntries(entries)
	return fs.NewListDirStream(entries), 0
}

func (n *jobsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	num, err := strconv.Atoi(name)
	if err != nil || itoa(num) != name {
		return nil, syscall.ENOENT
	}
	jobs, err := n.m.jobs.Get(ctx)
	if err != nil {
		return nil, n.m.eio("jobs", err)
	}
	j, ok := jobs[num]
	if !ok {
		return nil, syscall.ENOENT
	}
	if ch := n.GetChild(name); ch != nil {
		ch.Operations().(*dirNode).getattr(&out.Attr)
		return ch, 0
	}
	d := &dirNode{m: n.m, id: j.Tree, node: tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, UID: n.m.uid, GID: n.m.gid,
		MTime: tree.TimeOf(j.Time), CTime: tree.TimeOf(j.Time)}}
	d.getattr(&out.Attr)
	out.SetEntryTimeout(contentTimeout)
	out.SetAttrTimeout(contentTimeout)
	return n.NewInode(ctx, d, fs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

// groupsNode is projects/, tags/ or hosts/: a folder per name.
type groupsNode struct {
	fs.Inode
	m    *mounter
	kind groupKind
}

var (
	_ fs.NodeReaddirer = (*groupsNode)(nil)
	_ fs.NodeLookuper  = (*groupsNode)(nil)
	_ fs.NodeGetattrer = (*groupsNode)(nil)
)

func (n *groupsNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.m.dirAttr(&out.Attr)
	return 0
}

func (n *groupsNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	jobs, err := n.m.jobs.Get(ctx)
	if err != nil {
		return nil, n.m.eio("jobs", err)
	}
	var entries []fuse.DirEntry
	for _, name := range sortedNames(groups(jobs, n.kind)) {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: fuse.S_IFDIR})
	}
	return fs.NewListDirStream(entries), 0
}

func (n *groupsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	jobs, err := n.m.jobs.Get(ctx)
	if err != nil {
		return nil, n.m.eio("jobs", err)
	}
	if _, ok := groups(jobs, n.kind)[name]; !ok {
		return nil, syscall.ENOENT
	}
	n.m.dirAttr(&out.Attr)
	if ch := n.GetChild(name); ch != nil {
		return ch, 0
	}
	return n.NewInode(ctx, &groupNode{m: n.m, kind: n.kind, name: name}, fs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

// groupNode is one project, tag or host: links to its jobs (and, for a
// project, latest).
type groupNode struct {
	fs.Inode
	m    *mounter
	kind groupKind
	name string
}

var (
	_ fs.NodeReaddirer = (*groupNode)(nil)
	_ fs.NodeLookuper  = (*groupNode)(nil)
	_ fs.NodeGetattrer = (*groupNode)(nil)
)

func (n *groupNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.m.dirAttr(&out.Attr)
	return 0
}

// links lists the group's entries: job number (and latest) → link.
func (n *groupNode) links(ctx context.Context) (map[string]*linkNode, syscall.Errno) {
	jobs, err := n.m.jobs.Get(ctx)
	if err != nil {
		return nil, n.m.eio("jobs", err)
	}
	nums := groups(jobs, n.kind)[n.name]
	out := make(map[string]*linkNode, len(nums)+1)
	for _, num := range nums {
		out[itoa(num)] = &linkNode{m: n.m, target: "../../jobs/" + itoa(num), time: jobs[num].Time}
	}
	if n.kind == byProject && len(nums) > 0 {
		last := nums[len(nums)-1]
		out["latest"] = &linkNode{m: n.m, target: "../../jobs/" + itoa(last), time: jobs[last].Time}
	}
	return out, 0
}

func (n *groupNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	links, errno := n.links(ctx)
	if errno != 0 {
		return nil, errno
	}
	entries := make([]fuse.DirEntry, 0, len(links))
	for name := range links {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: fuse.S_IFLNK})
	}
	sortEntries(entries)
	return fs.NewListDirStream(entries), 0
}

func (n *groupNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	links, errno := n.links(ctx)
	if errno != 0 {
		return nil, errno
	}
	l, ok := links[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	l.getattr(&out.Attr)
	if ch := n.GetChild(name); ch != nil {
		if old, ok := ch.Operations().(*linkNode); ok {
			// latest moves on: the same inode reads its new target.
			old.set(l.target, l.time)
			return ch, 0
		}
	}
	return n.NewInode(ctx, l, fs.StableAttr{Mode: fuse.S_IFLNK}), 0
}

// linkNode is a link of the mount's own (projects/p/latest).
type linkNode struct {
	fs.Inode
	m *mounter

	mu     sync.Mutex
	target string
	time   time.Time // the job's
}

func (l *linkNode) set(target string, t time.Time) {
	l.mu.Lock()
	l.target, l.time = target, t
	l.mu.Unlock()
}

var (
	_ fs.NodeReadlinker = (*linkNode)(nil)
	_ fs.NodeGetattrer  = (*linkNode)(nil)
)

func (l *linkNode) getattr(out *fuse.Attr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out.Mode = fuse.S_IFLNK | 0o777
	out.Size = uint64(len(l.target))
	out.Uid, out.Gid = l.m.uid, l.m.gid
	out.Nlink = 1
	out.SetTimes(&l.time, &l.time, &l.time)
}

func (l *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.getattr(&out.Attr)
	return 0
}

func (l *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return []byte(l.target), 0
}

// dirNode is a directory of a job, loaded when first listed or looked in.
type dirNode struct {
	fs.Inode
	m    *mounter
	id   crypto.ID
	node tree.Node

	mu sync.Mutex
	t  *tree.Tree
}

var (
	_ fs.NodeReaddirer   = (*dirNode)(nil)
	_ fs.NodeLookuper    = (*dirNode)(nil)
	_ fs.NodeGetattrer   = (*dirNode)(nil)
	_ fs.NodeGetxattrer  = (*dirNode)(nil)
	_ fs.NodeListxattrer = (*dirNode)(nil)
)

func (d *dirNode) getattr(out *fuse.Attr) { nodeAttr(&d.node, out) }

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.getattr(&out.Attr)
	out.SetTimeout(contentTimeout)
	return 0
}

func (d *dirNode) tree(ctx context.Context) (*tree.Tree, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil {
		return d.t, 0
	}
	t, err := d.m.r.LoadTree(ctx, d.id)
	if err != nil {
		return nil, d.m.eio("directory "+d.node.Name, err)
	}
	d.t = t
	return t, 0
}

func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	t, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	entries := make([]fuse.DirEntry, 0, len(t.Nodes))
	for i := range t.Nodes {
		if validName(t.Nodes[i].Name) {
			entries = append(entries, fuse.DirEntry{Name: t.Nodes[i].Name, Mode: fuseType(&t.Nodes[i])})
		}
	}
	return fs.NewListDirStream(entries), 0
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	n, _ := t.Find(name)
	if n == nil || !validName(name) {
		return nil, syscall.ENOENT
	}
	nodeAttr(n, &out.Attr)
	out.SetEntryTimeout(contentTimeout)
	out.SetAttrTimeout(contentTimeout)
	if ch := d.GetChild(name); ch != nil {
		return ch, 0
	}
	var op fs.InodeEmbedder
	switch n.Type {
	case tree.Dir:
		op = &dirNode{m: d.m, id: n.Subtree, node: *n}
	case tree.File:
		op = &fileNode{m: d.m, node: *n}
	default:
		op = &entryNode{node: *n}
	}
	return d.NewInode(ctx, op, fs.StableAttr{Mode: fuseType(n)}), 0
}

func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(&d.node, attr, dest)
}

func (d *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(&d.node, dest)
}

// entryNode is a symbolic link, device, pipe or socket of a job.
type entryNode struct {
	fs.Inode
	node tree.Node
}

var (
	_ fs.NodeReadlinker  = (*entryNode)(nil)
	_ fs.NodeGetattrer   = (*entryNode)(nil)
	_ fs.NodeGetxattrer  = (*entryNode)(nil)
	_ fs.NodeListxattrer = (*entryNode)(nil)
)

func (e *entryNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	nodeAttr(&e.node, &out.Attr)
	out.SetTimeout(contentTimeout)
	return 0
}

func (e *entryNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if e.node.Type != tree.Symlink {
		return nil, syscall.EINVAL
	}
	return []byte(e.node.Target), 0
}

func (e *entryNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(&e.node, attr, dest)
}

func (e *entryNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(&e.node, dest)
}

// fileNode is a file of a job.
type fileNode struct {
	fs.Inode
	m    *mounter
	node tree.Node

	mu     sync.Mutex
	layout *layout
}

var (
	_ fs.NodeOpener      = (*fileNode)(nil)
	_ fs.NodeReader      = (*fileNode)(nil)
	_ fs.NodeGetattrer   = (*fileNode)(nil)
	_ fs.NodeGetxattrer  = (*fileNode)(nil)
	_ fs.NodeListxattrer = (*fileNode)(nil)
)

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	nodeAttr(&f.node, &out.Attr)
	out.SetTimeout(contentTimeout)
	return 0
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	if _, errno := f.getLayout(); errno != 0 {
		return nil, 0, errno
	}
	// A job's files never change: the kernel may keep what it read.
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *fileNode) getLayout() (*layout, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.layout == nil {
		l, err := newLayout(f.m.r, &f.node)
		if err != nil {
			return nil, f.m.eio(f.node.Name, err)
		}
		f.layout = l
	}
	return f.layout, 0
}

func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	l, errno := f.getLayout()
	if errno != 0 {
		return nil, errno
	}
	n, err := l.readAt(ctx, f.m.cache, dest, off)
	if err != nil {
		return nil, f.m.eio(f.node.Name, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(&f.node, attr, dest)
}

func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(&f.node, dest)
}

func getxattr(n *tree.Node, attr string, dest []byte) (uint32, syscall.Errno) {
	for _, x := range n.XAttrs {
		if x.Name == attr {
			if len(dest) < len(x.Value) {
				return uint32(len(x.Value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.Value)), 0
		}
	}
	return 0, errNoAttr
}

func listxattr(n *tree.Node, dest []byte) (uint32, syscall.Errno) {
	var size int
	for _, x := range n.XAttrs {
		size += len(x.Name) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, x := range n.XAttrs {
		off += copy(dest[off:], x.Name)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

func sortEntries(e []fuse.DirEntry) {
	// Numbers sort as numbers: jobs/2 before jobs/10.
	less := func(a, b string) bool {
		x, errA := strconv.Atoi(a)
		y, errB := strconv.Atoi(b)
		if errA == nil && errB == nil {
			return x < y
		}
		if (errA == nil) != (errB == nil) {
			return errA == nil
		}
		return a < b
	}
	sort.Slice(e, func(i, j int) bool { return less(e[i].Name, e[j].Name) })
}
