// Package archiver is the backup journey: walk the includes, compare each
// entry with the parent job, read and chunk only what changed, store new
// chunks, encode each directory as a tree blob, and write the job record
// last.
//
// Work flows through three stages that keep both cores busy with bounded
// memory: the walker (the caller's goroutine) lists directories and decides
// what to read; file workers read, chunk and hash; blob workers compress,
// seal and pack the chunks the repository does not have yet. A single tree
// saver finishes directories in the order the walker closed them (children
// before parents), waiting only for their files, so nothing can deadlock.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runup/runup/internal/chunker"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// Reporter receives what a backup has to say; an Error makes the job
// incomplete.
type Reporter = progress.Reporter

// Stats are live counters a progress display may read at any time.
type Stats struct {
	Files      atomic.Int64
	Dirs       atomic.Int64
	BytesRead  atomic.Int64
	BytesTotal atomic.Int64
	BytesAdded atomic.Int64

	// Progress against the totals Scan counts ahead of the backup.
	FilesDone    atomic.Int64
	BytesSkipped atomic.Int64 // of files unchanged and not read
	Current      atomic.Pointer[string]
	ScanFiles    atomic.Int64
	ScanBytes    atomic.Int64
	ScanDone     atomic.Bool
}

// Done is how many bytes of the backup are behind it: read, or skipped as
// unchanged.
func (s *Stats) Done() int64 { return s.BytesRead.Load() + s.BytesSkipped.Load() }

// Options describe one backup.
type Options struct {
	Project string
	// Base is the absolute directory the job's root tree stands for.
	Base string
	// InContext says Base is the config's directory.
	InContext bool
	// Paths are the includes, absolute, each inside Base.
	Paths []string
	// Written are the includes as the user wrote them, for the job record.
	Written []string
	Filter  *Filter
	Parent  *repo.Job // nil for a first backup
	Force   bool      // read every file, ignoring the parent
	Tags    []string
	Host    string
	Time    time.Time // zero means now
	Program string
	// Workers is how many files are read at once; 0 picks a default.
	Workers  int
	Reporter Reporter
	Stats    *Stats
	// Streams are files read from a stream (a command's output) instead
	// of from disk. A stream that fails fails the backup: no job is saved.
	Streams []Stream
	// DryRun reads and chunks as a backup does but stores nothing: the
	// returned job (never saved, Number 0) says what would be added.
	DryRun bool
}

// Stream is a file of the job whose content comes from a reader.
type Stream struct {
	// Name is the file's slash-separated path below Base; directories
	// leading to it that are not included are made up (mode 0700).
	Name string
	// Open starts the stream; Close reports whether all of it was good
	// (a command's exit status).
	Open func(ctx context.Context) (io.ReadCloser, error)
}

type archiver struct {
	r      *repo.Repository
	o      Options
	ctx    context.Context
	cancel context.CancelCauseFunc

	files chan *fileTask
	blobs chan blobTask
	dirs  chan *dirTask

	blobSlots chan struct{} // bounds chunk buffers in flight
	blobBufs  sync.Pool

	filesNew, filesChanged, filesUnchanged, dirCount, others, errCount atomic.Int64
	blobsAdded                                                         atomic.Int64

	streamChunker lazyChunker // the walker's, for streams

	dry sync.Map // blob keys a dry run counted as new
}

type fileTask struct {
	abs  string
	node *tree.Node
	wg   *sync.WaitGroup
	old  *tree.Node // the parent job's entry, if any
}

type blobTask struct {
	id  crypto.ID
	buf *[]byte
	// A chunk of a large file is hashed by the blob worker, which writes
	// its ID to dst and calls done: one file's chunks are then hashed on
	// every core while its file worker reads and chunks on.
	dst  *crypto.ID
	done *sync.WaitGroup
}

// dirTask is a directory waiting to be encoded once its files are done.
type dirTask struct {
	abs   string
	node  *tree.Node // in the parent's nodes; nil for the root
	nodes []tree.Node
	files sync.WaitGroup
	root  *crypto.ID // set for the root task
	dev   uint64     // the include's filesystem, for OneFileSystem (0: not known yet)
}

// refreshEvery is how often a backup reads the index files others wrote.
const refreshEvery = 2 * time.Second

// Backup runs one backup and writes its job record.
func Backup(ctx context.Context, r *repo.Repository, o Options) (*repo.Job, error) {
	start := time.Now()
	if o.Time.IsZero() {
		o.Time = start
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	if o.Filter == nil {
		o.Filter = NewFilter(o.Base, nil, false)
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0) + 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a := &archiver{r: r, o: o, ctx: ctx, cancel: cancel,
		files:         make(chan *fileTask, 256),
		blobs:         make(chan blobTask, 2*runtime.GOMAXPROCS(0)),
		dirs:          make(chan *dirTask, 1024),
		blobSlots:     make(chan struct{}, 2*runtime.GOMAXPROCS(0)+1),
		streamChunker: lazyChunker{key: r.Key().Chunker[:]},
	}

	var rootID crypto.ID
	var fileWG, blobWG, dirWG sync.WaitGroup
	for range workers {
		fileWG.Add(1)
		go func() {
			defer fileWG.Done()
			a.fileWorker()
		}()
	}
	for range runtime.GOMAXPROCS(0) {
		blobWG.Add(1)
		go func() {
			defer blobWG.Done()
			a.blobWorker()
		}()
	}
	dirWG.Add(1)
	go func() {
		defer dirWG.Done()
		a.treeSaver()
	}()

	// Other writers' new index files are read as the backup goes: what
	// another host stored meanwhile is not stored again.
	refreshDone := make(chan struct{})
	go func() {
		t := time.NewTicker(refreshEvery)
		defer t.Stop()
		for {
			select {
			case <-refreshDone:
				return
			case <-t.C:
				_, _ = r.RefreshIndex(ctx)
			}
		}
	}()
	a.walkRoot(&rootID)
	close(a.files)
	close(a.dirs)
	fileWG.Wait()
	close(a.blobs)
	blobWG.Wait()
	close(refreshDone)
	dirWG.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	if !o.DryRun {
		st, err := r.Flush(ctx)
		if err != nil {
			return nil, err
		}
		o.Stats.BytesAdded.Add(int64(st.Stored))
	}
	j := &repo.Job{Project: o.Project, Time: o.Time.UTC(), Host: o.Host, Base: o.Base, InContext: o.InContext, Paths: o.Written,
		Tree: rootID, Tags: o.Tags, Program: o.Program}
	if u, err := user.Current(); err == nil {
		j.Username = u.Username
	}
	if o.Parent != nil {
		j.Parent = o.Parent.Number
	}
	j.Summary = repo.Summary{
		FilesNew: int(a.filesNew.Load()), FilesChanged: int(a.filesChanged.Load()), FilesUnchanged: int(a.filesUnchanged.Load()),
		Dirs: int(a.dirCount.Load()), Others: int(a.others.Load()), Errors: int(a.errCount.Load()),
		BytesTotal: o.Stats.BytesTotal.Load(), BytesRead: o.Stats.BytesRead.Load(), BytesAdded: o.Stats.BytesAdded.Load(),
		BlobsAdded: int(a.blobsAdded.Load()),
	}
	j.Incomplete = j.Summary.Errors > 0
	j.Summary.Seconds = time.Since(start).Seconds()
	if o.DryRun {
		return j, nil
	}
	if err := r.SaveJob(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
}

func (a *archiver) fail(err error) { a.cancel(err) }

// saveBlob stores a blob; a dry run only counts it, once, when the
// repository lacks it (its size before compression: an upper bound).
func (a *archiver) saveBlob(t pack.BlobType, id crypto.ID, b []byte) (repo.SaveStats, error) {
	if !a.o.DryRun {
		return a.r.SaveBlob(a.ctx, t, id, b)
	}
	if a.r.Known(t, id) {
		return repo.SaveStats{}, nil
	}
	if _, seen := a.dry.LoadOrStore(a.r.BlobKey(t, id), true); seen {
		return repo.SaveStats{}, nil
	}
	return repo.SaveStats{Added: true, Stored: len(b)}, nil
}

func (a *archiver) saveTree(t *tree.Tree) (crypto.ID, repo.SaveStats, error) {
	if !a.o.DryRun {
		return a.r.SaveTree(a.ctx, t)
	}
	b, err := tree.Encode(t, a.r.TreeVersion())
	if err != nil {
		return crypto.ID{}, repo.SaveStats{}, err
	}
	id := a.r.Key().Hash(b)
	st, err := a.saveBlob(pack.Tree, id, b)
	return id, st, err
}

func (a *archiver) report(path string, err error) {
	a.errCount.Add(1)
	if a.o.Reporter != nil {
		a.o.Reporter.Error(path, err)
	}
}

func (a *archiver) warn(path, msg string) {
	if a.o.Reporter != nil {
		a.o.Reporter.Warning(path, msg)
	}
}

// vnode is the part of the tree above the includes: directories that lead
// to an included path but are not included whole, and streams.
type vnode struct {
	children map[string]*vnode
	include  bool
	stream   *Stream
	// madeUp: only streams lie below, so the directory need not exist.
	madeUp bool
}

func (a *archiver) walkRoot(rootID *crypto.ID) {
	root := &vnode{children: map[string]*vnode{}}
	for _, p := range a.o.Paths {
		rel, err := filepath.Rel(a.o.Base, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			a.report(p, fmt.Errorf("include is outside %s", a.o.Base))
			continue
		}
		if rel == "." {
			root.include = true
			continue
		}
		v := root
		for _, c := range strings.Split(rel, string(filepath.Separator)) {
			if v.children[c] == nil {
				v.children[c] = &vnode{children: map[string]*vnode{}}
			}
			v = v.children[c]
		}
		v.include = true
	}
	for i := range a.o.Streams {
		st := &a.o.Streams[i]
		v := root
		parts := strings.Split(st.Name, "/")
		for j, c := range parts {
			if v.include {
				a.fail(fmt.Errorf("stream %s lies inside an include: name it outside the includes", st.Name))
				return
			}
			if v.children[c] == nil {
				v.children[c] = &vnode{children: map[string]*vnode{}, madeUp: true}
			}
			v = v.children[c]
			if j < len(parts)-1 && v.stream != nil {
				a.fail(fmt.Errorf("stream %s lies below stream %s", st.Name, strings.Join(parts[:j+1], "/")))
				return
			}
		}
		if v.include || v.stream != nil || len(v.children) > 0 {
			a.fail(fmt.Errorf("stream %s is named twice, or is an include", st.Name))
			return
		}
		v.stream = st
	}
	// A made-up directory with an include below it is a real one.
	var mark func(v *vnode) bool
	mark = func(v *vnode) bool {
		real := v.include
		for _, c := range v.children {
			if mark(c) {
				real = true
			}
		}
		if real {
			v.madeUp = false
		}
		return real
	}
	mark(root)
	// With Force the parent is still read: not to skip files, but to say
	// which are new, changed or unchanged.
	var oldRoot *tree.Tree
	if a.o.Parent != nil {
		oldRoot = a.loadOld(a.o.Base, a.o.Parent.Tree)
	}
	dt := &dirTask{abs: a.o.Base, root: rootID}
	if root.include {
		if fi, err := os.Lstat(a.o.Base); err == nil {
			dt.dev = nodeFromInfo("", fi).Device
		}
		a.listDir(dt, oldRoot, a.o.Filter.enter(nil, a.o.Base))
	} else {
		a.listVirtual(dt, root, oldRoot)
	}
	a.dirs <- dt
}

// madeUpNode is the metadata of an entry that exists only in the job: the
// user's, timed now.
func (a *archiver) madeUpNode(name string, t tree.Type, mode uint32) tree.Node {
	now := tree.TimeOf(time.Now())
	return tree.Node{Name: name, Type: t, Mode: mode, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), MTime: now, CTime: now, Links: 1}
}

// addStream stores a stream as a file of the job. It runs in the walker:
// streams are few, and their chunks go to the blob workers like a file's.
func (a *archiver) addStream(dt *dirTask, abs string, st *Stream, old *tree.Node) {
	if a.ctx.Err() != nil {
		return
	}
	n := a.madeUpNode(filepath.Base(abs), tree.File, 0o600)
	a.o.Stats.Files.Add(1)
	rc, err := st.Open(a.ctx)
	if err != nil {
		a.fail(fmt.Errorf("%s: %w", st.Name, err))
		return
	}
	content, read, err := a.chunkStream(&a.streamChunker, rc)
	cerr := rc.Close()
	a.o.Stats.BytesTotal.Add(read)
	if err == nil {
		err = cerr
	}
	if err != nil {
		a.fail(fmt.Errorf("%s: %w", st.Name, err))
		return
	}
	n.Size, n.Content = uint64(read), content
	dt.nodes = append(dt.nodes, n)
	if old == nil {
		a.filesNew.Add(1)
		a.fileDone(abs, "new", read)
	} else {
		a.filesChanged.Add(1)
		a.fileDone(abs, "changed", read)
	}
}

// fileDone counts a file as done and tells a FileReporter (--verbose) how
// it was backed up.
func (a *archiver) fileDone(abs, status string, size int64) {
	a.o.Stats.FilesDone.Add(1)
	if fr, ok := a.o.Reporter.(progress.FileReporter); ok {
		fr.File(abs, status, size)
	}
}

func (a *archiver) loadOld(abs string, id crypto.ID) *tree.Tree {
	if id.IsZero() {
		return nil
	}
	t, err := a.r.LoadTree(a.ctx, id)
	if err != nil {
		a.warn(abs, fmt.Sprintf("previous job's listing unreadable, reading everything again: %v", err))
		return nil
	}
	return t
}

func oldChild(old *tree.Tree, name string) *tree.Node {
	if old == nil {
		return nil
	}
	n, _ := old.Find(name)
	return n
}

// listVirtual handles a directory above the includes: only the children that
// lead to includes are visited.
func (a *archiver) listVirtual(dt *dirTask, v *vnode, old *tree.Tree) {
	names := make([]string, 0, len(v.children))
	for name := range v.children {
		names = append(names, name)
	}
	sort.Strings(names)
	dt.nodes = make([]tree.Node, 0, len(names))
	for _, name := range names {
		child := v.children[name]
		abs := filepath.Join(dt.abs, name)
		if child.stream != nil {
			a.addStream(dt, abs, child.stream, oldChild(old, name))
			continue
		}
		var fi fs.FileInfo
		var err error
		if child.madeUp {
			dt.nodes = append(dt.nodes, a.madeUpNode(name, tree.Dir, 0o700))
		} else if fi, err = os.Lstat(abs); err != nil {
			a.report(abs, fmt.Errorf("include not found: %w", unwrapPath(err)))
			continue
		}
		if child.include {
			a.addEntry(dt, abs, fi, oldChild(old, name), a.o.Filter.enter(nil, abs))
			continue
		}
		if !child.madeUp {
			if !fi.IsDir() {
				a.report(abs, errors.New("not a directory, but an include lies below it"))
				continue
			}
			dt.nodes = append(dt.nodes, nodeFromInfo(name, fi))
		}
		n := &dt.nodes[len(dt.nodes)-1]
		a.dirCount.Add(1)
		sub := &dirTask{abs: abs, node: n}
		var oldSub *tree.Tree
		if on := oldChild(old, name); on != nil && on.Type == tree.Dir {
			oldSub = a.loadOld(abs, on.Subtree)
		}
		a.listVirtual(sub, child, oldSub)
		a.dirs <- sub
	}
}

// listDir walks a whole directory.
func (a *archiver) listDir(dt *dirTask, old *tree.Tree, ign *ignoreRules) {
	entries, err := os.ReadDir(dt.abs)
	if err != nil {
		a.report(dt.abs, unwrapPath(err))
	}
	dt.nodes = make([]tree.Node, 0, len(entries))
	for _, e := range entries {
		if a.ctx.Err() != nil {
			return
		}
		abs := filepath.Join(dt.abs, e.Name())
		isDir := e.IsDir()
		if a.o.Filter.Excluded(abs, isDir) || ign.ignored(abs, isDir) {
			continue
		}
		fi, err := os.Lstat(abs)
		if err != nil {
			a.report(abs, unwrapPath(err))
			continue
		}
		a.addEntry(dt, abs, fi, oldChild(old, e.Name()), ign)
	}
}

func (a *archiver) addEntry(dt *dirTask, abs string, fi fs.FileInfo, old *tree.Node, ign *ignoreRules) {
	if a.o.Filter.Excluded(abs, fi.IsDir()) || a.o.Filter.excludedEntry(abs, fi) {
		return
	}
	node := nodeFromInfo(filepath.Base(abs), fi)
	if a.o.Filter.OneFileSystem && dt.dev != 0 && node.Type == tree.Dir && node.Device != dt.dev {
		return // a mount point below an include: another filesystem
	}
	dt.nodes = append(dt.nodes, node)
	n := &dt.nodes[len(dt.nodes)-1]
	if a.r.TreeVersion() == tree.Version1 && (!n.MTime.FitsNanos() || !n.CTime.FitsNanos()) {
		a.warn(abs, "its time is outside 1678–2262, which this repository's format stores only approximately: run 'runup migrate' to store times exactly")
	}
	if x, err := readXattrs(abs); err != nil {
		a.warn(abs, fmt.Sprintf("extended attributes unreadable: %v", err))
	} else {
		n.XAttrs = x
	}
	switch n.Type {
	case tree.File:
		a.o.Stats.Files.Add(1)
		a.o.Stats.BytesTotal.Add(int64(n.Size))
		if !a.o.Force && unchanged(n, old) && a.allKnown(old.Content) {
			n.Content = old.Content
			a.filesUnchanged.Add(1)
			a.o.Stats.BytesSkipped.Add(int64(n.Size))
			a.fileDone(abs, "unchanged", int64(n.Size))
			return
		}
		dt.files.Add(1)
		select {
		case a.files <- &fileTask{abs: abs, node: n, wg: &dt.files, old: old}:
		case <-a.ctx.Done():
			dt.files.Done()
		}
	case tree.Dir:
		a.dirCount.Add(1)
		a.o.Stats.Dirs.Add(1)
		sub := &dirTask{abs: abs, node: n, dev: dt.dev}
		if sub.dev == 0 {
			sub.dev = n.Device // an include: its filesystem is the one kept
		}
		var oldSub *tree.Tree
		if old != nil && old.Type == tree.Dir {
			oldSub = a.loadOld(abs, old.Subtree)
		}
		a.listDir(sub, oldSub, a.o.Filter.enter(ign, abs))
		a.dirs <- sub
	case tree.Symlink:
		a.others.Add(1)
		target, err := os.Readlink(abs)
		if err != nil {
			a.report(abs, unwrapPath(err))
			n.Type = 0
			return
		}
		n.Target = target
	default:
		a.others.Add(1) // recorded, not read
	}
}

func (a *archiver) allKnown(ids []crypto.ID) bool {
	for _, id := range ids {
		if !a.r.Has(pack.Data, id) {
			return false
		}
	}
	return true
}

func (a *archiver) treeSaver() {
	for dt := range a.dirs {
		dt.files.Wait()
		if a.ctx.Err() != nil {
			continue
		}
		t := &tree.Tree{Nodes: make([]tree.Node, 0, len(dt.nodes))}
		for _, n := range dt.nodes {
			if n.Type != 0 { // dropped entries are zeroed
				t.Nodes = append(t.Nodes, n)
			}
		}
		id, st, err := a.saveTree(t)
		if err != nil {
			a.fail(fmt.Errorf("save tree of %s: %w", dt.abs, err))
			continue
		}
		if st.Added {
			a.o.Stats.BytesAdded.Add(int64(st.Stored))
			a.blobsAdded.Add(1)
		}
		if dt.root != nil {
			*dt.root = id
		} else {
			dt.node.Subtree = id
		}
	}
}

func (a *archiver) fileWorker() {
	// One MaxSize window per worker: the chunker is far from the bottleneck,
	// and memory is a feature.
	ch := &lazyChunker{key: a.r.Key().Chunker[:]}
	for t := range a.files {
		if a.ctx.Err() == nil {
			a.o.Stats.Current.Store(&t.abs)
			a.saveFile(ch, t)
		}
		t.wg.Done()
	}
}

// lazyChunker allocates a worker's chunker window on its first large file
// only: a tree of small files never needs it. The window is twice the
// largest chunk: the chunker looks up to MaxSize ahead, and with a window of
// only MaxSize it slid ~7 MiB down for every 1 MiB chunk (memmove was a
// quarter of a large file's backup).
type lazyChunker struct {
	key []byte
	c   *chunker.Chunker
}

func (l *lazyChunker) get() (*chunker.Chunker, error) {
	if l.c == nil {
		c, err := chunker.New(l.key, make([]byte, 2*chunker.MaxSize))
		if err != nil {
			return nil, err
		}
		l.c = c
	}
	return l.c, nil
}

func (a *archiver) getBuf() (*[]byte, bool) {
	select {
	case a.blobSlots <- struct{}{}:
	case <-a.ctx.Done():
		return nil, false
	}
	b, _ := a.blobBufs.Get().(*[]byte)
	if b == nil {
		b = new([]byte)
	}
	return b, true
}

func (a *archiver) putBuf(b *[]byte) {
	*b = (*b)[:0]
	a.blobBufs.Put(b)
	<-a.blobSlots
}

// chunk queues a small file's chunk, read into buf, unless the repository
// already has it.
func (a *archiver) chunk(id crypto.ID, buf *[]byte) bool {
	if a.r.Known(pack.Data, id) {
		a.putBuf(buf)
		return true
	}
	select {
	case a.blobs <- blobTask{id: id, buf: buf}:
		return true
	case <-a.ctx.Done():
		a.putBuf(buf)
		return false
	}
}

func (a *archiver) saveFile(ch *lazyChunker, t *fileTask) {
	n := t.node
	f, err := openFile(t.abs)
	if err != nil {
		a.report(t.abs, unwrapPath(err))
		n.Type = 0
		return
	}
	defer f.Close()
	content, read, err := a.readSmall(f, n.Size)
	if err == nil {
		a.o.Stats.BytesRead.Add(read) // chunkStream counts as it reads
	} else if errors.Is(err, errNotSmall) {
		if _, err = f.Seek(0, io.SeekStart); err == nil {
			content, read, err = a.chunkStream(ch, f)
		}
	}
	if err != nil {
		if a.ctx.Err() == nil {
			a.report(t.abs, unwrapPath(err))
		}
		n.Type = 0
		return
	}
	if fi, err := f.Stat(); err == nil {
		now := nodeFromInfo(n.Name, fi)
		if now.Size != uint64(read) || now.MTime != n.MTime {
			a.warn(t.abs, "file changed while being read; its content in this job is what was read")
		}
	}
	if uint64(read) != n.Size {
		a.o.Stats.BytesTotal.Add(read - int64(n.Size))
	}
	n.Size = uint64(read)
	n.Content = content
	switch {
	case t.old == nil || t.old.Type != tree.File:
		a.filesNew.Add(1)
		a.fileDone(t.abs, "new", read)
	case slices.Equal(t.old.Content, content):
		// Read again (--force, or its times changed) to the same content.
		a.filesUnchanged.Add(1)
		a.fileDone(t.abs, "unchanged", read)
	default:
		a.filesChanged.Add(1)
		a.fileDone(t.abs, "changed", read)
	}
}

// errNotSmall sends a file to the chunker: it is large, or it grew past the
// size lstat gave while being read.
var errNotSmall = errors.New("not a small file")

// readSmall stores a file under the chunker's minimum size with one read
// into a chunk buffer, without the chunker.
func (a *archiver) readSmall(f io.Reader, size uint64) ([]crypto.ID, int64, error) {
	if size >= chunker.MinSize {
		return nil, 0, errNotSmall
	}
	buf, ok := a.getBuf()
	if !ok {
		return nil, 0, context.Cause(a.ctx)
	}
	if cap(*buf) < int(size)+1 {
		*buf = make([]byte, 0, max(int(size)+1, 64<<10))
	}
	b := (*buf)[:size+1]
	m, err := io.ReadFull(f, b)
	switch {
	case err != nil && err != io.ErrUnexpectedEOF && err != io.EOF:
		a.putBuf(buf)
		return nil, 0, err
	case m > int(size):
		a.putBuf(buf)
		return nil, 0, errNotSmall
	case m == 0:
		a.putBuf(buf)
		return nil, 0, nil
	}
	*buf = b[:m]
	id := a.r.Key().Hash(*buf)
	if !a.chunk(id, buf) {
		return nil, 0, context.Cause(a.ctx)
	}
	return []crypto.ID{id}, int64(m), nil
}

// chunkStream cuts a large file into chunks and hands each, copied, to the
// blob workers, which hash it and store it unless the repository has it.
func (a *archiver) chunkStream(lc *lazyChunker, f io.Reader) ([]crypto.ID, int64, error) {
	ch, err := lc.get()
	if err != nil {
		return nil, 0, err
	}
	ch.Reset(f)
	var ids []*crypto.ID
	var read int64
	var wg sync.WaitGroup
	defer wg.Wait() // no blob worker writes into ids after a return
	for {
		data, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, read, err
		}
		read += int64(len(data))
		a.o.Stats.BytesRead.Add(int64(len(data))) // as it goes: the progress line's bytes
		buf, ok := a.getBuf()
		if !ok {
			return nil, read, context.Cause(a.ctx)
		}
		*buf = append(*buf, data...)
		id := new(crypto.ID)
		ids = append(ids, id)
		wg.Add(1)
		select {
		case a.blobs <- blobTask{buf: buf, dst: id, done: &wg}:
		case <-a.ctx.Done():
			wg.Done()
			a.putBuf(buf)
			return nil, read, context.Cause(a.ctx)
		}
	}
	wg.Wait()
	if err := context.Cause(a.ctx); err != nil {
		return nil, read, err
	}
	content := make([]crypto.ID, len(ids))
	for i, id := range ids {
		content[i] = *id
	}
	return content, read, nil
}

func (a *archiver) blobWorker() {
	for t := range a.blobs {
		if a.ctx.Err() == nil {
			id := t.id
			if t.dst != nil {
				id = a.r.Key().Hash(*t.buf)
				*t.dst = id
			}
			// SaveBlob skips a chunk the repository has or is storing.
			st, err := a.saveBlob(pack.Data, id, *t.buf)
			if err != nil {
				a.fail(err)
			} else if st.Added {
				a.o.Stats.BytesAdded.Add(int64(st.Stored))
				a.blobsAdded.Add(1)
			}
		}
		a.putBuf(t.buf)
		if t.done != nil {
			t.done.Done()
		}
	}
}

// unwrapPath drops the *PathError wrapper, whose path the reporter repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
