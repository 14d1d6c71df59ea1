// Package restorer is the restore journey ("merging the fragments"): any job
// restores as a full backup would.
//
// It first walks the job's trees and makes the directory structure, and
// plans every chunk read grouped by pack and ordered by offset; then reads
// each pack's needed ranges once, in parallel, verifying every blob and
// writing it at its offsets into pre-sized files; then sets metadata, a
// file's as soon as its content is complete and directories last, deepest
// first.
//
// The repository is not trusted: names are validated by the tree decoder,
// and restore never writes through a symbolic link it did not create: links
// and other non-directories in the way of a directory are removed, and
// files are opened with O_NOFOLLOW.
package restorer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/bmatcuk/doublestar/v4"
	"golang.org/x/sys/unix"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// Reporter receives problems with single entries.
type Reporter = progress.Reporter

// Stats are live counters for a progress display.
type Stats struct {
	Files        atomic.Int64
	FilesSkipped atomic.Int64 // already identical on disk
	BytesTotal   atomic.Int64 // planned
	BytesWritten atomic.Int64
}

// Options describe one restore.
type Options struct {
	// Target is the absolute directory the job's root is restored into.
	Target string
	// Include and Exclude are glob patterns (with **) on paths relative to
	// the job's root; a match on a directory covers everything below it.
	Include, Exclude []string
	// Workers is how many packs are read at once; 0 picks a default.
	Workers  int
	Reporter Reporter
	Stats    *Stats
}

// Result summarises a restore.
type Result struct {
	Files, Dirs, Others, Skipped int
	Bytes                        int64
	Errors                       int
}

// fileState follows one file through the content phase. The file is
// created when its first chunk arrives and opened only for each write, so a
// restore of a million files never holds more descriptors than workers.
type fileState struct {
	path      string
	node      *tree.Node
	size      int64
	openMu    sync.Mutex
	created   bool
	remaining int // blobs still to write, under restorer.mu
	failed    bool
	metaDone  bool // set with the content, through the descriptor
}

// open creates and pre-sizes the file on first use: chunks land at their
// offsets in any order, and chunks of zeros are never written (holes). A
// file of one chunk that is written whole needs no pre-sizing. Raw
// descriptors: an os.File would register each with the poller.
func (st *fileState) open(whole bool) (int, error) {
	st.openMu.Lock()
	defer st.openMu.Unlock()
	if st.created {
		return unix.Open(st.path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	fd, err := unix.Open(st.path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, err
	}
	if !whole {
		if err := unix.Ftruncate(fd, st.size); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	st.created = true
	return fd, nil
}

type target struct {
	file   *fileState
	offset int64
}

type blobPlan struct {
	loc     index.Location
	targets []target
}

// dirMeta is a directory waiting for its metadata. It holds a copy of the
// node, not a pointer into its tree, so that restored trees can be freed.
type dirMeta struct {
	path string
	node tree.Node
}

type restorer struct {
	r      *repo.Repository
	o      Options
	ctx    context.Context
	isRoot bool

	plan      map[crypto.ID][]*blobPlan // by pack, for the current batch
	blobs     map[crypto.ID]*blobPlan   // by blob, to share a read among targets
	planned   int                       // files in the current batch
	dirs      []dirMeta
	links     [][2]string // hard links to make: existing path, new path
	inodes    map[[2]uint64]string
	created   map[string]bool // directories this restore made or checked
	fresh     map[string]bool // directories this restore made: empty before it
	uid, gid  int
	reading   chan struct{} // closed when the batch being read is done
	readers   sync.Pool     // *reader
	batchSize int           // files planned before they are read

	mu     sync.Mutex
	errors atomic.Int64
	res    Result
}

// Restore restores job into o.Target.
func Restore(ctx context.Context, r *repo.Repository, job *repo.Job, o Options) (Result, error) {
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	for _, p := range append(slices.Clone(o.Include), o.Exclude...) {
		if !doublestar.ValidatePattern(p) {
			return Result{}, fmt.Errorf("invalid pattern %q", p)
		}
	}
	rs := &restorer{r: r, o: o, ctx: ctx, isRoot: os.Geteuid() == 0, plan: map[crypto.ID][]*blobPlan{},
		blobs: map[crypto.ID]*blobPlan{}, inodes: map[[2]uint64]string{}, created: map[string]bool{},
		fresh: map[string]bool{}, uid: os.Geteuid(), gid: os.Getegid(), batchSize: firstBatchFiles}
	if err := os.MkdirAll(o.Target, 0o755); err != nil {
		return Result{}, fmt.Errorf("restore location: %w", err)
	}
	rs.created[o.Target] = true
	root, err := r.LoadTree(ctx, job.Tree)
	if err != nil {
		return Result{}, fmt.Errorf("job %d: %w", job.Number, err)
	}
	err = rs.walk(root, o.Target, "", false)
	if err == nil {
		rs.startBatch()
	}
	rs.waitBatch()
	if err != nil {
		return rs.res, err
	}
	if err := ctx.Err(); err != nil {
		return rs.res, err
	}
	for _, l := range rs.links {
		_ = removeNonDir(l[1])
		if err := os.Link(l[0], l[1]); err != nil {
			rs.fail(l[1], fmt.Errorf("hard link: %w", unwrapPath(err)))
		}
	}
	// Directories last, deepest first, so writing into them does not
	// change their times again.
	for i := len(rs.dirs) - 1; i >= 0; i-- {
		rs.setMeta(rs.dirs[i].path, &rs.dirs[i].node)
	}
	rs.res.Errors = int(rs.errors.Load())
	return rs.res, nil
}

func (rs *restorer) fail(path string, err error) {
	rs.errors.Add(1)
	if rs.o.Reporter != nil {
		rs.o.Reporter.Error(path, err)
	}
}

func (rs *restorer) warn(path, msg string) {
	if rs.o.Reporter != nil {
		rs.o.Reporter.Warning(path, msg)
	}
}

// selected says whether rel is restored: included (or below an include), not
// excluded. descend says whether anything below rel might be.
func (rs *restorer) selected(rel string, underInclude bool) (sel, descend bool) {
	for _, p := range rs.o.Exclude {
		if ok, _ := doublestar.Match(p, rel); ok {
			return false, false
		}
	}
	if len(rs.o.Include) == 0 || underInclude {
		return true, true
	}
	for _, p := range rs.o.Include {
		if ok, _ := doublestar.Match(p, rel); ok {
			return true, true
		}
	}
	return false, true
}

func (rs *restorer) walk(t *tree.Tree, dir, rel string, underInclude bool) error {
	for i := range t.Nodes {
		if err := rs.ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		if !tree.ValidName(n.Name) { // the decoder refuses these; never trust one layer alone
			rs.fail(filepath.Join(dir, n.Name), errors.New("refused an invalid name"))
			continue
		}
		crel := n.Name
		if rel != "" {
			crel = rel + "/" + n.Name
		}
		sel, descend := rs.selected(crel, underInclude)
		path := filepath.Join(dir, n.Name)
		if n.Type == tree.Dir {
			if !descend {
				continue
			}
			sub, err := rs.r.LoadTree(rs.ctx, n.Subtree)
			if err != nil {
				rs.fail(path, fmt.Errorf("directory listing unreadable, its content is not restored: %w", err))
				continue
			}
			if sel {
				if err := rs.ensureDir(path); err != nil {
					rs.fail(path, err)
					continue
				}
				rs.dirs = append(rs.dirs, dirMeta{path, *n})
				rs.res.Dirs++
			}
			if err := rs.walk(sub, path, crel, sel && len(rs.o.Include) > 0 || underInclude); err != nil {
				return err
			}
			continue
		}
		if !sel {
			continue
		}
		if err := rs.ensureDir(dir); err != nil {
			rs.fail(path, err)
			continue
		}
		rs.entry(path, n)
		if rs.planned >= rs.batchSize {
			// Restore what is planned so far while planning more: memory
			// stays bounded by two batches, not by the job's size.
			rs.startBatch()
		}
	}
	return nil
}

// ensureDir makes dir (and its parents inside the target) a real directory,
// replacing whatever else is in the way.
func (rs *restorer) ensureDir(dir string) error {
	if rs.created[dir] {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir && strings.HasPrefix(dir, rs.o.Target+string(filepath.Separator)) {
		if err := rs.ensureDir(parent); err != nil {
			return err
		}
	}
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
	case err == nil:
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("replace %s by a directory: %w", fi.Mode().Type(), unwrapPath(err))
		}
		fallthrough
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o700); err != nil {
			return unwrapPath(err)
		}
		rs.fresh[dir] = true
	default:
		return unwrapPath(err)
	}
	rs.created[dir] = true
	return nil
}

// removeNonDir clears the way for a new non-directory entry.
func removeNonDir(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.IsDir() {
		return os.RemoveAll(path)
	}
	return os.Remove(path)
}

func (rs *restorer) entry(path string, n *tree.Node) {
	if n.Type != tree.Dir && n.Links > 1 {
		key := [2]uint64{n.Device, n.Inode}
		if first, ok := rs.inodes[key]; ok {
			rs.links = append(rs.links, [2]string{first, path})
			return
		}
		rs.inodes[key] = path
	}
	switch n.Type {
	case tree.File:
		rs.file(path, n)
	case tree.Symlink:
		rs.res.Others++
		if err := removeNonDir(path); err != nil {
			rs.fail(path, err)
			return
		}
		if err := os.Symlink(n.Target, path); err != nil {
			rs.fail(path, unwrapPath(err))
			return
		}
		rs.setMeta(path, n)
	case tree.Fifo, tree.CharDev, tree.BlockDev, tree.Socket:
		rs.res.Others++
		if n.Type == tree.Socket {
			return // a socket belongs to a running program; nothing to restore
		}
		if (n.Type == tree.CharDev || n.Type == tree.BlockDev) && !rs.isRoot {
			rs.warn(path, "device not restored: only root can create devices")
			return
		}
		if err := removeNonDir(path); err != nil {
			rs.fail(path, err)
			return
		}
		mode := uint32(unix.S_IFIFO)
		switch n.Type {
		case tree.CharDev:
			mode = unix.S_IFCHR
		case tree.BlockDev:
			mode = unix.S_IFBLK
		}
		if err := unix.Mknod(path, mode|0o600, int(n.Rdev)); err != nil {
			rs.fail(path, err)
			return
		}
		rs.setMeta(path, n)
	}
}

func (rs *restorer) file(path string, n *tree.Node) {
	rs.res.Files++
	rs.o.Stats.Files.Add(1)
	locs := make([]index.Location, len(n.Content))
	var size int64
	for i, id := range n.Content {
		loc, ok := rs.r.Lookup(pack.Data, id)
		if !ok {
			rs.fail(path, fmt.Errorf("chunk %v is missing from the repository; file not restored", id.Short()))
			return
		}
		locs[i] = loc
		size += int64(loc.RawLen)
	}
	if size != int64(n.Size) {
		rs.fail(path, fmt.Errorf("%w: chunks add up to %d bytes, the file had %d", repo.ErrDamaged, size, n.Size))
		return
	}
	if !rs.fresh[filepath.Dir(path)] {
		if rs.sameContent(path, n, locs) {
			rs.res.Skipped++
			rs.o.Stats.FilesSkipped.Add(1)
			rs.setMeta(path, n)
			return
		}
		if err := removeNonDir(path); err != nil {
			rs.fail(path, err)
			return
		}
	}
	rs.res.Bytes += size
	rs.o.Stats.BytesTotal.Add(size)
	fsState := &fileState{path: path, node: n, size: size, remaining: len(n.Content)}
	rs.planned++
	if len(n.Content) == 0 {
		fd, err := fsState.open(false)
		if err != nil {
			rs.fail(path, unwrapPath(err))
			return
		}
		unix.Close(fd)
		rs.setMeta(path, n)
		return
	}
	var off int64
	for _, loc := range locs {
		bp := rs.blobs[loc.ID]
		if bp == nil {
			bp = &blobPlan{loc: loc}
			rs.blobs[loc.ID] = bp
			rs.plan[loc.PackID] = append(rs.plan[loc.PackID], bp)
		}
		bp.targets = append(bp.targets, target{file: fsState, offset: off})
		off += int64(loc.RawLen)
	}
}

// sameContent reports whether an existing file already holds exactly the
// job's content, checked chunk by chunk against the chunk IDs.
func (rs *restorer) sameContent(path string, n *tree.Node, locs []index.Location) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(n.Size) {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	key := rs.r.Key()
	var buf []byte
	for _, loc := range locs {
		if cap(buf) < int(loc.RawLen) {
			buf = make([]byte, loc.RawLen)
		}
		b := buf[:loc.RawLen]
		if _, err := io.ReadFull(f, b); err != nil || key.Hash(b) != loc.ID {
			return false
		}
	}
	return true
}

// batchFiles is how many files are planned before their content is
// restored. A chunk (or group) shared by files of two batches is read
// twice; in exchange a restore of millions of files needs the memory of two
// batches, and planning (a single goroutine walking trees) overlaps the
// reading of the batch before. The first batches are smaller, so that
// reading starts early.
const (
	batchFiles      = 4096
	firstBatchFiles = 256
)

// startBatch waits for the batch being read, then reads the one just
// planned in the background, and starts a new plan.
func (rs *restorer) startBatch() {
	rs.waitBatch()
	plan := rs.plan
	rs.plan = map[crypto.ID][]*blobPlan{}
	rs.blobs = map[crypto.ID]*blobPlan{}
	rs.planned = 0
	rs.batchSize = min(2*rs.batchSize, batchFiles)
	if len(plan) == 0 {
		return
	}
	done := make(chan struct{})
	rs.reading = done
	go func() {
		defer close(done)
		rs.readPacks(plan)
	}()
}

// waitBatch waits for the batch being read, if any.
func (rs *restorer) waitBatch() {
	if rs.reading != nil {
		<-rs.reading
		rs.reading = nil
	}
}

// readPacks reads every pack of a plan. The unit of work is a span: a run
// of a pack's blobs read at once. Workers take spans, not packs, so that a
// batch that touches a single pack still keeps every core busy.
func (rs *restorer) readPacks(plan map[crypto.ID][]*blobPlan) {
	packs := make([]crypto.ID, 0, len(plan))
	for id := range plan {
		packs = append(packs, id)
	}
	slices.SortFunc(packs, func(a, b crypto.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
	var spans []span
	for _, id := range packs {
		spans = appendSpans(spans, id, plan[id])
	}
	workers := rs.o.Workers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	work := make(chan span)
	var wg sync.WaitGroup
	for range min(workers, max(1, len(spans))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Decoders and read buffers outlive a batch: batches are many.
			w, _ := rs.readers.Get().(*reader)
			if w == nil {
				w = &reader{dec: rs.r.NewDecoder()}
			}
			for sp := range work {
				w.buf = rs.readSpan(w.dec, sp, w.buf)
			}
			rs.readers.Put(w)
		}()
	}
	for _, sp := range spans {
		if rs.ctx.Err() != nil {
			break
		}
		work <- sp
	}
	close(work)
	wg.Wait()
}

// maxGap is the most unneeded bytes read to join two ranges of a pack into
// one read: cheaper than another request on every backend.
const maxGap = 256 << 10

// maxRead bounds one joined read, and so the memory of each worker; it is
// also the grain at which workers share a pack.
const maxRead = 2 << 20

// reader is what a content worker keeps between spans and batches.
type reader struct {
	dec *repo.Decoder
	buf []byte
}

// span is blobs of one pack read with one request.
type span struct {
	pack  crypto.ID
	blobs []*blobPlan
}

// appendSpans cuts a pack's planned blobs into spans: in order of offset,
// and a group's members by their place in it, so that each group is opened
// once; joined across gaps of up to maxGap, up to maxRead bytes.
func appendSpans(spans []span, id crypto.ID, blobs []*blobPlan) []span {
	slices.SortFunc(blobs, func(a, b *blobPlan) int {
		return cmp.Or(cmp.Compare(a.loc.Offset, b.loc.Offset), cmp.Compare(a.loc.Inner, b.loc.Inner))
	})
	for start := 0; start < len(blobs); {
		end := start + 1
		for end < len(blobs) && int64(blobs[end].loc.Offset)-int64(blobs[end-1].loc.Offset+blobs[end-1].loc.Length) <= maxGap &&
			blobs[end].loc.Offset+blobs[end].loc.Length-blobs[start].loc.Offset <= maxRead {
			end++
		}
		spans = append(spans, span{pack: id, blobs: blobs[start:end]})
		start = end
	}
	return spans
}

// readSpan reads, verifies and writes a span's blobs. buf is the worker's
// read buffer, returned for the next span.
func (rs *restorer) readSpan(dec *repo.Decoder, sp span, buf []byte) []byte {
	h := backend.Handle{Type: backend.Data, Name: sp.pack.String()}
	first, last := sp.blobs[0].loc, sp.blobs[len(sp.blobs)-1].loc
	n := int64(last.Offset + last.Length - first.Offset)
	// A failed read fails every blob of the span, reported per file.
	var data []byte
	var loadErr error
	if li, ok := rs.r.Backend().(backend.LoaderInto); ok {
		if int64(cap(buf)) < n {
			buf = make([]byte, max(n, maxRead)) // spans are rarely larger
		}
		data = buf[:n]
		loadErr = li.LoadInto(rs.ctx, h, int64(first.Offset), data)
	} else {
		data, loadErr = rs.r.Backend().Load(rs.ctx, h, int64(first.Offset), n)
	}
	for _, bp := range sp.blobs {
		var plain []byte
		err := loadErr
		if err == nil {
			rel := bp.loc.Offset - first.Offset
			plain, err = dec.Decode(bp.loc, data[rel:rel+bp.loc.Length])
		}
		rs.deliver(bp, plain, err)
		if rs.ctx.Err() != nil {
			return buf
		}
	}
	return buf
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (rs *restorer) deliver(bp *blobPlan, plain []byte, err error) {
	zero := err == nil && isZero(plain)
	for _, t := range bp.targets {
		st := t.file
		werr := err
		if werr == nil {
			werr = rs.write(st, plain, t.offset, zero)
		}
		rs.mu.Lock()
		if werr != nil && !st.failed {
			st.failed = true
			rs.fail(st.path, fmt.Errorf("content not restored correctly: %w", werr))
		}
		st.remaining--
		done := st.remaining == 0
		rs.mu.Unlock()
		if done && !st.metaDone {
			rs.setMeta(st.path, st.node)
		}
	}
}

// write puts one chunk into its file. The file of a single chunk (most
// files) gets its metadata through the same descriptor before it is
// closed, which spares two path lookups.
func (rs *restorer) write(st *fileState, plain []byte, off int64, zero bool) error {
	single := len(st.node.Content) == 1
	fd, err := st.open(single && !zero)
	if err != nil {
		return unwrapPath(err)
	}
	if !zero {
		for b := plain; len(b) > 0 && err == nil; {
			var n int
			n, err = unix.Pwrite(fd, b, off)
			b, off = b[n:], off+int64(n)
			if n == 0 && err == nil {
				err = io.ErrShortWrite
			}
		}
		if err == nil {
			rs.o.Stats.BytesWritten.Add(int64(len(plain)))
		}
	}
	if err == nil && single {
		rs.setMetaFD(fd, st.path, st.node)
		st.metaDone = true
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// setMeta applies owner, mode, extended attributes and times; times last,
// since the others change the ctime and some the mtime.
func (rs *restorer) setMeta(path string, n *tree.Node) {
	if rs.isRoot && (int(n.UID) != rs.uid || int(n.GID) != rs.gid) {
		if err := os.Lchown(path, int(n.UID), int(n.GID)); err != nil {
			rs.warn(path, fmt.Sprintf("owner not restored: %v", unwrapPath(err)))
		}
	}
	if n.Type != tree.Symlink {
		if err := unix.Chmod(path, n.Mode&0o7777); err != nil {
			rs.warn(path, fmt.Sprintf("mode not restored: %v", err))
		}
	}
	for _, x := range n.XAttrs {
		if err := unix.Lsetxattr(path, x.Name, x.Value, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			rs.warn(path, fmt.Sprintf("extended attribute %s not restored: %v", x.Name, err))
		}
	}
	ts := []unix.Timespec{timespec(n.MTime), timespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		rs.warn(path, fmt.Sprintf("times not restored: %v", err))
	}
}

// setMetaFD is setMeta through an open descriptor of a regular file.
func (rs *restorer) setMetaFD(fd int, path string, n *tree.Node) {
	if rs.isRoot && (int(n.UID) != rs.uid || int(n.GID) != rs.gid) {
		if err := unix.Fchown(fd, int(n.UID), int(n.GID)); err != nil {
			rs.warn(path, fmt.Sprintf("owner not restored: %v", err))
		}
	}
	if err := unix.Fchmod(fd, n.Mode&0o7777); err != nil {
		rs.warn(path, fmt.Sprintf("mode not restored: %v", err))
	}
	for _, x := range n.XAttrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			rs.warn(path, fmt.Sprintf("extended attribute %s not restored: %v", x.Name, err))
		}
	}
	// futimens: utimensat with no path sets the descriptor's file's times.
	ts := [2]unix.Timespec{timespec(n.MTime), timespec(n.MTime)}
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0); e != 0 {
		rs.warn(path, fmt.Sprintf("times not restored: %v", e))
	}
}

func timespec(t tree.Time) unix.Timespec { return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)} }

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
