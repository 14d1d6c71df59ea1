// Package index maps blobs to where they live in pack files. A blob is
// known by its type and ID: a file's chunk and a directory's tree with the
// same bytes are two blobs (repository format 3).
//
// In memory the index is a sorted array of fixed-size entries (56 bytes a
// blob) plus a small map of recent additions, merged into the array in
// batches; lookups are a binary search. On storage it is a set of index
// files, each describing some packs completely.
package index

import (
	"bytes"
	"slices"
	"sync"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
)

// Entry locates one blob. Pack is a number into the index's pack list, so
// that a 32-byte pack ID is not repeated for each blob.
type Entry struct {
	ID     crypto.ID
	Pack   uint32
	Offset uint32
	Length uint32
	RawLen uint32
	Inner  uint32
	Type   pack.BlobType
	Flags  pack.Flags
}

// Location is an Entry with its pack ID resolved.
type Location struct {
	PackID crypto.ID
	pack.Blob
}

// Key is a blob's identity: its type and ID.
type Key struct {
	ID   crypto.ID
	Type pack.BlobType
}

func (k Key) String() string { return k.Type.String() + " " + k.ID.Short() }

// Index is safe for concurrent use. It is an in-memory part (index files
// read this run, and packs written by it) over an optional Store on disk
// (what the index files held when it was last brought up to date), less
// the entries of the store's index files that are gone from the repository.
type Index struct {
	mu      sync.RWMutex
	packs   []crypto.ID
	packNum map[crypto.ID]uint32
	sorted  []Entry
	pending map[Key]Entry
	trees   map[uint32]bool // pack numbers that hold tree blobs

	parts []Part // stores under the index, largest first
	err   error  // the first failure to read a store
}

// SetParts puts stores under the in-memory index, each with the index
// files whose entries no longer count.
func (x *Index) SetParts(parts []Part) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.parts = parts
}

// Parts returns the stores under the index.
func (x *Index) Parts() []Part {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.parts
}

// Err reports the first failure to read the store: lookups that failed
// answered "not there", which costs a chunk stored again or a file not
// restored, never a wrong answer.
func (x *Index) Err() error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.err
}

// ClearErr forgets the store's failure, once the store was replaced.
func (x *Index) ClearErr() {
	x.mu.Lock()
	x.err = nil
	x.mu.Unlock()
}

func (x *Index) fail(err error) {
	x.mu.Lock()
	if x.err == nil {
		x.err = err
	}
	x.mu.Unlock()
}

// baseLookup finds a blob in the stores; the caller holds no lock.
func (x *Index) baseLookup(k Key) (Location, bool) {
	x.mu.RLock()
	parts := x.parts
	x.mu.RUnlock()
	for _, p := range parts {
		e, ok, err := p.S.lookup(k.Type, k.ID, p.Dead)
		if err == nil && ok {
			var id crypto.ID
			if id, _, err = p.S.pack(e.Pack); err == nil {
				return Location{PackID: id, Blob: pack.Blob{Type: e.Type, Flags: e.Flags, ID: e.ID, Offset: e.Offset,
					Length: e.Length, RawLen: e.RawLen, Inner: e.Inner}}, true
			}
		}
		if err != nil {
			x.fail(err)
			return Location{}, false
		}
	}
	return Location{}, false
}

// New returns an empty index.
func New() *Index {
	return &Index{packNum: map[crypto.ID]uint32{}, pending: map[Key]Entry{}, trees: map[uint32]bool{}}
}

// AddPack records every blob of a pack. A blob already known (same type and
// ID) keeps its first location: duplicates across packs are harmless and
// prune removes them.
func (x *Index) AddPack(packID crypto.ID, blobs []pack.Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(packID, blobs)
}

func (x *Index) addLocked(packID crypto.ID, blobs []pack.Blob) {
	num, ok := x.packNum[packID]
	if !ok {
		num = uint32(len(x.packs))
		x.packs = append(x.packs, packID)
		x.packNum[packID] = num
	}
	for _, b := range blobs {
		if b.Type == pack.Tree {
			x.trees[num] = true
		}
		k := Key{b.ID, b.Type}
		if _, ok := x.lookupLocked(k); ok {
			continue
		}
		x.pending[k] = Entry{ID: b.ID, Pack: num, Offset: b.Offset, Length: b.Length, RawLen: b.RawLen, Inner: b.Inner, Type: b.Type, Flags: b.Flags}
	}
	// Merge when the map grows past an eighth of the array, so merging costs
	// amortised O(1) per entry and the map stays a small share of memory.
	if len(x.pending) > 4096 && len(x.pending) > len(x.sorted)/8 {
		x.mergeLocked()
	}
}

func (x *Index) mergeLocked() {
	if len(x.pending) == 0 {
		return
	}
	add := make([]Entry, 0, len(x.pending))
	for _, e := range x.pending {
		add = append(add, e)
	}
	slices.SortFunc(add, cmpEntry)
	merged := make([]Entry, 0, len(x.sorted)+len(add))
	i, j := 0, 0
	for i < len(x.sorted) && j < len(add) {
		if cmpEntry(x.sorted[i], add[j]) <= 0 {
			merged = append(merged, x.sorted[i])
			i++
		} else {
			merged = append(merged, add[j])
			j++
		}
	}
	merged = append(merged, x.sorted[i:]...)
	merged = append(merged, add[j:]...)
	x.sorted = merged
	clear(x.pending)
}

func cmpEntry(a, b Entry) int { return cmpKey(a, Key{b.ID, b.Type}) }

func cmpKey(e Entry, k Key) int {
	if c := bytes.Compare(e.ID[:], k.ID[:]); c != 0 {
		return c
	}
	return int(e.Type) - int(k.Type)
}

func (x *Index) lookupLocked(k Key) (Entry, bool) {
	if e, ok := x.pending[k]; ok {
		return e, true
	}
	i, ok := slices.BinarySearchFunc(x.sorted, k, cmpKey)
	if !ok {
		return Entry{}, false
	}
	return x.sorted[i], true
}

// Has reports whether the blob is stored.
func (x *Index) Has(t pack.BlobType, id crypto.ID) bool {
	_, ok := x.Lookup(t, id)
	return ok
}

// Lookup returns where a blob is stored.
func (x *Index) Lookup(t pack.BlobType, id crypto.ID) (Location, bool) {
	x.mu.RLock()
	e, ok := x.lookupLocked(Key{id, t})
	var loc Location
	if ok {
		loc = x.location(e)
	}
	x.mu.RUnlock()
	if ok {
		return loc, true
	}
	return x.baseLookup(Key{id, t})
}

// LookupAny returns where a blob with this ID is stored, of either type:
// for repositories of format 1 and 2, where the type was not part of a
// blob's identity (a blob of the other type has the same bytes).
func (x *Index) LookupAny(id crypto.ID) (Location, bool) {
	for _, t := range []pack.BlobType{pack.Data, pack.Tree} {
		if loc, ok := x.Lookup(t, id); ok {
			return loc, true
		}
	}
	return Location{}, false
}

// location resolves an entry's pack number; the caller holds the lock.
func (x *Index) location(e Entry) Location {
	return Location{PackID: x.packs[e.Pack], Blob: pack.Blob{Type: e.Type, Flags: e.Flags, ID: e.ID,
		Offset: e.Offset, Length: e.Length, RawLen: e.RawLen, Inner: e.Inner}}
}

// HasPack reports whether any blob of the pack was added, or is in the
// store's live index files.
func (x *Index) HasPack(id crypto.ID) bool {
	found, _ := x.packFlags(id)
	return found
}

// IsTreePack reports whether the pack holds tree blobs: the metadata a
// cache keeps.
func (x *Index) IsTreePack(id crypto.ID) bool {
	_, trees := x.packFlags(id)
	return trees
}

func (x *Index) packFlags(id crypto.ID) (found, trees bool) {
	x.mu.RLock()
	num, ok := x.packNum[id]
	trees = ok && x.trees[num]
	parts := x.parts
	x.mu.RUnlock()
	if ok {
		return ok, trees
	}
	for _, p := range parts {
		err := p.S.packOrdinals(id, func(ord uint32) bool {
			_, flags, file, err := p.S.packFile(ord)
			if err != nil {
				x.fail(err)
				return false
			}
			if p.Dead[file] {
				return true // listed by an index file that is gone: look on
			}
			found, trees = true, flags&packHasTrees != 0
			return false
		})
		if err != nil {
			x.fail(err)
		}
		if found {
			break
		}
	}
	return found, trees
}

// Len is the number of blobs: those of the store (duplicates and dead
// files included) and those added in memory.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := len(x.sorted) + len(x.pending)
	for _, p := range x.parts {
		n += p.S.Len()
	}
	return n
}

// Each calls fn for every blob, in no particular order, under a read lock:
// fn must not call back into the index. Blobs of the store come first,
// read in one pass.
func (x *Index) Each(fn func(Location)) {
	x.mu.RLock()
	var baseErr error
	defer func() {
		x.mu.RUnlock()
		if baseErr != nil {
			x.fail(baseErr)
		}
	}()
	for i, p := range x.parts {
		var last []byte
		err := p.S.entries.stream(func(r []byte) error {
			e, file := decodeEntry(r)
			if p.Dead[file] || last != nil && bytes.Equal(last, r[:entryKey]) {
				return nil
			}
			last = append(last[:0], r[:entryKey]...)
			for _, earlier := range x.parts[:i] {
				if _, ok, err := earlier.S.lookup(e.Type, e.ID, earlier.Dead); ok || err != nil {
					return err // seen in an earlier part
				}
			}
			id, _, err := p.S.pack(e.Pack)
			if err != nil {
				return err
			}
			fn(Location{PackID: id, Blob: pack.Blob{Type: e.Type, Flags: e.Flags, ID: e.ID, Offset: e.Offset,
				Length: e.Length, RawLen: e.RawLen, Inner: e.Inner}})
			return nil
		})
		if err != nil && baseErr == nil {
			baseErr = err
		}
	}
	for _, e := range x.sorted {
		fn(x.location(e))
	}
	for _, e := range x.pending {
		fn(x.location(e))
	}
}
