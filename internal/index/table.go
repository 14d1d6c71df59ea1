package index

import (
	"bufio"
	"bytes"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"sync"
)

// A table is a file of fixed-size records sorted by a key prefix, in pages
// of pageSize bytes. In memory it keeps only each page's first key and
// checksum, so a lookup costs a binary search in memory and one page read
// (from a small cache of pages), and memory grows with pages, not records:
// half a byte per record of the index.
//
// The file is local, written by this machine from authenticated data; the
// checksums catch damage of the local disk, which must not make a backup
// believe the repository holds a chunk it does not.
//
//	page 0 | page 1 | … | page n-1 | meta | uint32 LE meta length
//	meta: magic, record size, key size, records, then per page its CRC-32C
//	      and its first key, then a CRC-32C of the meta
type table struct {
	f        *os.File
	path     string
	rec, key int // record and key sizes
	perPage  int // records per page
	n        int // records
	crcs     []uint32
	fences   []byte // first key of each page
	cache    *pageCache
}

const (
	pageSize   = 4096
	tableMagic = "RUNUPTB1"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrStoreDamaged reports a local index store that fails its checksums: it
// is rebuilt from the repository.
var ErrStoreDamaged = errors.New("local index store damaged")

// tableWriter writes a table from records given in key order.
type tableWriter struct {
	f        *os.File
	w        *bufio.Writer
	rec, key int
	perPage  int
	page     []byte
	inPage   int
	n        int
	crcs     []uint32
	fences   []byte
	last     []byte
	err      error
	done     bool
}

func newTableWriter(path string, rec, key int) (*tableWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &tableWriter{f: f, w: bufio.NewWriterSize(f, 1<<20), rec: rec, key: key, perPage: pageSize / rec,
		page: make([]byte, pageSize)}, nil
}

// add appends a record; records must come in non-decreasing key order.
func (t *tableWriter) add(r []byte) {
	if t.err != nil {
		return
	}
	if t.last != nil && bytes.Compare(r[:t.key], t.last) < 0 {
		t.err = errors.New("index store: records out of order")
		return
	}
	if t.inPage == 0 {
		t.fences = append(t.fences, r[:t.key]...)
	}
	copy(t.page[t.inPage*t.rec:], r)
	t.last = t.page[t.inPage*t.rec : t.inPage*t.rec+t.key]
	t.inPage++
	t.n++
	if t.inPage == t.perPage {
		t.flushPage()
	}
}

func (t *tableWriter) flushPage() {
	if t.inPage == 0 {
		return
	}
	clear(t.page[t.inPage*t.rec:])
	t.crcs = append(t.crcs, crc32.Checksum(t.page, crcTable))
	if _, err := t.w.Write(t.page); err != nil && t.err == nil {
		t.err = err
	}
	t.last = append([]byte(nil), t.last...) // the page buffer is reused
	t.inPage = 0
}

// finish writes the meta and syncs the file.
func (t *tableWriter) finish() error {
	t.flushPage()
	if t.err != nil {
		t.f.Close()
		return t.err
	}
	meta := []byte(tableMagic)
	meta = binary.LittleEndian.AppendUint32(meta, uint32(t.rec))
	meta = binary.LittleEndian.AppendUint32(meta, uint32(t.key))
	meta = binary.LittleEndian.AppendUint64(meta, uint64(t.n))
	for _, c := range t.crcs {
		meta = binary.LittleEndian.AppendUint32(meta, c)
	}
	meta = append(meta, t.fences...)
	meta = binary.LittleEndian.AppendUint32(meta, crc32.Checksum(meta, crcTable))
	meta = binary.LittleEndian.AppendUint32(meta, uint32(len(meta)))
	if _, err := t.w.Write(meta); err != nil {
		t.f.Close()
		return err
	}
	err := t.w.Flush()
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	t.done = err == nil
	return err
}

// abort discards an unfinished table; after finish it does nothing.
func (t *tableWriter) abort() {
	if t.done {
		return
	}
	t.f.Close()
	os.Remove(t.f.Name())
}

// openTable opens a table and reads its meta; cache is shared by the
// tables of a store.
func openTable(path string, rec, key int, cache *pageCache) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	t, err := readMeta(f, rec, key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrStoreDamaged, path, err)
	}
	t.path, t.cache = path, cache
	return t, nil
}

func readMeta(f *os.File, rec, key int) (*table, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var tail [4]byte
	if size < 4 {
		return nil, errors.New("too short")
	}
	if _, err := f.ReadAt(tail[:], size-4); err != nil {
		return nil, err
	}
	mlen := int64(binary.LittleEndian.Uint32(tail[:]))
	if mlen < int64(len(tableMagic))+16+4 || mlen > size-4 {
		return nil, errors.New("bad meta length")
	}
	meta := make([]byte, mlen)
	if _, err := f.ReadAt(meta, size-4-mlen); err != nil {
		return nil, err
	}
	body, sum := meta[:len(meta)-4], binary.LittleEndian.Uint32(meta[len(meta)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, errors.New("meta checksum")
	}
	if string(body[:len(tableMagic)]) != tableMagic {
		return nil, errors.New("not an index store table")
	}
	b := body[len(tableMagic):]
	if int(binary.LittleEndian.Uint32(b)) != rec || int(binary.LittleEndian.Uint32(b[4:])) != key {
		return nil, errors.New("record size differs")
	}
	n := int(binary.LittleEndian.Uint64(b[8:]))
	b = b[16:]
	perPage := pageSize / rec
	pages := (n + perPage - 1) / perPage
	if len(b) != pages*(4+key) || int64(pages)*pageSize != size-4-mlen {
		return nil, errors.New("meta does not fit the file")
	}
	t := &table{f: f, rec: rec, key: key, perPage: perPage, n: n, crcs: make([]uint32, pages), fences: b[pages*4:]}
	for i := range t.crcs {
		t.crcs[i] = binary.LittleEndian.Uint32(b[i*4:])
	}
	return t, nil
}

func (t *table) close() error { return t.f.Close() }

func (t *table) pages() int { return len(t.crcs) }

// page returns page i, verified, from the cache or the file.
func (t *table) page(i int) ([]byte, error) {
	if p := t.cache.get(t, i); p != nil {
		return p, nil
	}
	p := make([]byte, pageSize)
	if _, err := t.f.ReadAt(p, int64(i)*pageSize); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrStoreDamaged, t.path, err)
	}
	if crc32.Checksum(p, crcTable) != t.crcs[i] {
		return nil, fmt.Errorf("%w: %s: page %d fails its checksum", ErrStoreDamaged, t.path, i)
	}
	t.cache.put(t, i, p)
	return p, nil
}

// recordsIn is how many records page i holds.
func (t *table) recordsIn(i int) int {
	if i == t.pages()-1 {
		return t.n - i*t.perPage
	}
	return t.perPage
}

// at returns record i (a copy is not made: valid while the caller holds
// no other page).
func (t *table) at(i int) ([]byte, error) {
	if i < 0 || i >= t.n {
		return nil, fmt.Errorf("record %d of %d", i, t.n)
	}
	p, err := t.page(i / t.perPage)
	if err != nil {
		return nil, err
	}
	j := i % t.perPage
	return p[j*t.rec : (j+1)*t.rec], nil
}

// lowerBound returns the position of the first record whose key is not
// less than key (t.n when there is none).
func (t *table) lowerBound(key []byte) (int, error) {
	pages := t.pages()
	// The last page whose first key is less than key holds the answer, or
	// the answer is the first record of the page after it.
	pg := sort.Search(pages, func(i int) bool { return bytes.Compare(t.fences[i*t.key:(i+1)*t.key], key) >= 0 }) - 1
	if pg < 0 {
		return 0, nil
	}
	p, err := t.page(pg)
	if err != nil {
		return 0, err
	}
	in := t.recordsIn(pg)
	j := sort.Search(in, func(j int) bool { return bytes.Compare(p[j*t.rec:j*t.rec+t.key], key) >= 0 })
	return pg*t.perPage + j, nil
}

// scan calls fn for every record from position start on, in order, until
// fn returns false.
func (t *table) scan(start int, fn func(i int, r []byte) bool) error {
	for i := start; i < t.n; {
		pg := i / t.perPage
		p, err := t.page(pg)
		if err != nil {
			return err
		}
		for j := i % t.perPage; j < t.recordsIn(pg); j++ {
			if !fn(i, p[j*t.rec:(j+1)*t.rec]) {
				return nil
			}
			i++
		}
	}
	return nil
}

// stream reads every record in order without the page cache, for merges:
// a whole table read once should not evict what lookups use.
func (t *table) stream(fn func(r []byte) error) error {
	r := bufio.NewReaderSize(io.NewSectionReader(t.f, 0, int64(t.pages())*pageSize), 1<<20)
	p := make([]byte, pageSize)
	for i := range t.pages() {
		if _, err := io.ReadFull(r, p); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrStoreDamaged, t.path, err)
		}
		if crc32.Checksum(p, crcTable) != t.crcs[i] {
			return fmt.Errorf("%w: %s: page %d fails its checksum", ErrStoreDamaged, t.path, i)
		}
		for j := range t.recordsIn(i) {
			if err := fn(p[j*t.rec : (j+1)*t.rec]); err != nil {
				return err
			}
		}
	}
	return nil
}

// pageCache keeps recently read pages of a store's tables, up to a bound.
type pageCache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *cached, most recent first
	pages map[pageKey]*list.Element
}

type pageKey struct {
	t *table
	i int
}

type cached struct {
	k pageKey
	p []byte
}

func newPageCache(bytes int) *pageCache {
	return &pageCache{max: max(bytes/pageSize, 16), lru: list.New(), pages: map[pageKey]*list.Element{}}
}

func (c *pageCache) get(t *table, i int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.pages[pageKey{t, i}]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cached).p
	}
	return nil
}

func (c *pageCache) put(t *table, i int, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pageKey{t, i}
	if _, ok := c.pages[k]; ok {
		return
	}
	c.pages[k] = c.lru.PushFront(&cached{k, p})
	for c.lru.Len() > c.max {
		e := c.lru.Back()
		c.lru.Remove(e)
		delete(c.pages, e.Value.(*cached).k)
	}
}

// drop forgets a table's pages (it is being closed).
func (c *pageCache) drop(t *table) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.pages {
		if k.t == t {
			c.lru.Remove(e)
			delete(c.pages, k)
		}
	}
}
