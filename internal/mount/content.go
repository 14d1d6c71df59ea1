package mount

import (
	"container/list"
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// blobSource is what reading a file needs of a repository.
type blobSource interface {
	Lookup(t pack.BlobType, id crypto.ID) (index.Location, bool)
	LoadBlob(ctx context.Context, t pack.BlobType, id crypto.ID, dst []byte) ([]byte, error)
}

// chunkCache keeps recently read chunks, up to a number of bytes, so that
// reads of neighbouring ranges (the kernel asks 128 KiB at a time) read a
// chunk from the repository once. Concurrent readers of one chunk wait for
// a single load.
type chunkCache struct {
	src    blobSource
	budget int

	mu      sync.Mutex
	used    int
	lru     *list.List // of *cached, most recent first
	entries map[crypto.ID]*list.Element
	loading map[crypto.ID]*load
}

type cached struct {
	id   crypto.ID
	data []byte
}

type load struct {
	done chan struct{}
	data []byte
	err  error
}

func newChunkCache(src blobSource, budget int) *chunkCache {
	return &chunkCache{src: src, budget: budget, lru: list.New(), entries: map[crypto.ID]*list.Element{}, loading: map[crypto.ID]*load{}}
}

// get returns a chunk's plaintext; callers must not modify it.
func (c *chunkCache) get(ctx context.Context, id crypto.ID) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[id]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cached).data
		c.mu.Unlock()
		return data, nil
	}
	if l, ok := c.loading[id]; ok {
		c.mu.Unlock()
		select {
		case <-l.done:
			return l.data, l.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l := &load{done: make(chan struct{})}
	c.loading[id] = l
	c.mu.Unlock()

	l.data, l.err = c.src.LoadBlob(ctx, pack.Data, id, nil)
	c.mu.Lock()
	delete(c.loading, id)
	if l.err == nil && len(l.data) <= c.budget {
		c.entries[id] = c.lru.PushFront(&cached{id: id, data: l.data})
		c.used += len(l.data)
		for c.used > c.budget {
			e := c.lru.Back()
			old := e.Value.(*cached)
			c.lru.Remove(e)
			delete(c.entries, old.id)
			c.used -= len(old.data)
		}
	}
	c.mu.Unlock()
	close(l.done)
	return l.data, l.err
}

// layout is where each chunk of a file starts: chunk i covers
// [starts[i], starts[i+1]). It needs only the index, no data.
type layout struct {
	ids    []crypto.ID
	starts []int64
}

func newLayout(src blobSource, n *tree.Node) (*layout, error) {
	l := &layout{ids: n.Content, starts: make([]int64, len(n.Content)+1)}
	var off int64
	for i, id := range n.Content {
		loc, ok := src.Lookup(pack.Data, id)
		if !ok {
			return nil, fmt.Errorf("%w: chunk %v of %s is not in the index", repo.ErrDamaged, id.Short(), n.Name)
		}
		l.starts[i] = off
		off += int64(loc.RawLen)
	}
	l.starts[len(n.Content)] = off
	if uint64(off) != n.Size {
		return nil, fmt.Errorf("%w: the chunks of %s add up to %d bytes, not %d", repo.ErrDamaged, n.Name, off, n.Size)
	}
	return l, nil
}

// readAt fills dst from offset off and returns how much it read (less only
// at the end of the file).
func (l *layout) readAt(ctx context.Context, c *chunkCache, dst []byte, off int64) (int, error) {
	size := l.starts[len(l.ids)]
	if off >= size || len(dst) == 0 {
		return 0, nil
	}
	i := sort.Search(len(l.ids), func(i int) bool { return l.starts[i+1] > off })
	n := 0
	for n < len(dst) && i < len(l.ids) {
		data, err := c.get(ctx, l.ids[i])
		if err != nil {
			return n, err
		}
		if int64(len(data)) != l.starts[i+1]-l.starts[i] {
			return n, fmt.Errorf("%w: chunk %v has %d bytes, the index says %d", repo.ErrDamaged, l.ids[i].Short(), len(data), l.starts[i+1]-l.starts[i])
		}
		n += copy(dst[n:], data[off+int64(n)-l.starts[i]:])
		i++
	}
	return n, nil
}
