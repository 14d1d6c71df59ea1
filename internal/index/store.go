package index

import (
	"bytes"
	"container/heap"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
)

// Store is the index on local disk: every entry of the index files it was
// built from, sorted by type and ID, and the packs they name. Lookups read
// one page; memory holds a page's first key and checksum per page and a
// bounded cache of pages, so it grows by about half a byte per blob,
// instead of the fifty-odd an in-memory index takes.
//
// A store is a generation directory, written whole and never changed, and
// a file "current" naming the generation in use, replaced atomically. A
// new generation merges the last one (less the entries of index files the
// repository no longer has) with new index files, streaming, in bounded
// memory.
type Store struct {
	root, gen string
	entries   *table // entryRec records, keyed by ID and type
	packs     *table // packRec records, keyed by ordinal
	packIDs   *table // packIDRec records, keyed by pack ID
	meta      storeMeta
	cache     *pageCache
	fileNum   map[string]uint32
}

// Record layouts, little endian but for keys.
const (
	// ID 32 | type 1 | flags 1 | pad 2 | pack 4 | offset 4 | length 4 |
	// raw length 4 | inner 4 | index file 4
	entryRec = 60
	entryKey = crypto.IDSize + 1
	// ordinal 4 (big endian, the key) | pack ID 32 | flags 4 | index file 4
	packRec = 44
	packKey = 4
	// pack ID 32 | ordinal 4
	packIDRec = 36
	packIDKey = crypto.IDSize
)

// packHasTrees marks a pack holding tree blobs in the pack table.
const packHasTrees = 1

type storeMeta struct {
	Version    int      `json:"version"`
	Repository string   `json:"repository"` // whose index this is
	Files      []string `json:"files"`      // index files, by ordinal
	Entries    int      `json:"entries"`
	Packs      int      `json:"packs"`
}

const storeVersion = 1

// DefaultCacheBytes is how much of a store's pages a process keeps.
const DefaultCacheBytes = 16 << 20

// OpenGen opens generation gen of the store under root, made for the
// repository repoKey; it returns nil and no error for one of another
// repository, and ErrStoreDamaged when it fails its checks.
func OpenGen(root, gen, repoKey string, cacheBytes int) (*Store, error) {
	return openGen(root, gen, repoKey, cacheBytes)
}

func openGen(root, gen, repoKey string, cacheBytes int) (*Store, error) {
	s := &Store{root: root, gen: gen, cache: newPageCache(cacheBytes)}
	dir := filepath.Join(root, gen)
	b, err := os.ReadFile(filepath.Join(dir, "store.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreDamaged, err)
	}
	if err := json.Unmarshal(b, &s.meta); err != nil || s.meta.Version != storeVersion {
		return nil, fmt.Errorf("%w: %s/store.json", ErrStoreDamaged, dir)
	}
	if s.meta.Repository != repoKey {
		return nil, nil
	}
	for _, t := range []struct {
		name     string
		dst      **table
		rec, key int
	}{{"entries", &s.entries, entryRec, entryKey}, {"packs", &s.packs, packRec, packKey}, {"packids", &s.packIDs, packIDRec, packIDKey}} {
		if *t.dst, err = openTable(filepath.Join(dir, t.name), t.rec, t.key, s.cache); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.entries.n != s.meta.Entries || s.packs.n != s.meta.Packs {
		s.Close()
		return nil, fmt.Errorf("%w: %s: counts differ", ErrStoreDamaged, dir)
	}
	s.fileNum = make(map[string]uint32, len(s.meta.Files))
	for i, f := range s.meta.Files {
		s.fileNum[f] = uint32(i)
	}
	return s, nil
}

// Close closes the store's files.
func (s *Store) Close() {
	for _, t := range []*table{s.entries, s.packs, s.packIDs} {
		if t != nil {
			s.cache.drop(t)
			t.close()
		}
	}
}

// Files returns the index files the store holds, by ordinal.
func (s *Store) Files() []string { return s.meta.Files }

// File returns an index file's ordinal in the store.
func (s *Store) File(name string) (uint32, bool) {
	n, ok := s.fileNum[name]
	return n, ok
}

// Len is the number of entries, duplicates and dead files included.
func (s *Store) Len() int { return s.meta.Entries }

func decodeEntry(r []byte) (Entry, uint32) {
	var e Entry
	copy(e.ID[:], r)
	e.Type, e.Flags = pack.BlobType(r[32]), pack.Flags(r[33])
	e.Pack = binary.LittleEndian.Uint32(r[36:])
	e.Offset = binary.LittleEndian.Uint32(r[40:])
	e.Length = binary.LittleEndian.Uint32(r[44:])
	e.RawLen = binary.LittleEndian.Uint32(r[48:])
	e.Inner = binary.LittleEndian.Uint32(r[52:])
	return e, binary.LittleEndian.Uint32(r[56:])
}

func encodeEntry(dst []byte, e Entry, file uint32) []byte {
	dst = append(dst, e.ID[:]...)
	dst = append(dst, byte(e.Type), byte(e.Flags), 0, 0)
	for _, v := range []uint32{e.Pack, e.Offset, e.Length, e.RawLen, e.Inner, file} {
		dst = binary.LittleEndian.AppendUint32(dst, v)
	}
	return dst
}

func storeKey(t pack.BlobType, id crypto.ID) []byte {
	return append(id[:len(id):len(id)], byte(t))
}

// lookup finds the first entry of key whose index file is not dead.
func (s *Store) lookup(t pack.BlobType, id crypto.ID, dead map[uint32]bool) (Entry, bool, error) {
	key := storeKey(t, id)
	pos, err := s.entries.lowerBound(key)
	if err != nil {
		return Entry{}, false, err
	}
	var found Entry
	var ok bool
	err = s.entries.scan(pos, func(_ int, r []byte) bool {
		if !bytes.Equal(r[:entryKey], key) {
			return false
		}
		e, file := decodeEntry(r)
		if dead[file] {
			return true
		}
		found, ok = e, true
		return false
	})
	return found, ok, err
}

// pack returns a pack's ID and flags by ordinal.
func (s *Store) pack(ord uint32) (crypto.ID, uint32, error) {
	id, flags, _, err := s.packFile(ord)
	return id, flags, err
}

// packFile is pack, with the index file that listed the pack.
func (s *Store) packFile(ord uint32) (crypto.ID, uint32, uint32, error) {
	r, err := s.packs.at(int(ord))
	if err != nil {
		return crypto.ID{}, 0, 0, err
	}
	var id crypto.ID
	copy(id[:], r[4:])
	return id, binary.LittleEndian.Uint32(r[36:]), binary.LittleEndian.Uint32(r[40:]), nil
}

// packOrdinals calls fn with every ordinal of a pack ID (a pack listed by
// several index files has several).
func (s *Store) packOrdinals(id crypto.ID, fn func(ord uint32) bool) error {
	pos, err := s.packIDs.lowerBound(id[:])
	if err != nil {
		return err
	}
	return s.packIDs.scan(pos, func(_ int, r []byte) bool {
		if !bytes.Equal(r[:packIDKey], id[:]) {
			return false
		}
		return fn(binary.LittleEndian.Uint32(r[32:]))
	})
}

// StoreSource gives a store builder the repository's index files to add,
// one at a time.
type StoreSource func(add func(name string, packs []PackBlobs) error) error

// Part is a store to merge into a new one, less the entries of its index
// files that are dead (gone from the repository).
type Part struct {
	S    *Store
	Dead map[uint32]bool
}

// BuildStore writes a new generation under root: the live entries of the
// parts, and those of the index files src gives. Memory is bounded by
// budget bytes of sorting buffer, plus a word per pack of the parts. It
// does not make the generation current: the caller does, with SetCurrent.
func BuildStore(root, repoKey string, parts []Part, src StoreSource, budget, cacheBytes int) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	gen := "gen-" + hex.EncodeToString(rnd[:])
	dir := filepath.Join(root, gen)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	meta := storeMeta{Version: storeVersion, Repository: repoKey}
	packsW, err := newTableWriter(filepath.Join(dir, "packs"), packRec, packKey)
	if err != nil {
		return nil, err
	}
	defer packsW.abort()
	packIDs := NewSorter(dir, packIDRec, packIDKey, budget/4)
	defer packIDs.Close()
	fresh := NewSorter(dir, entryRec, entryKey, budget)
	defer fresh.Close()
	nextPack := uint32(0)
	addPack := func(id crypto.ID, flags, file uint32) error {
		var r [packRec]byte
		binary.BigEndian.PutUint32(r[:], nextPack)
		copy(r[4:], id[:])
		binary.LittleEndian.PutUint32(r[36:], flags)
		binary.LittleEndian.PutUint32(r[40:], file)
		packsW.add(r[:])
		var p [packIDRec]byte
		copy(p[:], id[:])
		binary.LittleEndian.PutUint32(p[32:], nextPack)
		nextPack++
		return packIDs.Add(p[:])
	}

	// The parts' live files and packs keep their order, renumbered.
	const gone = ^uint32(0)
	maps := make([]partMap, len(parts))
	for pi, part := range parts {
		base, dead := part.S, part.Dead
		m := &maps[pi]
		m.files = make([]uint32, len(base.meta.Files))
		for i, name := range base.meta.Files {
			m.files[i] = gone
			if !dead[uint32(i)] {
				m.files[i] = uint32(len(meta.Files))
				meta.Files = append(meta.Files, name)
			}
		}
		m.packs = make([]uint32, base.meta.Packs)
		i := 0
		if err := base.packs.stream(func(r []byte) error {
			m.packs[i] = gone
			file := binary.LittleEndian.Uint32(r[40:])
			if int(file) < len(m.files) && m.files[file] != gone {
				m.packs[i] = nextPack
				var id crypto.ID
				copy(id[:], r[4:])
				if err := addPack(id, binary.LittleEndian.Uint32(r[36:]), m.files[file]); err != nil {
					return err
				}
			}
			i++
			return nil
		}); err != nil {
			return nil, err
		}
	}
	// New index files.
	var rec []byte
	if src != nil {
		if err := src(func(name string, packs []PackBlobs) error {
			file := uint32(len(meta.Files))
			meta.Files = append(meta.Files, name)
			for _, p := range packs {
				var flags uint32
				for _, b := range p.Blobs {
					if b.Type == pack.Tree {
						flags |= packHasTrees
					}
				}
				ord := nextPack
				if err := addPack(p.ID, flags, file); err != nil {
					return err
				}
				for _, b := range p.Blobs {
					rec = encodeEntry(rec[:0], Entry{ID: b.ID, Type: b.Type, Flags: b.Flags, Pack: ord, Offset: b.Offset,
						Length: b.Length, RawLen: b.RawLen, Inner: b.Inner}, file)
					if err := fresh.Add(rec); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if err := packsW.finish(); err != nil {
		return nil, err
	}
	meta.Packs = int(nextPack)

	// Entries: the parts' (each sorted already) merged with the new ones.
	entriesW, err := newTableWriter(filepath.Join(dir, "entries"), entryRec, entryKey)
	if err != nil {
		return nil, err
	}
	defer entriesW.abort()
	if err := mergeEntries(parts, maps, fresh, func(r []byte) { entriesW.add(r); meta.Entries++ }); err != nil {
		return nil, err
	}
	if err := entriesW.finish(); err != nil {
		return nil, err
	}
	idsW, err := newTableWriter(filepath.Join(dir, "packids"), packIDRec, packIDKey)
	if err != nil {
		return nil, err
	}
	defer idsW.abort()
	if err := packIDs.Each(func(r []byte) error { idsW.add(r); return nil }); err != nil {
		return nil, err
	}
	if err := idsW.finish(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(dir, "store.json"), b); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	s, err := openGen(root, gen, repoKey, cacheBytes)
	if err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// partMap renumbers a part's index files and packs in the new store.
type partMap struct{ files, packs []uint32 }

// stream is a source of entry records in key order.
type stream struct {
	next func() ([]byte, error) // nil record at the end
	rec  []byte
	pri  int
}

// mergeEntries streams the parts' live entries, renumbered, and the new
// sorted entries, in key order.
func mergeEntries(parts []Part, maps []partMap, fresh *Sorter, emit func(r []byte)) error {
	var streams []*stream
	stop := make(chan struct{})
	defer close(stop)
	for i, part := range parts {
		streams = append(streams, &stream{next: partStream(part, maps[i], stop), pri: i})
	}
	if len(streams) == 0 {
		return fresh.Each(func(r []byte) error { emit(r); return nil })
	}
	// The new entries come from the sorter's callback: merge the parts'
	// records in before each.
	h := &streamHeap{}
	for _, st := range streams {
		r, err := st.next()
		if err != nil {
			return err
		}
		if r != nil {
			st.rec = r
			heap.Push(h, st)
		}
	}
	drain := func(upTo []byte) error {
		for h.Len() > 0 {
			top := (*h)[0]
			if upTo != nil && bytes.Compare(top.rec[:entryKey], upTo[:entryKey]) > 0 {
				return nil
			}
			emit(top.rec)
			r, err := top.next()
			if err != nil {
				return err
			}
			if r == nil {
				heap.Pop(h)
			} else {
				top.rec = r
				heap.Fix(h, 0)
			}
		}
		return nil
	}
	if err := fresh.Each(func(r []byte) error {
		if err := drain(r); err != nil {
			return err
		}
		emit(r)
		return nil
	}); err != nil {
		return err
	}
	return drain(nil)
}

// partStream reads a part's live entries, renumbered, in a goroutine.
func partStream(part Part, m partMap, stop chan struct{}) func() ([]byte, error) {
	type batch struct {
		recs [][]byte
		err  error
	}
	ch := make(chan batch, 4)
	go func() {
		defer close(ch)
		var cur [][]byte
		err := part.S.entries.stream(func(r []byte) error {
			e, file := decodeEntry(r)
			if part.Dead[file] || int(file) >= len(m.files) || int(e.Pack) >= len(m.packs) || m.packs[e.Pack] == ^uint32(0) {
				return nil
			}
			e.Pack = m.packs[e.Pack]
			cur = append(cur, encodeEntry(make([]byte, 0, entryRec), e, m.files[file]))
			if len(cur) == 1024 {
				select {
				case ch <- batch{recs: cur}:
				case <-stop:
					return errors.New("stopped")
				}
				cur = nil
			}
			return nil
		})
		select {
		case ch <- batch{recs: cur, err: err}:
		case <-stop:
		}
	}()
	var pending [][]byte
	done := false
	return func() ([]byte, error) {
		for len(pending) == 0 && !done {
			b, ok := <-ch
			if !ok {
				done = true
				break
			}
			if b.err != nil {
				return nil, b.err
			}
			pending = b.recs
		}
		if len(pending) == 0 {
			return nil, nil
		}
		r := pending[0]
		pending = pending[1:]
		return r, nil
	}
}

type streamHeap []*stream

func (h streamHeap) Len() int { return len(h) }
func (h streamHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].rec[:entryKey], h[j].rec[:entryKey]); c != 0 {
		return c < 0
	}
	return h[i].pri < h[j].pri
}
func (h streamHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *streamHeap) Push(x any)   { *h = append(*h, x.(*stream)) }
func (h *streamHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Generations in use: a large base, merged rarely, and a small delta,
// rebuilt as new index files appear. "current" names both.
type Generations struct {
	Base, Delta string
}

// ReadCurrent returns the generations in use under root.
func ReadCurrent(root string) (Generations, error) {
	b, err := os.ReadFile(filepath.Join(root, "current"))
	if errors.Is(err, os.ErrNotExist) {
		return Generations{}, nil
	}
	if err != nil {
		return Generations{}, err
	}
	var g Generations
	for i, f := range strings.Fields(string(b)) {
		if !strings.HasPrefix(f, "gen-") || strings.ContainsAny(f, `/\`) || i > 1 {
			return Generations{}, fmt.Errorf("%w: %s/current", ErrStoreDamaged, root)
		}
		if i == 0 {
			g.Base = f
		} else {
			g.Delta = f
		}
	}
	return g, nil
}

// SetCurrent makes generations current, atomically, and removes the
// others (a process still reading one keeps its open files).
func SetCurrent(root string, g Generations) error {
	tmp := filepath.Join(root, ".current.tmp")
	if err := writeFileSync(tmp, []byte(strings.TrimSpace(g.Base+" "+g.Delta)+"\n")); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, "current")); err != nil {
		return err
	}
	_ = syncDir(root)
	if entries, err := os.ReadDir(root); err == nil {
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "gen-") && e.Name() != g.Base && e.Name() != g.Delta {
				os.RemoveAll(filepath.Join(root, e.Name()))
			}
		}
	}
	return nil
}

// Gen is the generation's name.
func (s *Store) Gen() string { return s.gen }

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}

// Remove deletes a store entirely (it is a cache: the repository's index
// files are the truth).
func RemoveStore(root string) error { return os.RemoveAll(root) }

// Entries calls fn with every entry in key order (duplicates and entries
// of dead files included: callers skip those), reading the store once.
func (s *Store) Entries(fn func(e Entry, file uint32) error) error {
	return s.entries.stream(func(r []byte) error {
		e, file := decodeEntry(r)
		return fn(e, file)
	})
}

// Packs calls fn with every pack by ordinal: its ID, whether it holds
// trees, and the index file that listed it.
func (s *Store) Packs(fn func(ord uint32, id crypto.ID, trees bool, file uint32) error) error {
	return s.packs.stream(func(r []byte) error {
		var id crypto.ID
		copy(id[:], r[4:])
		return fn(binary.BigEndian.Uint32(r), id, binary.LittleEndian.Uint32(r[36:])&packHasTrees != 0,
			binary.LittleEndian.Uint32(r[40:]))
	})
}

// PackIDs calls fn with every pack ID and ordinal, in ID order (a pack
// listed by several index files comes once per listing).
func (s *Store) PackIDs(fn func(id crypto.ID, ord uint32) error) error {
	return s.packIDs.stream(func(r []byte) error {
		var id crypto.ID
		copy(id[:], r)
		return fn(id, binary.LittleEndian.Uint32(r[32:]))
	})
}

// Packs is the number of pack ordinals.
func (s *Store) PackCount() int { return s.meta.Packs }

// PackID returns the ID of a pack by ordinal.
func (s *Store) PackID(ord uint32) (crypto.ID, error) {
	id, _, err := s.pack(ord)
	return id, err
}
