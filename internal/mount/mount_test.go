package mount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// blobs is a blobSource in memory that counts loads.
type blobs struct {
	data  map[crypto.ID][]byte
	loads atomic.Int64
	delay time.Duration
}

func (b *blobs) Lookup(t pack.BlobType, id crypto.ID) (index.Location, bool) {
	d, ok := b.data[id]
	if !ok {
		return index.Location{}, false
	}
	var loc index.Location
	loc.RawLen = uint32(len(d))
	return loc, true
}

func (b *blobs) LoadBlob(ctx context.Context, t pack.BlobType, id crypto.ID, dst []byte) ([]byte, error) {
	b.loads.Add(1)
	time.Sleep(b.delay)
	d, ok := b.data[id]
	if !ok {
		return nil, errors.New("no such blob")
	}
	return append(dst[:0], d...), nil
}

// file splits content into chunks of the given sizes.
func file(b *blobs, content []byte, sizes ...int) *tree.Node {
	n := &tree.Node{Name: "f", Type: tree.File, Size: uint64(len(content))}
	for _, s := range sizes {
		var id crypto.ID
		id[0], id[1] = byte(len(b.data)), byte(len(b.data)>>8)
		b.data[id] = content[:s]
		content = content[s:]
		n.Content = append(n.Content, id)
	}
	return n
}

func TestReadAt(t *testing.T) {
	b := &blobs{data: map[crypto.ID][]byte{}}
	content := make([]byte, 10_000)
	rnd := rand.New(rand.NewPCG(1, 1))
	for i := range content {
		content[i] = byte(rnd.Uint32())
	}
	n := file(b, content, 1000, 1, 3999, 5000)
	l, err := newLayout(b, n)
	if err != nil {
		t.Fatal(err)
	}
	c := newChunkCache(b, 1<<20)
	tests := []struct {
		off  int64
		size int
		want int
	}{
		{0, 100, 100},
		{0, 10_000, 10_000},
		{999, 3, 3},         // across the one-byte chunk
		{1000, 1, 1},        // exactly the one-byte chunk
		{4999, 2, 2},        // across the last boundary
		{9_990, 100, 10},    // past the end: short
		{10_000, 100, 0},    // at the end
		{20_000, 100, 0},    // beyond
		{123, 9_000, 9_000}, // most of it
	}
	for _, tt := range tests {
		dst := make([]byte, tt.size)
		got, err := l.readAt(context.Background(), c, dst, tt.off)
		if err != nil || got != tt.want {
			t.Fatalf("readAt(%d, %d) = %d, %v; want %d", tt.off, tt.size, got, err, tt.want)
		}
		if got > 0 && !bytes.Equal(dst[:got], content[tt.off:tt.off+int64(got)]) {
			t.Fatalf("readAt(%d, %d): wrong bytes", tt.off, tt.size)
		}
	}
	if b.loads.Load() != 4 {
		t.Errorf("%d loads for 4 chunks", b.loads.Load())
	}
	// A size that the chunks do not add up to is damage, found at open.
	n.Size++
	if _, err := newLayout(b, n); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("layout of a damaged file: %v", err)
	}
	n.Size--
	n.Content = append(n.Content, crypto.ID{0xff})
	if _, err := newLayout(b, n); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("layout with an unknown chunk: %v", err)
	}
}

func TestChunkCache(t *testing.T) {
	b := &blobs{data: map[crypto.ID][]byte{}, delay: 20 * time.Millisecond}
	var ids []crypto.ID
	for i := range 10 {
		id := crypto.ID{byte(i)}
		b.data[id] = bytes.Repeat([]byte{byte(i)}, 100)
		ids = append(ids, id)
	}
	c := newChunkCache(b, 350) // three chunks fit
	// Concurrent readers of one chunk cause one load.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, err := c.get(context.Background(), ids[0]); err != nil || d[0] != 0 {
				t.Error(d, err)
			}
		}()
	}
	wg.Wait()
	if n := b.loads.Load(); n != 1 {
		t.Fatalf("%d loads of one chunk", n)
	}
	for _, id := range ids[1:4] {
		c.get(context.Background(), id)
	}
	if c.used > 350 {
		t.Fatalf("cache holds %d bytes, budget 350", c.used)
	}
	c.get(context.Background(), ids[3]) // cached
	c.get(context.Background(), ids[0]) // evicted: loaded again
	if n := b.loads.Load(); n != 5 {
		t.Fatalf("%d loads, want 5", n)
	}
}

func TestGroups(t *testing.T) {
	js := map[int]*repo.Job{
		1: {Project: "site", Host: "web1", Tags: []string{"daily"}},
		2: {Project: "db", Host: "web1", Tags: []string{"daily", "before-upgrade"}},
		3: {Project: "site", Host: "web2"},
		// Names from storage that could mean a path are left out.
		4: {Project: "../evil", Host: "", Tags: []string{"a/b", ".", ".."}},
	}
	tests := []struct {
		kind groupKind
		want string
	}{
		{byProject, "map[db:[2] site:[1 3]]"},
		{byHost, "map[web1:[1 2] web2:[3]]"},
		{byTag, "map[before-upgrade:[2] daily:[1 2]]"},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(groups(js, tt.kind)); got != tt.want {
			t.Errorf("kind %d: %s, want %s", tt.kind, got, tt.want)
		}
	}
}
