package repo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
)

func (r *Repository) writeIndex(ctx context.Context, packs []index.PackBlobs) (string, error) {
	name, err := r.saveSealed(ctx, backend.Index, index.Encode(packs))
	if err != nil {
		return "", fmt.Errorf("write index: %w", err)
	}
	r.indexMu.Lock()
	r.indexFiles[name] = true
	r.indexMu.Unlock()
	return name, nil
}

// LoadIndex makes the repository's index files answer lookups. With
// Options.IndexDir, they are kept in a store on local disk, brought up to
// date here: index files new since are merged into it (or, when few, read
// into memory), and the entries of files the repository no longer has stop
// counting; memory then holds a few bytes per page of the store. Without,
// every index file is read into memory. A damaged index file is skipped and
// reported in the returned list of problems, since the packs it describes
// can still be found by AdoptPacks or `repair index`.
func (r *Repository) LoadIndex(ctx context.Context) (problems []error, err error) {
	var names []string
	if err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	if r.opts.IndexDir != "" {
		return r.syncStore(ctx, names)
	}
	return r.loadIndexFiles(ctx, names)
}

// loadIndexFiles reads index files into the in-memory index.
func (r *Repository) loadIndexFiles(ctx context.Context, names []string) (problems []error, err error) {
	for _, name := range names {
		r.indexReads.Add(1)
		plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.Index, Name: name})
		if err == nil {
			var packs []index.PackBlobs
			packs, err = index.Decode(plain)
			if err == nil {
				for _, p := range packs {
					r.idx.AddPack(p.ID, p.Blobs)
				}
				r.indexMu.Lock()
				r.indexFiles[name] = true
				r.indexMu.Unlock()
				continue
			}
		}
		if errors.Is(err, backend.ErrNotExist) {
			continue // removed by a concurrent prune
		}
		if errors.Is(err, context.Canceled) {
			return problems, err
		}
		problems = append(problems, fmt.Errorf("index file %s: %w", short(name), err))
	}
	return problems, nil
}

// Store tuning. New index files go into the small delta store, which is
// rebuilt whole each time (it is small); once it holds more than a share
// of the base, or the base's dead index files are a share of its files,
// everything is merged into a new base. Each entry is so rewritten a
// bounded number of times: amortised constant cost. Sorting takes this
// much memory.
const (
	storeDeltaShare = 8 // delta over 1/8 of the base: merge
	storeDeadShare  = 4 // dead files over 1/4 of the base's: merge
	storeMinBase    = 100_000
	storeSortBudget = 16 << 20
)

// storeKey names the repository a store belongs to: a repository at the
// same place with another key never uses it.
func (r *Repository) storeKey() string { return r.cfg.ID + "-" + fingerprint(r.key) }

// StoreDir is where this repository's index store lives.
func (r *Repository) StoreDir() string {
	if r.opts.IndexDir == "" {
		return ""
	}
	return filepath.Join(r.opts.IndexDir, r.cfg.ID+"-"+fingerprint(r.key)[:16])
}

// openGens opens the store's current generations; a damaged store is
// removed, to be built again.
func (r *Repository) openGens(root string) (base, delta *index.Store, problems []error) {
	damaged := func(err error) (*index.Store, *index.Store, []error) {
		if base != nil {
			base.Close()
		}
		_ = index.RemoveStore(root)
		return nil, nil, []error{fmt.Errorf("%w; it is built again from the repository's index files", err)}
	}
	gens, err := index.ReadCurrent(root)
	if err != nil {
		return damaged(err)
	}
	if gens.Base != "" {
		if base, err = index.OpenGen(root, gens.Base, r.storeKey(), index.DefaultCacheBytes); err != nil {
			return damaged(err)
		}
	}
	if gens.Delta != "" && base != nil {
		if delta, err = index.OpenGen(root, gens.Delta, r.storeKey(), index.DefaultCacheBytes); err != nil {
			return damaged(err)
		}
	}
	return base, delta, nil
}

// healStore rebuilds the local store once a lookup found it damaged (a
// page that fails its checksum: the local disk's fault), and reports
// whether it did: the lookup is then tried again. A lookup never answers
// from a damaged page.
func (r *Repository) healStore() bool {
	err := r.idx.Err()
	if err == nil || !errors.Is(err, index.ErrStoreDamaged) || r.opts.IndexDir == "" {
		return false
	}
	r.healMu.Lock()
	defer r.healMu.Unlock()
	if r.idx.Err() == nil {
		return true // healed by another goroutine meanwhile
	}
	for _, p := range r.idx.Parts() {
		p.S.Close()
	}
	r.idx.SetParts(nil)
	_ = index.RemoveStore(r.StoreDir())
	ctx := context.Background()
	var names []string
	if err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return false
	}
	if _, err := r.syncStore(ctx, names); err != nil {
		return false
	}
	r.idx.ClearErr()
	return true
}

// syncStore brings the local store up to date with the index files names.
func (r *Repository) syncStore(ctx context.Context, names []string) (problems []error, err error) {
	root := r.StoreDir()
	unlock, err := index.LockStore(root)
	if err != nil {
		return nil, fmt.Errorf("index store %s: %w", root, err)
	}
	defer unlock()
	base, delta, problems := r.openGens(root)
	live := make(map[string]bool, len(names))
	for _, n := range names {
		live[n] = true
	}
	deadOf := func(s *index.Store) map[uint32]bool {
		dead := map[uint32]bool{}
		if s != nil {
			for i, f := range s.Files() {
				if !live[f] {
					dead[uint32(i)] = true
				}
			}
		}
		return dead
	}
	deadBase, deadDelta := deadOf(base), deadOf(delta)
	var fresh []string
	for _, n := range names {
		_, inBase := fileOf(base, n)
		_, inDelta := fileOf(delta, n)
		if !inBase && !inDelta {
			fresh = append(fresh, n)
		}
	}
	src := func(add func(string, []index.PackBlobs) error) error {
		for _, name := range fresh {
			packs, err := r.LoadIndexFile(ctx, name)
			if err != nil {
				if errors.Is(err, backend.ErrNotExist) {
					continue // removed by a concurrent prune
				}
				if errors.Is(err, context.Canceled) || !errors.Is(err, ErrDamaged) {
					return err
				}
				problems = append(problems, fmt.Errorf("index file %s: %w", short(name), err))
				continue
			}
			if err := add(name, packs); err != nil {
				return err
			}
		}
		return nil
	}
	build := func(parts []index.Part) (*index.Store, error) {
		s, err := index.BuildStore(root, r.storeKey(), parts, src, storeSortBudget, index.DefaultCacheBytes)
		if err != nil {
			return nil, fmt.Errorf("index store %s: %w", root, err)
		}
		return s, nil
	}
	closeAll := func(ss ...*index.Store) {
		for _, s := range ss {
			if s != nil {
				s.Close()
			}
		}
	}
	deltaLen := 0
	if delta != nil {
		deltaLen = delta.Len()
	}
	switch {
	case base == nil:
		if base, err = build(nil); err != nil {
			return problems, err
		}
		deadBase, delta = nil, nil
	case base.Len() == 0 && len(fresh) > 0 || len(deadBase) > 0 && len(deadBase)*storeDeadShare >= len(base.Files()) ||
		deltaLen > max(base.Len()/storeDeltaShare, storeMinBase):
		parts := []index.Part{{S: base, Dead: deadBase}}
		if delta != nil {
			parts = append(parts, index.Part{S: delta, Dead: deadDelta})
		}
		next, err := build(parts)
		closeAll(base, delta)
		if err != nil {
			return problems, err
		}
		base, delta, deadBase = next, nil, nil
	case len(fresh) > 0 || len(deadDelta) > 0:
		var parts []index.Part
		if delta != nil {
			parts = append(parts, index.Part{S: delta, Dead: deadDelta})
		}
		next, err := build(parts)
		closeAll(delta)
		if err != nil {
			closeAll(base)
			return problems, err
		}
		delta = next
	}
	gens := index.Generations{Base: base.Gen()}
	parts := []index.Part{{S: base, Dead: deadBase}}
	if delta != nil {
		gens.Delta = delta.Gen()
		parts = append(parts, index.Part{S: delta})
	}
	if err := index.SetCurrent(root, gens); err != nil {
		closeAll(base, delta)
		return problems, fmt.Errorf("index store %s: %w", root, err)
	}
	for _, p := range r.idx.Parts() {
		if p.S != base && p.S != delta {
			p.S.Close()
		}
	}
	r.idx.SetParts(parts)
	return problems, nil
}

func fileOf(s *index.Store, name string) (uint32, bool) {
	if s == nil {
		return 0, false
	}
	return s.File(name)
}

// CompactIndex brings the local store up to date and merges it into one
// generation that holds exactly the repository's index files, for prune
// and check, which read it whole. It needs Options.IndexDir.
func (r *Repository) CompactIndex(ctx context.Context) (*index.Store, []error, error) {
	if r.opts.IndexDir == "" {
		return nil, nil, errors.New("compact index: no index directory")
	}
	problems, err := r.LoadIndex(ctx)
	if err != nil {
		return nil, problems, err
	}
	parts := r.idx.Parts()
	if len(parts) == 1 && len(parts[0].Dead) == 0 {
		return parts[0].S, problems, nil
	}
	root := r.StoreDir()
	unlock, err := index.LockStore(root)
	if err != nil {
		return nil, problems, err
	}
	defer unlock()
	s, err := index.BuildStore(root, r.storeKey(), parts, nil, storeSortBudget, index.DefaultCacheBytes)
	if err != nil {
		return nil, problems, fmt.Errorf("index store %s: %w", root, err)
	}
	if err := index.SetCurrent(root, index.Generations{Base: s.Gen()}); err != nil {
		s.Close()
		return nil, problems, err
	}
	for _, p := range parts {
		p.S.Close()
	}
	r.idx.SetParts([]index.Part{{S: s}})
	return s, problems, nil
}

// IndexDirSet reports whether the index is kept on disk.
func (r *Repository) IndexDirSet() bool { return r.opts.IndexDir != "" }

// PublishIndex adds the index files this process wrote to the local store,
// so that the next command reads none of them again. A writer calls it
// when done.
func (r *Repository) PublishIndex(ctx context.Context) error {
	if r.opts.IndexDir == "" {
		return nil
	}
	var names []string
	if err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return err
	}
	_, err := r.syncStore(ctx, names)
	return err
}

// ReadPackHeader reads and decodes the header of a stored pack.
func (r *Repository) ReadPackHeader(ctx context.Context, id crypto.ID, size int64) ([]pack.Blob, error) {
	h := backend.Handle{Type: backend.Data, Name: id.String()}
	tailLen := min(size, pack.TailSize)
	tail, err := r.be.Load(ctx, h, size-tailLen, tailLen)
	if err != nil {
		return nil, err
	}
	return pack.ReadHeader(r.key, size, tail, func(off, n int64) ([]byte, error) {
		return r.be.Load(ctx, h, off, n)
	})
}

// AdoptPacks finds packs that no loaded index file describes (left by an
// interrupted backup, or by lost index files), reads their headers, adds
// them to the index and writes an index file for them. It returns how many
// packs it adopted; packs whose header is unreadable are skipped and
// reported.
func (r *Repository) AdoptPacks(ctx context.Context) (int, []error, error) {
	return r.adoptPacks(ctx, true)
}

// FindUnindexedPacks is AdoptPacks without writing: the packs are added to
// the in-memory index only, for read-only commands that should reach all
// data even when index files are lost.
func (r *Repository) FindUnindexedPacks(ctx context.Context) (int, []error, error) {
	return r.adoptPacks(ctx, false)
}

func (r *Repository) adoptPacks(ctx context.Context, write bool) (int, []error, error) {
	var orphans []backend.FileInfo
	if err := r.be.List(ctx, backend.Data, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err == nil && !r.idx.HasPack(id) {
			orphans = append(orphans, fi)
		}
		return nil
	}); err != nil {
		return 0, nil, err
	}
	var (
		found    []index.PackBlobs
		problems []error
	)
	for _, fi := range orphans {
		id, _ := crypto.ParseID(fi.Name)
		blobs, err := r.ReadPackHeader(ctx, id, fi.Size)
		if err != nil {
			if errors.Is(err, backend.ErrNotExist) {
				continue
			}
			problems = append(problems, fmt.Errorf("pack %v: %w", id.Short(), err))
			continue
		}
		r.idx.AddPack(id, blobs)
		found = append(found, index.PackBlobs{ID: id, Blobs: blobs})
	}
	if len(found) > 0 && write {
		if _, err := r.writeIndex(ctx, found); err != nil {
			return 0, problems, err
		}
	}
	return len(found), problems, nil
}

// IndexFilesRead counts the index files this process read: a command that
// does not need the index reads none, and one whose store is up to date
// reads only the files new since.
func (r *Repository) IndexFilesRead() int64 { return r.indexReads.Load() }

// AdoptOldPacks indexes the packs no index file lists that were written
// more than grace ago (left by an interrupted backup), writing an index
// file for them when write is set, and returns how many younger ones it
// left alone: a writer may still be about to reference those. Packs whose
// header cannot be read are returned as problems. The index must be
// loaded.
func (r *Repository) AdoptOldPacks(ctx context.Context, grace time.Duration, write bool) (recent int, problems []error, err error) {
	var old []backend.FileInfo
	now := time.Now()
	if err := r.be.List(ctx, backend.Data, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err != nil || r.idx.HasPack(id) {
			return nil
		}
		if fi.ModTime.IsZero() || now.Sub(fi.ModTime) < grace {
			recent++
			return nil
		}
		old = append(old, fi)
		return nil
	}); err != nil {
		return 0, nil, err
	}
	var found []index.PackBlobs
	for _, fi := range old {
		id, _ := crypto.ParseID(fi.Name)
		blobs, err := r.ReadPackHeader(ctx, id, fi.Size)
		if err != nil {
			if errors.Is(err, backend.ErrNotExist) {
				continue
			}
			problems = append(problems, fmt.Errorf("pack %v: %w", id.Short(), err))
			continue
		}
		found = append(found, index.PackBlobs{ID: id, Blobs: blobs})
	}
	if write && len(found) > 0 {
		if _, err := r.WriteIndex(ctx, found); err != nil {
			return recent, problems, err
		}
	}
	return recent, problems, nil
}

// RefreshIndex reads the index files other writers published since the
// index was loaded, so that a long backup skips what another host has
// stored meanwhile. It returns how many it read.
func (r *Repository) RefreshIndex(ctx context.Context) (int, error) {
	var fresh []string
	err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		r.indexMu.Lock()
		seen := r.indexFiles[fi.Name]
		r.indexMu.Unlock()
		if seen {
			return nil
		}
		for _, p := range r.idx.Parts() {
			if _, ok := p.S.File(fi.Name); ok {
				return nil
			}
		}
		fresh = append(fresh, fi.Name)
		return nil
	})
	if err != nil {
		return 0, err
	}
	_, err = r.loadIndexFiles(ctx, fresh)
	return len(fresh), err
}

// LoadIndexFile reads and decodes one index file without adding it to the
// in-memory index.
func (r *Repository) LoadIndexFile(ctx context.Context, name string) ([]index.PackBlobs, error) {
	r.indexReads.Add(1)
	plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.Index, Name: name})
	if err != nil {
		return nil, err
	}
	packs, err := index.Decode(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	return packs, nil
}

// RebuildResult tells what RebuildIndex did.
type RebuildResult struct {
	Packs int // packs described by the new index files
	// Kept are packs whose header is unreadable, described by the entries
	// old index files held for them: their blobs stay reachable.
	Kept []error
	// Lost are packs whose header is unreadable and that no readable old
	// index file described: their data cannot be reached.
	Lost []error
	// Unreadable are old index files that fail authentication or do not
	// decode: nothing can ever be read from them, so they are removed once
	// the new index is written.
	Unreadable []error
}

// RebuildIndex writes index files describing every pack, from its header,
// then removes the old index files. It never makes anything less reachable
// than before: a pack whose header is damaged keeps the entries the old
// index files held for it, and an index file is removed only when it was
// read, or is damaged for good (a failure to read it stops the rebuild).
// New files are durable before old ones go, so an interrupted rebuild
// loses nothing.
func (r *Repository) RebuildIndex(ctx context.Context) (RebuildResult, error) {
	var res RebuildResult
	var old []string
	if err := r.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		old = append(old, fi.Name)
		return nil
	}); err != nil {
		return res, err
	}
	known := map[crypto.ID][]pack.Blob{}
	var readable []string
	for _, name := range old {
		packs, err := r.LoadIndexFile(ctx, name)
		if err != nil {
			if errors.Is(err, backend.ErrNotExist) {
				continue
			}
			if !errors.Is(err, ErrDamaged) {
				return res, err
			}
			res.Unreadable = append(res.Unreadable, fmt.Errorf("index file %s: %w", short(name), err))
			readable = append(readable, name) // damaged for good: goes too
			continue
		}
		readable = append(readable, name)
		for _, p := range packs {
			if _, ok := known[p.ID]; !ok {
				known[p.ID] = p.Blobs
			}
		}
	}
	var files []backend.FileInfo
	if err := r.be.List(ctx, backend.Data, func(fi backend.FileInfo) error {
		files = append(files, fi)
		return nil
	}); err != nil {
		return res, err
	}
	written := map[string]bool{}
	var batch []index.PackBlobs
	blobs := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		name, err := r.writeIndex(ctx, batch)
		if err != nil {
			return err
		}
		written[name] = true
		batch, blobs = nil, 0
		return nil
	}
	for _, fi := range files {
		id, err := crypto.ParseID(fi.Name)
		if err != nil {
			res.Lost = append(res.Lost, fmt.Errorf("data/%s: not a pack name", fi.Name))
			continue
		}
		hdr, err := r.ReadPackHeader(ctx, id, fi.Size)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return res, err
			}
			prev, ok := known[id]
			if ok && fits(prev, fi.Size) {
				res.Kept = append(res.Kept, fmt.Errorf("pack %v: %w; its %d entries from the old index are kept", id.Short(), err, len(prev)))
				hdr = prev
			} else {
				res.Lost = append(res.Lost, fmt.Errorf("pack %v: %w, and no index file describes it", id.Short(), err))
				continue
			}
		}
		batch = append(batch, index.PackBlobs{ID: id, Blobs: hdr})
		blobs += len(hdr)
		res.Packs++
		if blobs >= indexBlobs {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	for _, name := range readable {
		if !written[name] {
			if err := r.Remove(ctx, backend.Handle{Type: backend.Index, Name: name}); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// fits reports whether index entries lie within a pack of the given size.
func fits(blobs []pack.Blob, size int64) bool {
	for _, b := range blobs {
		if int64(b.Offset)+int64(b.Length) > size {
			return false
		}
	}
	return true
}

// WriteIndex writes index files for the given packs, in batches.
func (r *Repository) WriteIndex(ctx context.Context, packs []index.PackBlobs) ([]string, error) {
	var names []string
	for start := 0; start < len(packs); {
		end, blobs := start, 0
		for end < len(packs) && (end == start || blobs+len(packs[end].Blobs) <= indexBlobs) {
			blobs += len(packs[end].Blobs)
			end++
		}
		name, err := r.writeIndex(ctx, packs[start:end])
		if err != nil {
			return names, err
		}
		names = append(names, name)
		start = end
	}
	return names, nil
}

// ReplaceIndex swaps the in-memory index, for prune: blobs missing from the
// new one are stored again by SaveBlob.
func (r *Repository) ReplaceIndex(idx *index.Index) { r.idx = idx }

// IndexFileNames lists the index files this process loaded or wrote.
func (r *Repository) IndexFileNames() []string {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	names := make([]string, 0, len(r.indexFiles))
	for n := range r.indexFiles {
		names = append(names, n)
	}
	return names
}
