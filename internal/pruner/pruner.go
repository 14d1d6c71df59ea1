// Package pruner reclaims space: it removes packs that hold nothing any job
// uses and repacks packs that are mostly unused.
//
// It is crash-safe by construction: new packs and the new index are written
// and synced before any old file is removed, old index files go before the
// packs they describe, and at every moment the index files present describe
// only packs that exist. Interrupted, it leaves a valid repository that a
// later prune finishes cleaning.
package pruner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
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

// Prune runs under the caller's exclusive lock.
func Prune(ctx context.Context, r *repo.Repository, o Options) (*Stats, error) {
	pc, err := r.ReadPackContents(ctx, o.Grace)
	if err != nil {
		return nil, err
	}
	all := index.New()
	for id, blobs := range pc.Packs {
		all.AddPack(id, blobs)
	}
	r.ReplaceIndex(all)

	// A job that vanished without a tombstone still needs its data: prune
	// refuses to decide on such knowledge.
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
	used, err := usedBlobs(ctx, r)
	key := func(b pack.Blob) index.Key { return r.BlobKey(b.Type, b.ID) }
	if err != nil {
		return nil, err
	}

	// Claim each used blob in one pack, preferring packs that are most used,
	// so that duplicates end up unused in the others.
	// size is the file; blobSz only its blobs, against which the unused
	// share is measured (a header is not waste).
	type packInfo struct {
		id                   crypto.ID
		size, blobSz, usedSz int64
		claims               []pack.Blob
	}
	infos := make([]*packInfo, 0, len(pc.Packs))
	shares := map[crypto.ID][]int64{}
	for id, blobs := range pc.Packs {
		pi := &packInfo{id: id, size: pc.Sizes[id]}
		shares[id] = storedShares(blobs)
		for i, b := range blobs {
			pi.blobSz += shares[id][i]
			if used[key(b)] {
				pi.usedSz += shares[id][i]
			}
		}
		infos = append(infos, pi)
	}
	slices.SortFunc(infos, func(a, b *packInfo) int {
		ra, rb := float64(a.usedSz)/float64(max(a.blobSz, 1)), float64(b.usedSz)/float64(max(b.blobSz, 1))
		switch {
		case ra > rb:
			return -1
		case ra < rb:
			return 1
		}
		return strings.Compare(string(a.id[:]), string(b.id[:]))
	})
	claimed := map[index.Key]bool{}
	for _, pi := range infos {
		pi.usedSz = 0
		for i, b := range pc.Packs[pi.id] {
			if used[key(b)] && !claimed[key(b)] {
				claimed[key(b)] = true
				pi.claims = append(pi.claims, b)
				pi.usedSz += shares[pi.id][i]
			}
		}
	}
	st := &Stats{Packs: len(infos), BlobsUsed: len(claimed), PacksRecent: pc.Recent}
	for _, blobs := range pc.Packs {
		for _, b := range blobs {
			if !used[key(b)] {
				st.BlobsUnused++
			}
		}
	}
	var keep, repack, drop []*packInfo
	for _, pi := range infos {
		st.BytesBefore += pi.size
		unused := float64(pi.blobSz-pi.usedSz) / float64(max(pi.blobSz, 1))
		switch {
		case len(pi.claims) == 0:
			drop = append(drop, pi)
		case unused > o.MaxUnused && (o.MaxRepackSize == 0 || st.BytesRepacked+pi.size <= o.MaxRepackSize):
			repack = append(repack, pi)
			st.BytesRepacked += pi.size
		default:
			keep = append(keep, pi)
		}
	}
	st.PacksDeleted, st.PacksRepacked, st.PacksKept = len(drop), len(repack), len(keep)
	for _, pi := range drop {
		st.BytesFreed += pi.size
	}
	for _, pi := range repack {
		st.BytesFreed += pi.blobSz - pi.usedSz
	}
	if o.DryRun || (len(drop) == 0 && len(repack) == 0 && len(pc.IndexFiles) <= 1) {
		return st, removeForgottenRecords(ctx, r, o.DryRun)
	}

	// The new index: the kept packs, plus whatever repacking writes.
	next := index.New()
	var keptPacks []index.PackBlobs
	for _, pi := range keep {
		next.AddPack(pi.id, pc.Packs[pi.id])
		keptPacks = append(keptPacks, index.PackBlobs{ID: pi.id, Blobs: pc.Packs[pi.id]})
	}
	r.ReplaceIndex(next)
	before := map[string]bool{}
	for _, n := range r.IndexFileNames() {
		before[n] = true
	}
	for _, pi := range repack {
		if err := repackOne(ctx, r, pi.id, pi.size, pi.claims); err != nil {
			return nil, err
		}
	}
	// Durable before anything is removed: the new packs and their index
	// (Flush), then index files for the kept packs.
	if _, err := r.Flush(ctx); err != nil {
		return nil, err
	}
	written, err := r.WriteIndex(ctx, keptPacks)
	if err != nil {
		return nil, err
	}
	fresh := map[string]bool{}
	for _, n := range written {
		fresh[n] = true
	}
	for _, n := range r.IndexFileNames() {
		if !before[n] {
			fresh[n] = true // written by this prune's Flush
		}
	}
	for _, name := range pc.IndexFiles {
		if !fresh[name] {
			if err := r.Remove(ctx, backend.Handle{Type: backend.Index, Name: name}); err != nil {
				return nil, err
			}
		}
	}
	for _, pi := range append(drop, repack...) {
		// Never remove a pack the new index uses: an unencrypted repository
		// seals deterministically, so repacking can write a pack identical
		// to (and named as) the one it replaces.
		if r.Index().HasPack(pi.id) {
			continue
		}
		if err := r.Remove(ctx, backend.Handle{Type: backend.Data, Name: pi.id.String()}); err != nil {
			return nil, err
		}
	}
	return st, removeForgottenRecords(ctx, r, false)
}

// usedBlobs walks every job's trees. A tree that cannot be read stops the
// prune: what it references is unknown, so nothing may be deleted.
func usedBlobs(ctx context.Context, r *repo.Repository) (map[index.Key]bool, error) {
	jobs, problems, err := r.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %v; prune refuses to run on a damaged repository (run 'runup check')", repo.ErrDamaged, errors.Join(problems...))
	}
	used := map[index.Key]bool{}
	// Walked trees are kept apart from used blobs: in format 1 and 2 a
	// file with a tree's bytes has the tree's key, and must not stop the
	// walk into the tree.
	walked := map[crypto.ID]bool{}
	var walk func(id crypto.ID) error
	walk = func(id crypto.ID) error {
		if walked[id] {
			return nil // shared subtree, already walked
		}
		walked[id] = true
		used[r.BlobKey(pack.Tree, id)] = true
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
					used[r.BlobKey(pack.Data, c)] = true
				}
			}
		}
		return nil
	}
	for _, j := range jobs {
		if err := walk(j.Tree); err != nil {
			return nil, fmt.Errorf("job %d: %w", j.Number, err)
		}
	}
	return used, nil
}

// storedShares is each blob's share of the pack's bytes: its sealed length,
// or for a group member its part of the group's, by plaintext size. A group
// is reclaimed only whole, so the unused share of a pack counts members no
// job uses, and a repack stores the used ones in new groups.
func storedShares(blobs []pack.Blob) []int64 {
	shares := make([]int64, len(blobs))
	for i := 0; i < len(blobs); {
		b := blobs[i]
		if !b.Grouped() {
			shares[i] = int64(b.Length)
			i++
			continue
		}
		end, raw := i, int64(0)
		for end < len(blobs) && blobs[end].Grouped() && blobs[end].Offset == b.Offset {
			raw += int64(blobs[end].RawLen)
			end++
		}
		left := int64(b.Length)
		for j := i; j < end; j++ {
			shares[j] = int64(b.Length) * int64(blobs[j].RawLen) / max(raw, 1)
			left -= shares[j]
		}
		shares[end-1] += left // rounding, so shares add up to the group
		i = end
	}
	return shares
}

// repackOne reads a pack once and stores its claimed blobs again, verified.
func repackOne(ctx context.Context, r *repo.Repository, id crypto.ID, size int64, claims []pack.Blob) error {
	data, err := r.Backend().Load(ctx, backend.Handle{Type: backend.Data, Name: id.String()}, 0, size)
	if err != nil {
		return fmt.Errorf("repack: pack %v: %w; nothing was removed", id.Short(), err)
	}
	// Claims are in header order, so a group's members come together.
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
func removeForgottenRecords(ctx context.Context, r *repo.Repository, dryRun bool) error {
	if dryRun {
		return nil
	}
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
