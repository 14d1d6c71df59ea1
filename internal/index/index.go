// Package index maps blob IDs to where they live in pack files.
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

// Index is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []crypto.ID
	packNum map[crypto.ID]uint32
	sorted  []Entry
	pending map[crypto.ID]Entry
	trees   map[uint32]bool // pack numbers that hold tree blobs
}

// New returns an empty index.
func New() *Index {
	return &Index{packNum: map[crypto.ID]uint32{}, pending: map[crypto.ID]Entry{}, trees: map[uint32]bool{}}
}

// AddPack records every blob of a pack. A blob already known keeps its first
// location: duplicates across packs are harmless and prune removes them.
func (x *Index) AddPack(packID crypto.ID, blobs []pack.Blob) {
	x.mu.Lock()
	defer x.mu.Unlock()
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
		if _, ok := x.lookupLocked(b.ID); ok {
			continue
		}
		x.pending[b.ID] = Entry{ID: b.ID, Pack: num, Offset: b.Offset, Length: b.Length, RawLen: b.RawLen, Inner: b.Inner, Type: b.Type, Flags: b.Flags}
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

func cmpEntry(a, b Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) }

func (x *Index) lookupLocked(id crypto.ID) (Entry, bool) {
	if e, ok := x.pending[id]; ok {
		return e, true
	}
	i, ok := slices.BinarySearchFunc(x.sorted, id, func(e Entry, id crypto.ID) int {
		return bytes.Compare(e.ID[:], id[:])
	})
	if !ok {
		return Entry{}, false
	}
	return x.sorted[i], true
}

// Has reports whether the blob is stored.
func (x *Index) Has(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.lookupLocked(id)
	return ok
}

// Lookup returns where a blob is stored.
func (x *Index) Lookup(id crypto.ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.lookupLocked(id)
	if !ok {
		return Location{}, false
	}
	return x.location(e), true
}

// location resolves an entry's pack number; the caller holds the lock.
func (x *Index) location(e Entry) Location {
	return Location{PackID: x.packs[e.Pack], Blob: pack.Blob{Type: e.Type, Flags: e.Flags, ID: e.ID,
		Offset: e.Offset, Length: e.Length, RawLen: e.RawLen, Inner: e.Inner}}
}

// HasPack reports whether any blob of the pack was added.
func (x *Index) HasPack(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packNum[id]
	return ok
}

// IsTreePack reports whether the pack holds tree blobs: the metadata a
// cache keeps.
func (x *Index) IsTreePack(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	num, ok := x.packNum[id]
	return ok && x.trees[num]
}

// Len is the number of distinct blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sorted) + len(x.pending)
}

// Each calls fn for every blob, in no particular order, under a read lock:
// fn must not call back into the index.
func (x *Index) Each(fn func(Location)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.sorted {
		fn(x.location(e))
	}
	for _, e := range x.pending {
		fn(x.location(e))
	}
}
