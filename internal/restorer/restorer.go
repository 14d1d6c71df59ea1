// Package restorer is the restore journey ("merging the fragments"): any job
// restores as a full backup would.
//
// It first walks the job's trees and makes the directory structure, and
// plans every chunk read grouped by pack and ordered by offset; then reads
// each pack's needed ranges once, in parallel, verifying every blob and
// writing it at its offsets into pre-sized files; then sets metadata, a
// file's as soon as its content is complete and verified, directories last,
// deepest first.
//
// The repository is not trusted. It never decides where files go: the
// caller names the target, and for an in-place restore the paths the
// local config includes today (Options.Within); whatever a job holds
// outside them is skipped and reported. Names are validated by the tree
// decoder and again here. Every operation is relative to a directory
// descriptor and never follows a symbolic link (see root), so a link planted
// in the target, before or during the restore, cannot redirect a write. A
// file whose content cannot be verified is removed, never left with the
// job's size and time.
package restorer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bmatcuk/doublestar/v4"

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
	FilesDone    atomic.Int64 // restored or skipped
	BytesDone    atomic.Int64 // of chunks written (holes too) and of files skipped
}

// Options describe one restore.
type Options struct {
	// Target is the absolute directory the job's root is restored into.
	Target string
	// Within, when set, confines the restore to these absolute paths
	// (inside Target): entries at or below them are restored; directories
	// above them are made if missing but otherwise left alone; anything
	// else the job holds is skipped and reported. An in-place restore
	// passes what the local runup.yaml includes today.
	Within []string
	// Include and Exclude are glob patterns (with **) on paths relative to
	// the job's root; a match on a directory covers everything below it.
	Include, Exclude []string
	// FindMissing, if set, is called (once) when a blob is not in the
	// index, to look for it in packs no index file lists.
	FindMissing func()
	// Workers is how many packs are read at once; 0 picks a default.
	Workers  int
	Reporter Reporter
	Stats    *Stats
	// DryRun changes nothing on disk: it reads what is there and says
	// (Result, and a FileReporter) what a restore would write, skip and
	// delete.
	DryRun bool
	// Delete removes entries of the target that the job does not have,
	// in the directories the restore covers (restic's --delete). Paths in
	// Keep (absolute), and anything named .runup, are never removed.
	Delete bool
	Keep   []string
}

// Result summarises a restore.
type Result struct {
	Files   int   `json:"files"`
	Dirs    int   `json:"dirs"`
	Others  int   `json:"others"`  // links, fifos, devices
	Skipped int   `json:"skipped"` // files already identical on disk
	Bytes   int64 `json:"bytes"`
	Errors  int   `json:"errors"`
	// Damaged counts the errors due to damaged or missing repository data.
	Damaged int `json:"damaged,omitempty"`
	// Outside counts entries of the job outside Within, not restored.
	Outside int `json:"outside,omitempty"`
	// Deleted counts entries --delete removed (or would remove).
	Deleted int `json:"deleted,omitempty"`
}

// fileState follows one file through the content phase. The file is
// created when its first chunk arrives and opened only for each write, so a
// restore of a million files never holds more descriptors than workers.
type fileState struct {
	rel       string
	node      *tree.Node
	size      int64
	openMu    sync.Mutex
	created   bool
	remaining int // blobs still to write, under restorer.mu
	failed    bool
	metaDone  bool // set with the content, through the descriptor
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
	rel  string
	node tree.Node
}

// where an entry lies with respect to Options.Within.
type where int

const (
	inside  where = iota // restored
	leading              // a directory above what is restored: made if missing
	outside              // not restored
)

type restorer struct {
	r      *repo.Repository
	o      Options
	fs     *root
	ctx    context.Context
	cancel context.CancelCauseFunc
	isRoot bool
	within []string // Options.Within relative to the target; "" is all of it

	plan      map[crypto.ID][]*blobPlan // by pack, for the current batch
	blobs     map[crypto.ID]*blobPlan   // by blob, to share a read among targets
	files     []*fileState              // files of the current batch
	dirs      []dirMeta
	links     [][2]string // hard links to make: existing path, new path
	inodes    map[[2]uint64]string
	created   map[string]bool // directories this restore made or checked
	fresh     map[string]bool // directories this restore made: empty before it
	uid, gid  int
	reading   chan struct{} // closed when the batch being read is done
	readers   sync.Pool     // *reader
	batchSize int           // files planned before they are read

	mu      sync.Mutex
	errors  atomic.Int64
	damaged atomic.Int64
	res     Result
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
	if !filepath.IsAbs(o.Target) {
		return Result{}, fmt.Errorf("restore location %q is not absolute", o.Target)
	}
	o.Target = filepath.Clean(o.Target)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rs := &restorer{r: r, o: o, ctx: ctx, cancel: cancel, isRoot: os.Geteuid() == 0, plan: map[crypto.ID][]*blobPlan{},
		blobs: map[crypto.ID]*blobPlan{}, inodes: map[[2]uint64]string{}, created: map[string]bool{"": true},
		fresh: map[string]bool{}, uid: os.Geteuid(), gid: os.Getegid(), batchSize: firstBatchFiles}
	for _, w := range o.Within {
		rel, err := filepath.Rel(o.Target, filepath.Clean(w))
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return Result{}, fmt.Errorf("restore: %s is not inside %s", w, o.Target)
		}
		if rel == "." {
			rel = ""
		}
		rs.within = append(rs.within, filepath.ToSlash(rel))
	}
	if len(o.Within) == 0 {
		rs.within = []string{""}
	}
	if o.DryRun {
		if fi, err := os.Stat(o.Target); err != nil || !fi.IsDir() {
			o.Target, rs.o.Target = "", o.Target // nothing there: everything is new
		}
	} else if err := os.MkdirAll(o.Target, 0o755); err != nil {
		return Result{}, fmt.Errorf("restore location: %w", err)
	}
	if o.Target != "" {
		fs, err := openRoot(o.Target)
		if err != nil {
			return Result{}, err
		}
		defer fs.close()
		rs.fs = fs
	} else {
		rs.fresh[""] = true
	}
	rootTree, err := rs.loadTree(job.Tree)
	if err != nil {
		return Result{}, fmt.Errorf("job %d: %w", job.Number, err)
	}
	err = rs.walk(rootTree, "", false)
	if err == nil && o.Delete && rs.place("") == inside {
		if sel, _ := rs.selected("", false); sel || len(o.Include) == 0 {
			rs.deleteExtra(rootTree, "", false)
		}
	}
	if err == nil {
		rs.startBatch()
	}
	rs.waitBatch()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the storage failed: stop, and say why
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		rs.res.Errors, rs.res.Damaged = int(rs.errors.Load()), int(rs.damaged.Load())
		return rs.res, err
	}
	if o.DryRun {
		rs.res.Errors, rs.res.Damaged = int(rs.errors.Load()), int(rs.damaged.Load())
		return rs.res, nil
	}
	for _, l := range rs.links {
		if err := rs.fs.remove(l[1]); err != nil {
			rs.fail(l[1], err)
			continue
		}
		if err := rs.fs.link(l[0], l[1]); err != nil {
			rs.fail(l[1], fmt.Errorf("hard link: %w", err))
		}
	}
	// Directories last, deepest first, so writing into them does not
	// change their times again.
	for i := len(rs.dirs) - 1; i >= 0; i-- {
		rs.setMeta(rs.dirs[i].rel, &rs.dirs[i].node)
	}
	rs.res.Errors, rs.res.Damaged = int(rs.errors.Load()), int(rs.damaged.Load())
	return rs.res, nil
}

// lookup finds a blob, looking in packs no index lists once if needed.
func (rs *restorer) lookup(t pack.BlobType, id crypto.ID) (index.Location, bool) {
	loc, ok := rs.r.Lookup(t, id)
	if !ok && rs.o.FindMissing != nil {
		rs.o.FindMissing()
		loc, ok = rs.r.Lookup(t, id)
	}
	return loc, ok
}

// loadTree reads a directory listing, looking in packs no index lists
// once if needed.
func (rs *restorer) loadTree(id crypto.ID) (*tree.Tree, error) {
	rs.lookup(pack.Tree, id)
	return rs.r.LoadTree(rs.ctx, id)
}

func (rs *restorer) abs(rel string) string {
	return filepath.Join(rs.o.Target, filepath.FromSlash(rel))
}

func (rs *restorer) fail(rel string, err error) {
	rs.errors.Add(1)
	if errors.Is(err, repo.ErrDamaged) {
		rs.damaged.Add(1)
	}
	if rs.o.Reporter != nil {
		rs.o.Reporter.Error(rs.abs(rel), err)
	}
}

// failOrWarn reports what the target's system or filesystem cannot hold
// (a link on Windows without the privilege, a fifo there) as a warning,
// like extended attributes; anything else fails the entry.
func (rs *restorer) failOrWarn(rel string, err error) {
	if errors.Is(err, errors.ErrUnsupported) {
		rs.warn(rel, err.Error())
		return
	}
	rs.fail(rel, err)
}

// fileDone counts a file as done and tells a FileReporter (--verbose).
// The bytes of a restored file were counted chunk by chunk.
func (rs *restorer) fileDone(rel, status string, size int64) {
	rs.o.Stats.FilesDone.Add(1)
	if status != "restored" {
		rs.o.Stats.BytesDone.Add(size)
	}
	if fr, ok := rs.o.Reporter.(progress.FileReporter); ok {
		fr.File(rs.abs(rel), status, size)
	}
}

func (rs *restorer) warn(rel, msg string) {
	if rs.o.Reporter != nil {
		rs.o.Reporter.Warning(rs.abs(rel), msg)
	}
}

// place tells where rel lies with respect to Options.Within.
func (rs *restorer) place(rel string) where {
	w := outside
	for _, in := range rs.within {
		switch {
		case in == "" || rel == in || strings.HasPrefix(rel, in+"/"):
			return inside
		case strings.HasPrefix(in, rel+"/"):
			w = leading
		}
	}
	return w
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
	for _, p := range rs.o.Include {
		if matchBelow(p, rel) {
			return false, true
		}
	}
	return false, false
}

// matchBelow reports whether pattern could match a path below directory
// dir: its leading components match dir's, or it has ** among them. A
// restore of one file of a huge job then reads the trees on its path
// only.
func matchBelow(pattern, dir string) bool {
	pc, dc := strings.Split(pattern, "/"), strings.Split(dir, "/")
	for i, d := range dc {
		if i >= len(pc) {
			return false
		}
		if strings.Contains(pc[i], "**") {
			return true
		}
		if ok, _ := doublestar.Match(pc[i], d); !ok {
			return false
		}
	}
	return len(pc) > len(dc)
}

func (rs *restorer) walk(t *tree.Tree, rel string, underInclude bool) error {
	for i := range t.Nodes {
		if err := rs.ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		if !tree.ValidName(n.Name) { // the decoder refuses these; never trust one layer alone
			rs.fail(path.Join(rel, "invalid-name"), fmt.Errorf("%w: refused the name %q", repo.ErrDamaged, n.Name))
			continue
		}
		crel := path.Join(rel, n.Name)
		place := rs.place(crel)
		if place == outside || place == leading && n.Type != tree.Dir {
			rs.res.Outside++
			rs.warn(crel, "not restored: outside what runup.yaml includes for this project today")
			continue
		}
		sel, descend := rs.selected(crel, underInclude)
		if n.Type == tree.Dir {
			if !descend {
				continue
			}
			sub, err := rs.loadTree(n.Subtree)
			if err != nil {
				rs.fail(crel, fmt.Errorf("directory listing unreadable, its content is not restored: %w", err))
				continue
			}
			if place == leading {
				// Above what is restored: made if missing (and then given
				// the job's metadata), never replaced or changed.
				if err := rs.ensureDir(crel, false); err != nil {
					rs.fail(crel, err)
					continue
				}
				if rs.fresh[crel] {
					rs.dirs = append(rs.dirs, dirMeta{crel, *n})
				}
			} else if sel {
				if err := rs.ensureDir(crel, true); err != nil {
					rs.fail(crel, err)
					continue
				}
				rs.dirs = append(rs.dirs, dirMeta{crel, *n})
				rs.res.Dirs++
			}
			if err := rs.walk(sub, crel, sel && len(rs.o.Include) > 0 || underInclude); err != nil {
				return err
			}
			if rs.o.Delete && (sel || place == inside) && place != leading {
				rs.deleteExtra(sub, crel, sel && len(rs.o.Include) > 0 || underInclude)
			}
			continue
		}
		if !sel {
			continue
		}
		if err := rs.ensureDir(rel, rs.place(rel) == inside); err != nil {
			rs.fail(crel, err)
			continue
		}
		rs.entry(crel, n)
		if len(rs.files) >= rs.batchSize {
			// Restore what is planned so far while planning more: memory
			// stays bounded by two batches, not by the job's size.
			rs.startBatch()
		}
	}
	return nil
}

// deleteExtra removes (or, in a dry run, names) what directory rel holds
// on disk that tree t does not: --delete. Entries the filters leave out of
// the restore are left alone, and so is anything kept.
func (rs *restorer) deleteExtra(t *tree.Tree, rel string, underInclude bool) {
	if rs.fs == nil || rs.fresh[rel] {
		return
	}
	names, err := rs.fs.readdir(rel)
	if err != nil {
		if !rs.o.DryRun {
			rs.fail(rel, fmt.Errorf("--delete: %w", err))
		}
		return
	}
	have := make(map[string]bool, len(t.Nodes))
	for _, n := range t.Nodes {
		have[n.Name] = true
	}
	for _, name := range names {
		crel := path.Join(rel, name)
		if have[name] || name == ".runup" || rs.kept(crel) || rs.place(crel) != inside {
			continue
		}
		if sel, _ := rs.selected(crel, underInclude); !sel {
			continue
		}
		rs.res.Deleted++
		if fr, ok := rs.o.Reporter.(progress.FileReporter); ok {
			fr.File(rs.abs(crel), "delete", 0)
		}
		if rs.o.DryRun {
			continue
		}
		if err := rs.fs.remove(crel); err != nil {
			rs.fail(crel, fmt.Errorf("--delete: %w", err))
		}
	}
}

// kept reports whether rel is, or holds, a path of Options.Keep.
func (rs *restorer) kept(rel string) bool {
	abs := rs.abs(rel)
	for _, k := range rs.o.Keep {
		if k == abs || strings.HasPrefix(k, abs+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// ensureDir makes rel (and its parents) a real directory. Inside what is
// restored, whatever else is in the way is removed, never followed; above
// it (replace false), a non-directory in the way is an error.
func (rs *restorer) ensureDir(rel string, replace bool) error {
	if rs.created[rel] {
		return nil
	}
	parent, _ := split(rel)
	if err := rs.ensureDir(parent, replace && rs.place(parent) == inside); err != nil {
		return err
	}
	if rs.o.DryRun {
		return rs.dryDir(rel, replace)
	}
	if !replace {
		st, ok, err := rs.fs.lstat(rel)
		if err != nil {
			return err
		}
		if ok && st.Mode&modeTypeMask != modeDir {
			return fmt.Errorf("%s: a %s is where a directory leads to what is restored; not replaced, nothing restored below it", rs.abs(rel), typeName(st.Mode))
		}
	}
	made, err := rs.fs.mkdir(rel)
	if err != nil {
		return err
	}
	if made {
		rs.fresh[rel] = true
	}
	rs.created[rel] = true
	return nil
}

// dryDir is ensureDir of a dry run: it only looks.
func (rs *restorer) dryDir(rel string, replace bool) error {
	rs.created[rel] = true
	if parent, _ := split(rel); rs.fs == nil || rs.fresh[parent] {
		rs.fresh[rel] = true
		return nil
	}
	st, ok, err := rs.fs.lstat(rel)
	if err != nil {
		return err
	}
	if ok && st.Mode&modeTypeMask != modeDir {
		if !replace {
			return fmt.Errorf("%s: a %s is where a directory leads to what is restored; not replaced, nothing restored below it", rs.abs(rel), typeName(st.Mode))
		}
		ok = false
	}
	if !ok {
		rs.fresh[rel] = true
	}
	return nil
}

// dryEntry is entry of a dry run: files are compared with what is on
// disk, nothing is written.
func (rs *restorer) dryEntry(rel string, n *tree.Node) {
	if n.Type != tree.File {
		rs.res.Others++
		return
	}
	rs.res.Files++
	locs, size, ok := rs.locate(rel, n)
	if !ok {
		return
	}
	if parent, _ := split(rel); rs.fs != nil && !rs.fresh[parent] {
		if f := rs.sameContent(rel, n, locs); f != nil {
			f.Close()
			rs.res.Skipped++
			rs.fileDone(rel, "unchanged", size)
			return
		}
	}
	rs.res.Bytes += size
	rs.fileDone(rel, "restore", size)
}

func (rs *restorer) entry(rel string, n *tree.Node) {
	if rs.o.DryRun {
		rs.dryEntry(rel, n)
		return
	}
	if n.Type != tree.Dir && n.Links > 1 {
		key := [2]uint64{n.Device, n.Inode}
		if first, ok := rs.inodes[key]; ok {
			rs.links = append(rs.links, [2]string{first, rel})
			return
		}
		rs.inodes[key] = rel
	}
	switch n.Type {
	case tree.File:
		rs.file(rel, n)
	case tree.Symlink:
		rs.res.Others++
		if err := rs.fs.remove(rel); err != nil {
			rs.fail(rel, err)
			return
		}
		if err := rs.fs.symlink(n.Target, rel); err != nil {
			rs.failOrWarn(rel, err)
			return
		}
		rs.setMeta(rel, n)
	case tree.Fifo, tree.CharDev, tree.BlockDev, tree.Socket:
		rs.res.Others++
		if n.Type == tree.Socket {
			return // a socket belongs to a running program; nothing to restore
		}
		if (n.Type == tree.CharDev || n.Type == tree.BlockDev) && !rs.isRoot {
			rs.warn(rel, "device not restored: only root can create devices")
			return
		}
		if err := rs.fs.remove(rel); err != nil {
			rs.fail(rel, err)
			return
		}
		mode := uint32(modeFifo)
		switch n.Type {
		case tree.CharDev:
			mode = modeChar
		case tree.BlockDev:
			mode = modeBlock
		}
		if err := rs.fs.mknod(rel, mode|0o600, n.Rdev); err != nil {
			rs.failOrWarn(rel, err)
			return
		}
		rs.setMeta(rel, n)
	}
}

// locate finds where each chunk of a file is stored, and checks that they
// add up to its size; a damaged file is reported and ok is false.
func (rs *restorer) locate(rel string, n *tree.Node) (locs []index.Location, size int64, ok bool) {
	locs = make([]index.Location, len(n.Content))
	for i, id := range n.Content {
		loc, found := rs.lookup(pack.Data, id)
		if !found {
			rs.fail(rel, fmt.Errorf("%w: chunk %v is missing from the repository; file not restored", repo.ErrDamaged, id.Short()))
			return nil, 0, false
		}
		locs[i] = loc
		size += int64(loc.RawLen)
	}
	if size != int64(n.Size) {
		rs.fail(rel, fmt.Errorf("%w: chunks add up to %d bytes, the file had %d", repo.ErrDamaged, size, n.Size))
		return nil, 0, false
	}
	return locs, size, true
}

func (rs *restorer) file(rel string, n *tree.Node) {
	rs.res.Files++
	rs.o.Stats.Files.Add(1)
	locs, size, ok := rs.locate(rel, n)
	if !ok {
		return
	}
	if parent, _ := split(rel); !rs.fresh[parent] {
		if f := rs.sameContent(rel, n, locs); f != nil {
			rs.res.Skipped++
			rs.o.Stats.FilesSkipped.Add(1)
			rs.applyMeta(rel, rs.fs.fileMeta(rel, f), n)
			f.Close()
			rs.fileDone(rel, "unchanged", size)
			return
		}
		if err := rs.fs.remove(rel); err != nil {
			rs.fail(rel, err)
			return
		}
	}
	rs.res.Bytes += size
	rs.o.Stats.BytesTotal.Add(size)
	st := &fileState{rel: rel, node: n, size: size, remaining: len(n.Content)}
	if len(n.Content) == 0 {
		fd, err := rs.fs.create(rel)
		if err != nil {
			rs.fail(rel, err)
			return
		}
		rs.applyMeta(rel, rs.fs.handleMeta(rel, fd), n)
		closeFD(fd)
		rs.fileDone(rel, "restored", 0)
		return
	}
	rs.files = append(rs.files, st)
	var off int64
	for _, loc := range locs {
		bp := rs.blobs[loc.ID]
		if bp == nil {
			bp = &blobPlan{loc: loc}
			rs.blobs[loc.ID] = bp
			rs.plan[loc.PackID] = append(rs.plan[loc.PackID], bp)
		}
		bp.targets = append(bp.targets, target{file: st, offset: off})
		off += int64(loc.RawLen)
	}
}

// sameContent returns the existing file, open, if it already holds exactly
// the job's content, checked chunk by chunk against the chunk IDs.
func (rs *restorer) sameContent(rel string, n *tree.Node, locs []index.Location) *os.File {
	f, err := rs.fs.openRead(rel)
	if err != nil {
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(n.Size) {
		f.Close()
		return nil
	}
	key := rs.r.Key()
	var buf []byte
	for _, loc := range locs {
		if cap(buf) < int(loc.RawLen) {
			buf = make([]byte, loc.RawLen)
		}
		b := buf[:loc.RawLen]
		if _, err := io.ReadFull(f, b); err != nil || key.Hash(b) != loc.ID {
			f.Close()
			return nil
		}
	}
	return f
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
	plan, files := rs.plan, rs.files
	rs.plan = map[crypto.ID][]*blobPlan{}
	rs.blobs = map[crypto.ID]*blobPlan{}
	rs.files = nil
	rs.batchSize = min(2*rs.batchSize, batchFiles)
	if len(plan) == 0 {
		return
	}
	done := make(chan struct{})
	rs.reading = done
	go func() {
		defer close(done)
		rs.readPacks(plan)
		rs.removeUnfinished(files)
	}()
}

// removeUnfinished removes the files of a batch whose content did not all
// arrive (the restore was interrupted, or the storage failed): a file is
// never left looking restored when it is not.
func (rs *restorer) removeUnfinished(files []*fileState) {
	for _, st := range files {
		rs.mu.Lock()
		unfinished := st.remaining > 0
		rs.mu.Unlock()
		if unfinished && st.created {
			_ = rs.fs.remove(st.rel)
		}
	}
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
				if rs.ctx.Err() == nil {
					w.buf = rs.readSpan(w.dec, sp, w.buf)
				}
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
// read buffer, returned for the next span. A pack that is missing or
// shorter than the index says is damage, reported for each file that
// needed it; any other failure to read is the storage's, and ends the
// restore at once rather than fail every file in turn.
func (rs *restorer) readSpan(dec *repo.Decoder, sp span, buf []byte) []byte {
	h := backend.Handle{Type: backend.Data, Name: sp.pack.String()}
	first, last := sp.blobs[0].loc, sp.blobs[len(sp.blobs)-1].loc
	n := int64(last.Offset) + int64(last.Length) - int64(first.Offset)
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
	switch {
	case loadErr == nil:
	case errors.Is(loadErr, backend.ErrNotExist) || errors.Is(loadErr, backend.ErrRange):
		loadErr = fmt.Errorf("%w: pack %v: %v", repo.ErrDamaged, sp.pack.Short(), loadErr)
	default:
		if rs.ctx.Err() == nil {
			rs.cancel(fmt.Errorf("reading the repository failed, restore stopped (files not restored completely were removed): %w", loadErr))
		}
		return buf
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
	for _, t := range bp.targets {
		st := t.file
		werr := err
		if werr == nil {
			werr = rs.write(st, plain, t.offset)
		}
		if werr == nil {
			rs.o.Stats.BytesDone.Add(int64(len(plain)))
		}
		rs.mu.Lock()
		first := werr != nil && !st.failed
		if werr != nil {
			st.failed = true
		}
		st.remaining--
		done, failed := st.remaining == 0, st.failed
		rs.mu.Unlock()
		if first {
			rs.fail(st.rel, fmt.Errorf("content not restored correctly, file removed: %w", werr))
		}
		switch {
		case done && failed:
			// Never leave a file with the job's size that does not hold its
			// content: a later backup would take it for unchanged.
			if st.created {
				_ = rs.fs.remove(st.rel)
			}
		case done && !st.metaDone:
			rs.setMeta(st.rel, st.node)
			rs.fileDone(st.rel, "restored", st.size)
		case done:
			rs.fileDone(st.rel, "restored", st.size)
		}
	}
}

// holeBlock is the granularity of holes: runs of zeros this long, aligned
// in the file, are not written, so a sparse file restores sparse.
const holeBlock = 4096

// open creates the file on first use, pre-sized so that chunks land at
// their offsets in any order and zeros are never written (holes); whole
// means the one chunk about to be written fills it, without holes.
func (rs *restorer) open(st *fileState, whole bool) (handle, error) {
	st.openMu.Lock()
	defer st.openMu.Unlock()
	if st.created {
		return rs.fs.openWrite(st.rel)
	}
	fd, err := rs.fs.create(st.rel)
	if err != nil {
		return noHandle, err
	}
	st.created = true
	if !whole {
		if err := ftruncate(fd, st.size); err != nil {
			closeFD(fd)
			return noHandle, err
		}
	}
	return fd, nil
}

// write puts one verified chunk into its file, leaving aligned blocks of
// zeros unwritten. The file of a single chunk (most files) gets its
// metadata through the same descriptor before it is closed, which spares
// opening it again.
func (rs *restorer) write(st *fileState, plain []byte, off int64) error {
	single := len(st.node.Content) == 1
	zero := isZero(plain)
	sparse := !zero && hasZeroBlock(plain, off)
	fd, err := rs.open(st, single && !zero && !sparse)
	if err != nil {
		return err
	}
	switch {
	case zero:
	case sparse:
		err = writeSparse(fd, plain, off)
	default:
		err = pwriteAll(fd, plain, off)
	}
	if err == nil {
		rs.o.Stats.BytesWritten.Add(int64(len(plain)))
		if single {
			rs.applyMeta(st.rel, rs.fs.handleMeta(st.rel, fd), st.node)
			st.metaDone = true
		}
	}
	if cerr := closeFD(fd); err == nil {
		err = cerr
	}
	return err
}

// blocks calls fn for b cut at holeBlock boundaries of the file, where b
// starts at file offset off.
func blocks(b []byte, off int64, fn func(blk []byte, at int64) bool) {
	for len(b) > 0 {
		n := int(holeBlock - off%holeBlock)
		if n > len(b) {
			n = len(b)
		}
		if !fn(b[:n], off) {
			return
		}
		b, off = b[n:], off+int64(n)
	}
}

// hasZeroBlock reports whether b holds a whole aligned block of zeros.
func hasZeroBlock(b []byte, off int64) bool {
	found := false
	blocks(b, off, func(blk []byte, _ int64) bool {
		found = len(blk) == holeBlock && isZero(blk)
		return !found
	})
	return found
}

// writeSparse writes b at off but for its whole aligned blocks of zeros.
func writeSparse(fd handle, b []byte, off int64) error {
	var run []byte
	var runAt int64
	var err error
	flush := func() {
		if len(run) > 0 && err == nil {
			err = pwriteAll(fd, run, runAt)
		}
		run = nil
	}
	blocks(b, off, func(blk []byte, at int64) bool {
		if len(blk) == holeBlock && isZero(blk) {
			flush()
			return err == nil
		}
		if run == nil {
			runAt = at
			run = blk
		} else {
			run = run[:len(run)+len(blk)] // blk follows run in b
		}
		return true
	})
	flush()
	return err
}

// setMeta applies a restored entry's owner, mode, extended attributes and
// times, through a descriptor of the entry itself.
func (rs *restorer) setMeta(rel string, n *tree.Node) {
	if n.Type == tree.Symlink {
		owner := rs.isRoot && (int(n.UID) != rs.uid || int(n.GID) != rs.gid)
		for _, err := range rs.fs.linkMeta(rel, n, owner) {
			rs.warn(rel, err.Error())
		}
		return
	}
	m, err := rs.fs.openMeta(rel, n.Type)
	if err != nil {
		rs.warn(rel, fmt.Sprintf("metadata not restored: %v", err))
		return
	}
	rs.applyMeta(rel, m, n)
	m.close()
}

// applyMeta sets owner (as root), mode, extended attributes and times;
// times last, since the others change the ctime and some the mtime.
func (rs *restorer) applyMeta(rel string, m metaTarget, n *tree.Node) {
	if rs.isRoot && (int(n.UID) != rs.uid || int(n.GID) != rs.gid) {
		if err := m.chown(int(n.UID), int(n.GID)); err != nil {
			rs.warn(rel, fmt.Sprintf("owner not restored: %v", err))
		}
	}
	if err := m.chmod(n.Mode & 0o7777); err != nil {
		rs.warn(rel, fmt.Sprintf("mode not restored: %v", err))
	}
	for _, x := range n.XAttrs {
		if err := m.setxattr(x.Name, x.Value); err != nil && !errors.Is(err, errNotSupported) {
			rs.warn(rel, fmt.Sprintf("extended attribute %s not restored: %v", x.Name, err))
		}
	}
	if err := m.utimes(n.MTime); err != nil {
		rs.warn(rel, fmt.Sprintf("times not restored: %v", err))
	}
}
