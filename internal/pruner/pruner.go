// Package pruner reclaims space: it removes packs that hold nothing any job
// uses and repacks packs that are mostly unused.
//
// It works in streams, so that its memory grows with the number of packs,
// not of blobs: the set of blobs jobs use is sorted on disk, and joined with
// the index, itself sorted on disk (index.Store), in a few passes.
//
// It is crash-safe by construction: new packs and index files are written
// and synced before any old file is removed, old index files go before the
// packs they describe, and at every moment the index files present describe
// only packs that exist. Interrupted, it leaves a valid repository that a
// later prune finishes cleaning.
package pruner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
	"github.com/runup/runup/internal/usage"
)

// Options tune a prune.
type Options struct {
	// MaxUnused is the share of a pack that may be unused before it is
	// repacked (0.05 for 5%).
	MaxUnused float64
	// MaxRepackSize bounds the bytes of packs repacked in one run (0: no
	// bound).
	MaxRepackSize int64
	DryRun        bool
	// Grace leaves packs that no index file lists alone while they are
	// younger than this: a writer may still reference them.
	Grace time.Duration
}

// DefaultGrace is prune's grace period for packs no index names: the lock
// stale age, after which no live writer holds them unreferenced.
const DefaultGrace = repo.LockStaleAge

// Stats tell what a prune did (or would do).
type Stats struct {
	Packs         int   `json:"packs"`
	PacksDeleted  int   `json:"packs_deleted"`
	PacksRepacked int   `json:"packs_repacked"`
	PacksKept     int   `json:"packs_kept"`
	BytesBefore   int64 `json:"bytes_before"`
	BytesFreed    int64 `json:"bytes_freed"`
	BytesRepacked int64 `json:"bytes_repacked"`
	BlobsUsed     int   `json:"blobs_used"`
	BlobsUnused   int   `json:"blobs_unused"`
	// PacksRecent are packs no index lists yet, left alone for the grace
	// period.
	PacksRecent int `json:"packs_recent,omitempty"`
}

// sortBudget is the memory of each sort on disk: more only spills less.
const sortBudget = 4 << 20

// decision is what becomes of a pack.
type decision uint8

const (
	keep decision = iota
	drop
	repack
)

// packs holds what prune knows of each pack, by its rank in pack ID order
// (a pack listed by several index files has one rank and several
// ordinals): a few words a pack.
type packs struct {
	canon           []uint32 // ordinal → rank
	ids             []crypto.ID
	size            []int64 // file size
	blobSz          []int64 // bytes of blobs (a group member's share of its group)
	usedSz, claimSz []int64
	decide          []decision
	present         []bool // the file exists
}

// Prune runs under the caller's exclusive lock.
func Prune(ctx context.Context, r *repo.Repository, o Options) (*Stats, error) {
	// Jobs first: a job that vanished without a tombstone still needs its
	// data, and prune refuses to decide on such knowledge.
	missing, forged, err := r.MissingJobs(ctx)
	if err != nil {
		return nil, err
	}
	if len(forged) > 0 {
		return nil, fmt.Errorf("%w; prune refuses to run (run 'runup check')", errors.Join(forged...))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: job record(s) %v are missing without a tombstone, and prune would delete their data; run 'runup check' (if they were deleted on purpose, 'runup forget %d' records that)",
			repo.ErrDamaged, missing, missing[0])
	}
	if !r.IndexDirSet() {
		return nil, errors.New("prune needs the index on disk (repo.Options.IndexDir)")
	}
	problems, err := r.LoadIndex(ctx)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w (run 'runup repair index'); prune refuses to decide on partial knowledge", errors.Join(problems...))
	}
	// Packs no index lists, older than the grace period, are indexed first
	// (an interrupted backup's): then every pack prune decides about is in
	// the index.
	st := &Stats{}
	recent, problems, err := r.AdoptOldPacks(ctx, o.Grace, !o.DryRun)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w; prune refuses to run on a damaged repository (run 'runup check')", errors.Join(problems...))
	}
	st.PacksRecent = recent
	store, problems, err := r.CompactIndex(ctx)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w (run 'runup repair index'); prune refuses to decide on partial knowledge", errors.Join(problems...))
	}
	tmp, err := os.MkdirTemp(r.StoreDir(), "prune-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	pk, err := census(ctx, r, store, tmp, o.Grace)
	if err != nil {
		return nil, err
	}
	used, err := usedKeys(ctx, r, tmp)
	if err != nil {
		return nil, err
	}
	defer used.Close()
	typed := r.Config().Version >= 3
	groups, err := groupSizes(store, pk)
	if err != nil {
		return nil, err
	}

	// Pass 1: each pack's blob bytes and used bytes, every copy counted.
	if err := usage.Join(store, used, typed, func(copies []index.Entry, isUsed bool) {
		for _, e := range pk.distinct(copies) {
			p := pk.canon[e.Pack]
			share := groups.share(p, e)
			pk.blobSz[p] += share
			if isUsed {
				pk.usedSz[p] += share
			}
		}
	}); err != nil {
		return nil, err
	}
	// Pass 2: each used blob is claimed in one pack, the most used of its
	// copies, so that duplicates end up unused elsewhere.
	if err := usage.Join(store, used, typed, func(copies []index.Entry, isUsed bool) {
		copies = pk.distinct(copies)
		if !isUsed {
			st.BlobsUnused += len(copies)
			return
		}
		st.BlobsUsed++
		st.BlobsUnused += len(copies) - 1
		e := pk.best(copies)
		pk.claimSz[pk.canon[e.Pack]] += groups.share(pk.canon[e.Pack], e)
	}); err != nil {
		return nil, err
	}
	var repacks int
	for p := range pk.ids {
		if !pk.present[p] {
			return nil, fmt.Errorf("%w: pack %v is in the index but missing (run 'runup check')", repo.ErrDamaged, pk.ids[p].Short())
		}
		st.Packs++
		st.BytesBefore += pk.size[p]
		unused := float64(pk.blobSz[p]-pk.claimSz[p]) / float64(max(pk.blobSz[p], 1))
		switch {
		case pk.claimSz[p] == 0:
			pk.decide[p] = drop
			st.PacksDeleted++
			st.BytesFreed += pk.size[p]
		case unused > o.MaxUnused && (o.MaxRepackSize == 0 || st.BytesRepacked+pk.size[p] <= o.MaxRepackSize):
			pk.decide[p] = repack
			repacks++
			st.PacksRepacked++
			st.BytesRepacked += pk.size[p]
			st.BytesFreed += pk.blobSz[p] - pk.claimSz[p]
		default:
			st.PacksKept++
		}
	}
	if o.DryRun || st.PacksDeleted+st.PacksRepacked == 0 {
		if o.DryRun {
			return st, nil
		}
		return st, removeForgottenRecords(ctx, r)
	}

	// Pass 3: the claimed blobs of the packs to repack, which are then
	// read once each and stored again, verified.
	claims := map[uint32][]pack.Blob{}
	if repacks > 0 {
		if err := usage.Join(store, used, typed, func(copies []index.Entry, isUsed bool) {
			if !isUsed {
				return
			}
			e := pk.best(pk.distinct(copies))
			if p := pk.canon[e.Pack]; pk.decide[p] == repack {
				claims[p] = append(claims[p], pack.Blob{Type: e.Type, Flags: e.Flags, ID: e.ID, Offset: e.Offset,
					Length: e.Length, RawLen: e.RawLen, Inner: e.Inner})
			}
		}); err != nil {
			return nil, err
		}
	}
	// Repacked blobs are stored through an empty index: each is claimed
	// once, and nothing of the packs going away may satisfy a SaveBlob.
	r.ReplaceIndex(index.New())
	ranks := make([]uint32, 0, len(claims))
	for p := range claims {
		ranks = append(ranks, p)
	}
	sort.Slice(ranks, func(i, j int) bool { return ranks[i] < ranks[j] })
	for _, p := range ranks {
		if err := repackOne(ctx, r, pk.ids[p], pk.size[p], claims[p]); err != nil {
			return nil, err
		}
	}
	// Durable before anything is removed: the new packs and their index.
	if _, err := r.Flush(ctx); err != nil {
		return nil, err
	}
	newIndex := r.Index()

	// Index files that list a pack going away are written again without
	// it; the others are left as they are.
	gone := map[crypto.ID]bool{}
	for p, d := range pk.decide {
		if d != keep {
			gone[pk.ids[p]] = true
		}
	}
	affected := map[uint32]bool{}
	if err := store.Packs(func(ord uint32, id crypto.ID, _ bool, file uint32) error {
		if gone[id] {
			affected[file] = true
		}
		return nil
	}); err != nil {
		return nil, err
	}
	files := store.Files()
	var rewrite []string
	for f := range affected {
		rewrite = append(rewrite, files[f])
	}
	sort.Strings(rewrite)
	for _, name := range rewrite {
		packs, err := r.LoadIndexFile(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("index file %s: %w; nothing was removed", name, err)
		}
		var rest []index.PackBlobs
		for _, p := range packs {
			if !gone[p.ID] {
				rest = append(rest, p)
			}
		}
		if len(rest) > 0 {
			if _, err := r.WriteIndex(ctx, rest); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range rewrite {
		if err := r.Remove(ctx, backend.Handle{Type: backend.Index, Name: name}); err != nil {
			return nil, err
		}
	}
	for p, d := range pk.decide {
		// Never remove a pack the new index uses: an unencrypted repository
		// seals deterministically, so repacking can write a pack identical
		// to (and named as) the one it replaces.
		if d == keep || newIndex.HasPack(pk.ids[p]) {
			continue
		}
		if err := r.Remove(ctx, backend.Handle{Type: backend.Data, Name: pk.ids[p].String()}); err != nil {
			return nil, err
		}
	}
	return st, removeForgottenRecords(ctx, r)
}

// census ranks the store's packs by ID and joins them with the listing of
// data/, both sorted, so that a repository of millions of packs costs a
// few words per pack.
func census(ctx context.Context, r *repo.Repository, store *index.Store, tmp string, grace time.Duration) (*packs, error) {
	pk := &packs{canon: make([]uint32, store.PackCount())}
	if err := store.PackIDs(func(id crypto.ID, ord uint32) error {
		if n := len(pk.ids); n == 0 || pk.ids[n-1] != id {
			pk.ids = append(pk.ids, id)
		}
		pk.canon[ord] = uint32(len(pk.ids) - 1)
		return nil
	}); err != nil {
		return nil, err
	}
	n := len(pk.ids)
	pk.size, pk.blobSz, pk.usedSz, pk.claimSz = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	pk.decide, pk.present = make([]decision, n), make([]bool, n)
	listed := index.NewSorter(tmp, crypto.IDSize+8, crypto.IDSize, sortBudget/4)
	defer listed.Close()
	var rec [crypto.IDSize + 8]byte
	if err := r.Backend().List(ctx, backend.Data, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err != nil {
			return nil // not a pack: check reports it
		}
		copy(rec[:], id[:])
		putInt64(rec[crypto.IDSize:], fi.Size)
		return listed.Add(rec[:])
	}); err != nil {
		return nil, err
	}
	i := 0
	if err := listed.Each(func(rec []byte) error {
		for i < n && bytes.Compare(pk.ids[i][:], rec[:crypto.IDSize]) < 0 {
			i++
		}
		if i < n && bytes.Equal(pk.ids[i][:], rec[:crypto.IDSize]) {
			pk.present[i] = true
			pk.size[i] = getInt64(rec[crypto.IDSize:])
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// A pack shorter than its index says is damaged: deciding what to keep
	// from it could lose data.
	if err := store.Entries(func(e index.Entry, _ uint32) error {
		if p := pk.canon[e.Pack]; pk.present[p] && int64(e.Offset)+int64(e.Length) > pk.size[p] {
			return fmt.Errorf("%w: pack %v is %d bytes, shorter than its index says (run 'runup check')", repo.ErrDamaged, pk.ids[p].Short(), pk.size[p])
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return pk, nil
}

func putInt64(b []byte, v int64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

func getInt64(b []byte) int64 {
	var v int64
	for i := range 8 {
		v |= int64(b[i]) << (8 * i)
	}
	return v
}

// distinct drops the copies that are the same bytes of the same pack,
// listed twice (a pack in two index files).
func (pk *packs) distinct(copies []index.Entry) []index.Entry {
	if len(copies) < 2 {
		return copies
	}
	out := copies[:1]
	for _, e := range copies[1:] {
		dup := false
		for _, o := range out {
			if pk.canon[o.Pack] == pk.canon[e.Pack] && o.Offset == e.Offset && o.Inner == e.Inner {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	return out
}

// best is the copy of a used blob to keep: in the pack with the highest
// share of used bytes (then the lowest rank), so that the others empty.
func (pk *packs) best(copies []index.Entry) index.Entry {
	best := copies[0]
	for _, e := range copies[1:] {
		a, b := pk.canon[e.Pack], pk.canon[best.Pack]
		ra := float64(pk.usedSz[a]) / float64(max(pk.blobSz[a], 1))
		rb := float64(pk.usedSz[b]) / float64(max(pk.blobSz[b], 1))
		if ra > rb || ra == rb && a < b {
			best = e
		}
	}
	return best
}

// groupSums tells a group member's share of its group's stored bytes: the
// group's sealed length in proportion to the member's plaintext, as a
// group is reclaimed only whole.
type groupSums map[groupKey]int64

type groupKey struct {
	pack   uint32
	offset uint32
}

func groupSizes(store *index.Store, pk *packs) (groupSums, error) {
	g := groupSums{}
	err := store.Entries(func(e index.Entry, _ uint32) error {
		if e.Flags&pack.FlagGrouped != 0 {
			g[groupKey{pk.canon[e.Pack], e.Offset}] += int64(e.RawLen)
		}
		return nil
	})
	return g, err
}

func (g groupSums) share(p uint32, e index.Entry) int64 {
	if e.Flags&pack.FlagGrouped == 0 {
		return int64(e.Length)
	}
	return int64(e.Length) * int64(e.RawLen) / max(g[groupKey{p, e.Offset}], 1)
}

// usedKeys walks every job's trees and sorts, on disk, the keys of the blobs
// they use. A tree that cannot be read stops the prune: what it references
// is unknown, so nothing may be deleted.
func usedKeys(ctx context.Context, r *repo.Repository, tmp string) (*usage.Keys, error) {
	jobs, problems, err := r.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %v; prune refuses to run on a damaged repository (run 'runup check')", repo.ErrDamaged, errors.Join(problems...))
	}
	s := usage.NewKeys(tmp, sortBudget)
	add := s.Add
	walked := map[crypto.ID]bool{}
	var walk func(id crypto.ID) error
	walk = func(id crypto.ID) error {
		if walked[id] {
			return nil // shared subtree, already walked
		}
		walked[id] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := add(pack.Tree, id); err != nil {
			return err
		}
		t, err := r.LoadTree(ctx, id)
		if err != nil {
			return fmt.Errorf("%w; prune refuses to run on a damaged repository (run 'runup check')", err)
		}
		for _, n := range t.Nodes {
			switch n.Type {
			case tree.Dir:
				if err := walk(n.Subtree); err != nil {
					return err
				}
			case tree.File:
				for _, c := range n.Content {
					if err := add(pack.Data, c); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for _, j := range jobs {
		if err := walk(j.Tree); err != nil {
			s.Close()
			return nil, fmt.Errorf("job %d: %w", j.Number, err)
		}
	}
	return s, nil
}

// repackOne reads a pack once and stores its claimed blobs again, verified.
func repackOne(ctx context.Context, r *repo.Repository, id crypto.ID, size int64, claims []pack.Blob) error {
	data, err := r.Backend().Load(ctx, backend.Handle{Type: backend.Data, Name: id.String()}, 0, size)
	if err != nil {
		return fmt.Errorf("repack: pack %v: %w; nothing was removed", id.Short(), err)
	}
	// In pack order, so that a group's members come together.
	sort.Slice(claims, func(i, j int) bool {
		if claims[i].Offset != claims[j].Offset {
			return claims[i].Offset < claims[j].Offset
		}
		return claims[i].Inner < claims[j].Inner
	})
	dec := r.NewDecoder()
	for _, b := range claims {
		end := uint64(b.Offset) + uint64(b.Length)
		if end > uint64(len(data)) {
			return fmt.Errorf("repack: %w: pack %v is %d bytes, its index says blob %v ends at %d; nothing was removed (run 'runup check')",
				repo.ErrDamaged, id.Short(), len(data), b.ID.Short(), end)
		}
		plain, err := dec.Decode(index.Location{PackID: id, Blob: b}, data[b.Offset:end])
		if err != nil {
			return fmt.Errorf("repack: %w; nothing was removed (run 'runup check')", err)
		}
		if _, err := r.SaveBlob(ctx, b.Type, b.ID, plain); err != nil {
			return err
		}
	}
	return nil
}

// removeForgottenRecords finishes forgets that were interrupted between the
// tombstone and the record's removal, and deletes temporary files that
// interrupted writers left (safe: prune holds the exclusive lock).
func removeForgottenRecords(ctx context.Context, r *repo.Repository) error {
	if err := r.CleanForgotten(ctx); err != nil {
		return err
	}
	if t, ok := backend.As[interface {
		RemoveTemporary(context.Context) (int, error)
	}](r.Backend()); ok {
		_, err := t.RemoveTemporary(ctx)
		return err
	}
	return nil
}
