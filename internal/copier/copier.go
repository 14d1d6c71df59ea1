// Package copier copies jobs from one repository to another.
//
// Blob IDs are keyed hashes, different in every repository, so a copy is a
// translation: each file's chunks are read from the source, verified,
// hashed with the target's key and stored there unless the target has them
// (sealed with the target's keys); each directory is encoded again with the
// translated IDs. The chunks keep the source's boundaries.
//
// A copy costs what changed, like a backup: a job copied before (its
// Origin in the target says which) is the hint, and a directory whose
// source tree is the hint's is the hint's translated tree, unread. Files
// whose chunks are the hint file's reuse its translation.
//
// The job record is written last, so an interrupted copy leaves no job,
// and the next one reuses every chunk already stored.
package copier

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// Stats count a copy's work.
type Stats struct {
	Jobs        atomic.Int64
	Dirs        atomic.Int64 // directories translated (not reused from the hint)
	BlobsRead   atomic.Int64 // chunks read from the source
	BytesRead   atomic.Int64
	BlobsAdded  atomic.Int64 // stored in the target
	BytesAdded  atomic.Int64
	DirsReused  atomic.Int64 // unchanged since the hint
	FilesReused atomic.Int64
}

// Hint is a job copied before: its tree in the source and in the target.
type Hint struct {
	Src, Dst crypto.ID
}

// Options tune a copy.
type Options struct {
	// Workers is how many packs of the source are read at once (0: a
	// default for local storage).
	Workers int
	Stats   *Stats
}

// Missing lists the source's jobs that the target lacks, oldest first.
func Missing(src, dst []*repo.Job, srcID, dstID string) []*repo.Job {
	have := map[repo.Origin]bool{}
	for _, j := range dst {
		have[j.OriginIn(dstID)] = true
	}
	var out []*repo.Job
	for _, j := range src {
		if !have[j.OriginIn(srcID)] {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b *repo.Job) int { return a.Number - b.Number })
	return out
}

// FindHint picks the copy of j's parent in the target, or else the newest
// earlier job of j's project and host that the target holds a copy of.
func FindHint(j *repo.Job, src, dst []*repo.Job, srcID, dstID string) (Hint, bool) {
	copies := map[repo.Origin]*repo.Job{}
	for _, d := range dst {
		copies[d.OriginIn(dstID)] = d
	}
	var best *repo.Job
	for _, s := range src {
		if s.Number >= j.Number || s.Project != j.Project {
			continue
		}
		if _, ok := copies[s.OriginIn(srcID)]; !ok {
			continue
		}
		if s.Number == j.Parent {
			best = s
			break
		}
		if s.Host == j.Host && (best == nil || s.Number > best.Number) {
			best = s
		}
	}
	if best == nil {
		return Hint{}, false
	}
	return Hint{Src: best.Tree, Dst: copies[best.OriginIn(srcID)].Tree}, true
}

// Copy copies job j from src into dst and returns the new job, numbered
// by dst. The caller holds locks on both and loaded both indexes.
func Copy(ctx context.Context, src, dst *repo.Repository, j *repo.Job, hint *Hint, o Options) (*repo.Job, error) {
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0) + 1
	}
	c := &copier{src: src, dst: dst, o: o, ids: map[crypto.ID]crypto.ID{}}
	var h Hint
	if hint != nil {
		h = *hint
	}
	root, err := c.tree(ctx, j.Tree, h.Src, h.Dst)
	if err != nil {
		return nil, fmt.Errorf("copy job %d: %w", j.Number, err)
	}
	if _, err := dst.Flush(ctx); err != nil {
		return nil, fmt.Errorf("copy job %d: %w", j.Number, err)
	}
	origin := j.OriginIn(src.Config().ID)
	nj := &repo.Job{Project: j.Project, Time: j.Time, Host: j.Host, Username: j.Username, Base: j.Base, InContext: j.InContext,
		Paths: slices.Clone(j.Paths), Tree: root, Tags: slices.Clone(j.Tags), Incomplete: j.Incomplete, Program: j.Program,
		Summary: j.Summary, Origin: &origin}
	if err := dst.SaveJob(ctx, nj); err != nil {
		return nil, fmt.Errorf("copy job %d: %w", j.Number, err)
	}
	o.Stats.Jobs.Add(1)
	return nj, nil
}

type copier struct {
	src, dst *repo.Repository
	o        Options

	mu sync.Mutex
	// ids translates source chunk IDs to the target's, within one job:
	// a chunk many files share is read once.
	ids map[crypto.ID]crypto.ID
	// decoders outlive a directory: the group a decoder holds is often
	// the one the next directory starts with, and its buffers are reused.
	decoders sync.Pool
}

// maxIDs bounds the translation memo (64 bytes an entry).
const maxIDs = 1 << 20

// tree translates the source tree id; hintSrc and hintDst are the trees at
// the same place in the hint job (zero: none).
func (c *copier) tree(ctx context.Context, id, hintSrc, hintDst crypto.ID) (crypto.ID, error) {
	if !hintSrc.IsZero() && id == hintSrc && !hintDst.IsZero() && c.dst.Has(pack.Tree, hintDst) {
		c.o.Stats.DirsReused.Add(1)
		return hintDst, nil
	}
	t, err := c.src.LoadTree(ctx, id)
	if err != nil {
		return crypto.ID{}, err
	}
	var hs, hd *tree.Tree
	if !hintSrc.IsZero() && !hintDst.IsZero() {
		// A hint that cannot be read costs speed, not correctness.
		if hs, err = c.src.LoadTree(ctx, hintSrc); err == nil {
			if hd, err = c.dst.LoadTree(ctx, hintDst); err != nil {
				hs = nil
			}
		}
	}
	hintNode := func(name string) (*tree.Node, *tree.Node) {
		if hs == nil {
			return nil, nil
		}
		a, _ := hs.Find(name)
		b, _ := hd.Find(name)
		if a == nil || b == nil || a.Type != b.Type {
			return nil, nil
		}
		return a, b
	}
	out := &tree.Tree{Nodes: slices.Clone(t.Nodes)}
	var need []crypto.ID
	for i := range out.Nodes {
		n := &out.Nodes[i]
		switch n.Type {
		case tree.Dir:
			var hsub, dsub crypto.ID
			if a, b := hintNode(n.Name); a != nil && a.Type == tree.Dir {
				hsub, dsub = a.Subtree, b.Subtree
			}
			sub, err := c.tree(ctx, n.Subtree, hsub, dsub)
			if err != nil {
				return crypto.ID{}, err
			}
			n.Subtree = sub
		case tree.File:
			if a, b := hintNode(n.Name); a != nil && slices.Equal(a.Content, n.Content) && len(b.Content) == len(a.Content) {
				n.Content = slices.Clone(b.Content)
				c.o.Stats.FilesReused.Add(1)
				continue
			}
			n.Content = slices.Clone(n.Content)
			c.mu.Lock()
			for _, id := range n.Content {
				if _, ok := c.ids[id]; !ok {
					need = append(need, id)
				}
			}
			c.mu.Unlock()
		}
	}
	if err := c.chunks(ctx, need); err != nil {
		return crypto.ID{}, err
	}
	c.mu.Lock()
	for i := range out.Nodes {
		n := &out.Nodes[i]
		if n.Type != tree.File {
			continue
		}
		for k, id := range n.Content {
			if d, ok := c.ids[id]; ok {
				n.Content[k] = d
			}
		}
	}
	if len(c.ids) > maxIDs {
		clear(c.ids)
	}
	c.mu.Unlock()
	newID, st, err := c.dst.SaveTree(ctx, out)
	if err != nil {
		return crypto.ID{}, err
	}
	c.o.Stats.Dirs.Add(1)
	if st.Added {
		c.o.Stats.BlobsAdded.Add(1)
		c.o.Stats.BytesAdded.Add(int64(st.Stored))
	}
	return newID, nil
}

// chunks translates the source chunks ids (one directory's), reading them
// in pack order, one pack per worker, so that a group is decoded once.
func (c *copier) chunks(ctx context.Context, ids []crypto.ID) error {
	if len(ids) == 0 {
		return nil
	}
	slices.SortFunc(ids, func(a, b crypto.ID) int { return cmp.Compare(string(a[:]), string(b[:])) })
	ids = slices.Compact(ids)
	locs := make([]index.Location, 0, len(ids))
	for _, id := range ids {
		loc, ok := c.src.Lookup(pack.Data, id)
		if !ok {
			return fmt.Errorf("%w: data blob %v is not in the source's index", repo.ErrDamaged, id.Short())
		}
		locs = append(locs, loc)
	}
	slices.SortFunc(locs, func(a, b index.Location) int {
		if x := cmp.Compare(string(a.PackID[:]), string(b.PackID[:])); x != 0 {
			return x
		}
		return cmp.Compare(a.Offset, b.Offset)
	})
	var batches [][]index.Location
	for i := 0; i < len(locs); {
		j := i + 1
		for j < len(locs) && locs[j].PackID == locs[i].PackID {
			j++
		}
		batches = append(batches, locs[i:j])
		i = j
	}
	// The workers share the copy's context, not one of their own: the
	// packs they fill are written in the background after this returns.
	var (
		mu       sync.Mutex
		firstErr error
	)
	failed := make(chan struct{})
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			close(failed)
		}
	}
	work := make(chan []index.Location)
	var wg sync.WaitGroup
	for range min(c.o.Workers, len(batches)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, _ := c.decoders.Get().(*repo.Decoder)
			if d == nil {
				d = c.src.NewDecoder()
			}
			defer c.decoders.Put(d)
			for batch := range work {
				for _, loc := range batch {
					select {
					case <-failed:
						continue
					default:
					}
					if err := c.chunk(ctx, d, loc.ID); err != nil {
						fail(err)
					}
				}
			}
		}()
	}
feed:
	for _, b := range batches {
		select {
		case work <- b:
		case <-failed:
			break feed
		case <-ctx.Done():
			fail(context.Cause(ctx))
			break feed
		}
	}
	close(work)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

func (c *copier) chunk(ctx context.Context, d *repo.Decoder, id crypto.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := d.Load(ctx, pack.Data, id)
	if err != nil {
		return err
	}
	c.o.Stats.BlobsRead.Add(1)
	c.o.Stats.BytesRead.Add(int64(len(data)))
	nid := c.dst.Key().Hash(data)
	if !c.dst.Known(pack.Data, nid) {
		st, err := c.dst.SaveBlob(ctx, pack.Data, nid, data)
		if err != nil {
			return err
		}
		if st.Added {
			c.o.Stats.BlobsAdded.Add(1)
			c.o.Stats.BytesAdded.Add(int64(st.Stored))
		}
	}
	c.mu.Lock()
	c.ids[id] = nid
	c.mu.Unlock()
	return nil
}
