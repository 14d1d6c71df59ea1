// Package usage tells which blobs the jobs of a repository use, in bounded
// memory: the keys of the blobs are sorted on disk as the jobs' trees are
// walked, then joined with the index store, itself sorted on disk. Prune
// decides with it what to delete; check, which packs no job uses.
package usage

import (
	"bytes"
	"errors"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
)

// keySize is a blob's key: its ID and type.
const keySize = crypto.IDSize + 1

// Keys collects the keys of used blobs; duplicates are fine.
type Keys struct {
	s   *index.Sorter
	key [keySize]byte
}

// NewKeys sorts in dir (a temporary folder of the caller's), with budget
// bytes of memory.
func NewKeys(dir string, budget int) *Keys {
	return &Keys{s: index.NewSorter(dir, keySize, keySize, budget)}
}

// Add records that a blob is used.
func (k *Keys) Add(t pack.BlobType, id crypto.ID) error {
	copy(k.key[:], id[:])
	k.key[crypto.IDSize] = byte(t)
	return k.s.Add(k.key[:])
}

// Close removes what was spilled to disk.
func (k *Keys) Close() { k.s.Close() }

// Join streams the store's entries, grouped by key (a group holds the
// copies of a blob), beside the sorted used keys: fn learns whether the
// blob is used. Entries of the same ID and another type are one blob in
// repositories of format 1 and 2 (typed false).
func Join(store *index.Store, used *Keys, typed bool, fn func(copies []index.Entry, used bool)) error {
	// The used keys, deduplicated, come from the sorter's callback; the
	// entries are read in a goroutine and handed over a channel.
	type batch struct {
		es  []index.Entry
		err error
	}
	ch := make(chan batch, 4)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(ch)
		var cur []index.Entry
		err := store.Entries(func(e index.Entry, _ uint32) error {
			cur = append(cur, e)
			if len(cur) == 4096 {
				select {
				case ch <- batch{es: cur}:
				case <-stop:
					return errors.New("stopped")
				}
				cur = nil
			}
			return nil
		})
		select {
		case ch <- batch{es: cur, err: err}:
		case <-stop:
		}
	}()
	var pending []index.Entry
	var streamErr error
	more := true
	peek := func() (index.Entry, bool) {
		for len(pending) == 0 && more {
			b, ok := <-ch
			if !ok {
				more = false
				break
			}
			if b.err != nil {
				streamErr = b.err
			}
			pending = b.es
		}
		if len(pending) == 0 {
			return index.Entry{}, false
		}
		return pending[0], true
	}
	sameBlob := func(a, b index.Entry) bool { return a.ID == b.ID && (!typed || a.Type == b.Type) }
	// nextGroup takes the copies of the next blob.
	var group []index.Entry
	nextGroup := func() bool {
		group = group[:0]
		e, ok := peek()
		if !ok {
			return false
		}
		for ok && sameBlob(e, group0(group, e)) {
			group = append(group, e)
			pending = pending[1:]
			e, ok = peek()
		}
		return true
	}
	cmp := func(k []byte, e index.Entry) int {
		if c := bytes.Compare(k[:crypto.IDSize], e.ID[:]); c != 0 {
			return c
		}
		if !typed {
			return 0
		}
		return int(k[crypto.IDSize]) - int(e.Type)
	}
	have := nextGroup()
	var last []byte
	err := used.s.Each(func(k []byte) error {
		if last != nil && bytes.Equal(last, k) {
			return nil
		}
		last = append(last[:0], k...)
		for have && cmp(k, group[0]) > 0 {
			fn(group, false)
			have = nextGroup()
		}
		if have && cmp(k, group[0]) == 0 {
			fn(group, true)
			have = nextGroup()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for ; have; have = nextGroup() {
		fn(group, false)
	}
	return streamErr
}

// group0 is the group's first entry, or e for an empty group.
func group0(group []index.Entry, e index.Entry) index.Entry {
	if len(group) == 0 {
		return e
	}
	return group[0]
}
