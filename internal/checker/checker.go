// Package checker verifies a repository and reports damage in terms a user
// can act on: which jobs and which files are affected, and which are fine.
//
// The structure check reads only small things: index files, pack headers,
// job records and trees. --read-data also reads every pack (or a subset)
// and verifies each blob against its ID.
package checker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
	"github.com/runup/runup/internal/usage"
)

// Subset selects packs for --read-data-subset: N of T (1-based), or a
// fraction of all packs.
type Subset struct {
	N, T     int
	Fraction float64
}

// ParseSubset reads "n/t" or "x%".
func ParseSubset(s string) (Subset, error) {
	var sub Subset
	if strings.HasSuffix(s, "%") {
		var pct float64
		if _, err := fmt.Sscanf(s, "%g%%", &pct); err != nil || pct <= 0 || pct > 100 {
			return sub, fmt.Errorf("--read-data-subset %q: want a percentage in (0, 100]", s)
		}
		sub.Fraction = pct / 100
		return sub, nil
	}
	if _, err := fmt.Sscanf(s, "%d/%d", &sub.N, &sub.T); err != nil || sub.T < 1 || sub.N < 1 || sub.N > sub.T {
		return sub, fmt.Errorf("--read-data-subset %q: want n/t with 1 ≤ n ≤ t, or a percentage", s)
	}
	return sub, nil
}

// Options choose what to check.
type Options struct {
	ReadData bool
	Subset   *Subset // with ReadData: only these packs
	// Progress, if set, is called as packs are read.
	Progress func(done, total int)
}

// Problem is one thing found wrong.
type Problem struct {
	Kind string `json:"kind"` // index, pack, job, tree, blob
	What string `json:"what"`
	Err  string `json:"error"`
}

// Affected is a file (or directory) that cannot be restored as it was.
type Affected struct {
	Job  int    `json:"job"`
	Path string `json:"path"`
	Why  string `json:"why"`
}

// Report is the outcome of a check.
type Report struct {
	Problems          []Problem  `json:"problems"`
	Affected          []Affected `json:"affected"`
	DamagedJobs       []int      `json:"damaged_jobs"`
	GoodJobs          []int      `json:"good_jobs"`
	UnreferencedPacks int        `json:"unreferenced_packs"`
	UnindexedPacks    int        `json:"unindexed_packs"`
	Packs             int        `json:"packs"`
	PacksRead         int        `json:"packs_read"`
	Blobs             int        `json:"blobs"`
}

// MarshalJSON writes empty lists as [], never null.
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	c := plain(*r)
	c.Problems, c.Affected = nonNil(c.Problems), nonNil(c.Affected)
	c.DamagedJobs, c.GoodJobs = nonNil(c.DamagedJobs), nonNil(c.GoodJobs)
	return json.Marshal(c)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// OK reports whether nothing is wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 && len(r.Affected) == 0 }

type checker struct {
	r       *repo.Repository
	rep     Report
	badPack map[crypto.ID]string // packs that cannot be read, and why
	badBlob map[index.Key]string // blobs found damaged by --read-data
	clean   map[crypto.ID]bool   // subtrees already walked without damage
	used    *usage.Keys          // blobs the jobs use, sorted on disk
}

func (c *checker) problem(kind, what string, err error) {
	c.rep.Problems = append(c.rep.Problems, Problem{Kind: kind, What: what, Err: err.Error()})
}

// sortBudget is the memory of the sort of used blobs.
const sortBudget = 4 << 20

// Check verifies r, whose index must not be loaded yet. Its memory grows
// with the number of packs, not of blobs: index files are read and compared
// with the pack headers one at a time, lookups go to the index store on
// disk, and the blobs jobs use are sorted on disk.
func Check(ctx context.Context, r *repo.Repository, o Options) (*Report, error) {
	c := &checker{r: r, badPack: map[crypto.ID]string{}, badBlob: map[index.Key]string{}, clean: map[crypto.ID]bool{}}
	be := r.Backend()

	packSizes := map[crypto.ID]int64{}
	if err := be.List(ctx, backend.Data, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err != nil {
			c.problem("pack", fi.Name, errors.New("file name is not a pack ID"))
			return nil
		}
		packSizes[id] = fi.Size
		return nil
	}); err != nil {
		return nil, err
	}
	c.rep.Packs = len(packSizes)

	// Index files, one by one, so that a damaged one is named; every pack
	// they list exists and its header agrees with them.
	var names []string
	if err := be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	sort.Strings(names)
	indexed := map[crypto.ID]bool{}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		packs, err := r.LoadIndexFile(ctx, name)
		if err != nil {
			c.problem("index", "index/"+name, fmt.Errorf("%w (run 'runup repair index')", err))
			continue
		}
		for _, p := range packs {
			if indexed[p.ID] {
				continue // listed twice: checked once
			}
			indexed[p.ID] = true
			size, ok := packSizes[p.ID]
			if !ok {
				c.badPack[p.ID] = "pack file is missing"
				c.problem("pack", p.ID.String(), errors.New("pack file is missing (its data is lost unless another pack holds it)"))
				continue
			}
			hdr, err := r.ReadPackHeader(ctx, p.ID, size)
			if err != nil {
				c.badPack[p.ID] = "pack header damaged"
				c.problem("pack", p.ID.String(), err)
				continue
			}
			if err := sameBlobs(p.Blobs, hdr); err != nil {
				c.badPack[p.ID] = "pack does not match the index"
				c.problem("pack", p.ID.String(), err)
			}
			c.rep.Blobs += len(hdr)
		}
	}
	for id := range packSizes {
		if !indexed[id] {
			c.rep.UnindexedPacks++
		}
	}
	// Lookups from here on: the index store, brought up to date (damaged
	// index files were reported above).
	var store *index.Store
	if r.IndexDirSet() {
		var err error
		if store, _, err = r.CompactIndex(ctx); err != nil {
			return nil, err
		}
	} else if _, err := r.LoadIndex(ctx); err != nil {
		return nil, err
	}

	if o.ReadData {
		ids := make([]crypto.ID, 0, len(indexed))
		for id := range indexed {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b crypto.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
		c.readData(ctx, ids, packSizes, o)
	}

	if err := c.checkKeys(ctx); err != nil {
		return nil, err
	}

	// Jobs and their trees. Numbers are never reused and only forget
	// removes jobs (leaving a tombstone), so a number without either is a
	// job record that went missing; the highest number this machine saw
	// catches the newest.
	missing, forged, err := r.MissingJobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range missing {
		c.problem("job", fmt.Sprint(n), errors.New("job record is missing without a tombstone (deleted, lost, or the repository was rolled back)"))
		c.rep.DamagedJobs = append(c.rep.DamagedJobs, n)
	}
	for _, err := range forged {
		c.problem("job", "tombstone", err)
	}
	nums, err := r.JobNumbers(ctx)
	if err != nil {
		return nil, err
	}
	if store != nil {
		tmp, err := os.MkdirTemp(r.StoreDir(), "check-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		c.used = usage.NewKeys(tmp, sortBudget)
		defer c.used.Close()
	}
	for _, n := range nums {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j, bad, err := r.LoadJobRevisions(ctx, n)
		for _, b := range bad {
			c.problem("job", fmt.Sprint(n), b)
		}
		if err != nil {
			if errors.Is(err, repo.ErrNoJob) {
				continue
			}
			c.rep.DamagedJobs = append(c.rep.DamagedJobs, n)
			continue
		}
		before := len(c.rep.Affected)
		if err := c.walk(ctx, j, j.Tree, ""); err != nil {
			return nil, err
		}
		if len(c.rep.Affected) > before {
			c.rep.DamagedJobs = append(c.rep.DamagedJobs, n)
		} else {
			c.rep.GoodJobs = append(c.rep.GoodJobs, n)
		}
	}
	if store != nil {
		// Packs none of whose blobs a job uses: prune's to remove.
		usedPack := map[crypto.ID]bool{}
		if err := usage.Join(store, c.used, r.Config().Version >= 3, func(copies []index.Entry, used bool) {
			if used {
				for _, e := range copies {
					if id, err := store.PackID(e.Pack); err == nil {
						usedPack[id] = true
					}
				}
			}
		}); err != nil {
			return nil, err
		}
		for id := range indexed {
			if !usedPack[id] {
				c.rep.UnreferencedPacks++
			}
		}
	}
	return &c.rep, nil
}

// checkKeys verifies every key file against its name, the hash of its
// bytes: the fields a password does not authenticate are covered too.
func (c *checker) checkKeys(ctx context.Context) error {
	return c.r.Backend().List(ctx, backend.Keys, func(fi backend.FileInfo) error {
		b, err := backend.LoadAll(ctx, c.r.Backend(), backend.Handle{Type: backend.Keys, Name: fi.Name})
		if err == nil && repo.KeyFileName(b) != fi.Name {
			err = errors.New("content does not match its name (damaged)")
		}
		if err != nil {
			c.problem("key", "keys/"+fi.Name, err)
		}
		return nil
	})
}

func sameBlobs(idx, hdr []pack.Blob) error {
	byID := map[crypto.ID]pack.Blob{}
	for _, b := range hdr {
		byID[b.ID] = b
	}
	for _, b := range idx {
		h, ok := byID[b.ID]
		if !ok {
			return fmt.Errorf("index lists blob %v that the pack header does not", b.ID.Short())
		}
		if h != b {
			return fmt.Errorf("blob %v: index says %+v, pack header %+v", b.ID.Short(), b, h)
		}
	}
	return nil
}

func (c *checker) selected(id crypto.ID, o Options, rnd *rand.Rand) bool {
	if o.Subset == nil {
		return true
	}
	if o.Subset.T > 0 {
		return int(id[0])%o.Subset.T == o.Subset.N-1
	}
	return rnd.Float64() < o.Subset.Fraction
}

// readData reads whole packs: the pack's name must be the hash of its
// bytes, and every blob must open and hash to its ID.
func (c *checker) readData(ctx context.Context, ids []crypto.ID, sizes map[crypto.ID]int64, o Options) {
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var todo []crypto.ID
	for _, id := range ids {
		if _, bad := c.badPack[id]; !bad && c.selected(id, o, rnd) {
			todo = append(todo, id)
		}
	}
	key := c.r.Key()
	for i, id := range todo {
		if ctx.Err() != nil {
			return
		}
		if o.Progress != nil {
			o.Progress(i, len(todo))
		}
		c.rep.PacksRead++
		data, err := c.r.Backend().Load(ctx, backend.Handle{Type: backend.Data, Name: id.String()}, 0, sizes[id])
		if err != nil {
			c.problem("pack", id.String(), err)
			c.badPack[id] = "pack unreadable"
			continue
		}
		if key.Hash(data) != id {
			c.problem("pack", id.String(), errors.New("content does not match its name (damaged)"))
		}
		blobs, err := pack.ReadHeader(key, int64(len(data)), data, func(off, n int64) ([]byte, error) { return data[off : off+n], nil })
		if err != nil {
			c.problem("pack", id.String(), err)
			c.badPack[id] = "pack header damaged"
			continue
		}
		dec := c.r.NewDecoder() // header order: a group's members come together
		for _, b := range blobs {
			loc := index.Location{PackID: id, Blob: b}
			if _, err := dec.Decode(loc, data[b.Offset:b.Offset+b.Length]); err != nil {
				c.problem("blob", b.ID.String(), err)
				if cur, ok := c.r.Lookup(b.Type, b.ID); ok && cur.PackID == id {
					c.badBlob[index.Key{ID: b.ID, Type: b.Type}] = "chunk damaged"
				}
			}
		}
	}
	if o.Progress != nil {
		o.Progress(len(todo), len(todo))
	}
}

// why tells whether a blob cannot be read, and why: its copy is in a bad
// pack, it was found damaged, or it is missing.
func (c *checker) why(t pack.BlobType, id crypto.ID) (string, bool) {
	if why, bad := c.badBlob[index.Key{ID: id, Type: t}]; bad {
		return why, true
	}
	loc, ok := c.r.Lookup(t, id)
	if !ok {
		return "chunk missing from the index", true
	}
	if why, bad := c.badPack[loc.PackID]; bad {
		return why, true
	}
	return "", false
}

// walk follows a job's trees, recording every blob it uses and every entry
// that depends on a missing or damaged one.
func (c *checker) walk(ctx context.Context, j *repo.Job, id crypto.ID, dir string) error {
	if c.clean[id] {
		return nil // shared with an earlier job and fine there: fine here
	}
	before := len(c.rep.Affected)
	defer func() {
		if len(c.rep.Affected) == before {
			c.clean[id] = true
		}
	}()
	if err := c.addUsed(pack.Tree, id); err != nil {
		return err
	}
	t, err := c.loadTree(ctx, id)
	if err != nil {
		where := dir
		if where == "" {
			where = "/"
		}
		c.rep.Affected = append(c.rep.Affected, Affected{Job: j.Number, Path: where, Why: "directory listing: " + err.Error()})
		return nil
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := path.Join(dir, n.Name)
		switch n.Type {
		case tree.Dir:
			if err := c.walk(ctx, j, n.Subtree, p); err != nil {
				return err
			}
		case tree.File:
			reported := false
			for _, b := range n.Content {
				if err := c.addUsed(pack.Data, b); err != nil {
					return err
				}
				if why, bad := c.why(pack.Data, b); bad && !reported {
					c.rep.Affected = append(c.rep.Affected, Affected{Job: j.Number, Path: p, Why: why})
					reported = true
				}
			}
		}
	}
	return nil
}

func (c *checker) addUsed(t pack.BlobType, id crypto.ID) error {
	if c.used == nil {
		return nil
	}
	return c.used.Add(t, id)
}

func (c *checker) loadTree(ctx context.Context, id crypto.ID) (*tree.Tree, error) {
	if why, bad := c.why(pack.Tree, id); bad && why != "chunk missing from the index" {
		return nil, errors.New(why)
	}
	return c.r.LoadTree(ctx, id)
}
