package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
)

// counting counts what reaches the storage.
type counting struct {
	backend.Backend
	loads atomic.Int64
	bytes atomic.Int64
}

func (c *counting) Load(ctx context.Context, h backend.Handle, off, n int64) ([]byte, error) {
	c.loads.Add(1)
	b, err := c.Backend.Load(ctx, h, off, n)
	c.bytes.Add(int64(len(b)))
	return b, err
}

func setup(t *testing.T) (*counting, *Backend, backend.Handle, []byte) {
	t.Helper()
	lb, _ := local.Open(t.TempDir())
	lb.Create()
	ctx := context.Background()
	pack := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB of "trees"
	h := backend.Handle{Type: backend.Data, Name: fmt.Sprintf("%064x", 7)}
	if err := lb.Save(ctx, h, pack); err != nil {
		t.Fatal(err)
	}
	c := &counting{Backend: lb}
	cb, err := Wrap(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cb.SetTreePacks(func(string) bool { return true })
	return c, cb, h, pack
}

// The cost of loading trees is linear in the number of directories: a
// cached tree pack is fetched once and checked once per process, then each
// directory's range is read alone (it was read and hashed whole for every
// directory, which made a backup of 12k directories over S3 take 26 s).
func TestLinearInDirectories(t *testing.T) {
	ctx := context.Background()
	for _, dirs := range []int{1000, 4000} {
		c, cb, h, pack := setup(t)
		for i := range dirs {
			off := int64(i*97) % int64(len(pack)-300)
			got, err := cb.Load(ctx, h, off, 300)
			if err != nil || !bytes.Equal(got, pack[off:off+300]) {
				t.Fatalf("range %d: %v", i, err)
			}
		}
		if n := c.loads.Load(); n != 1 {
			t.Errorf("%d directories: %d loads from the storage, want 1", dirs, n)
		}
		if n := cb.Hashed.Load(); n > int64(len(pack)) {
			t.Errorf("%d directories: %d bytes hashed, want at most the pack's %d", dirs, n, len(pack))
		}
		// A new process checks the cached file once more, then reads ranges.
		again, _ := Wrap(c, filepath.Dir(cb.dir))
		again.SetTreePacks(func(string) bool { return true })
		for range dirs {
			if _, err := again.Load(ctx, h, 10, 300); err != nil {
				t.Fatal(err)
			}
		}
		if c.loads.Load() != 1 || again.Hashed.Load() != int64(len(pack)) {
			t.Errorf("second process: %d loads, %d bytes hashed", c.loads.Load(), again.Hashed.Load())
		}
	}
}

// A cached file that is damaged is fetched again, never served.
func TestDamagedCacheRefetched(t *testing.T) {
	ctx := context.Background()
	c, cb, h, pack := setup(t)
	if _, err := cb.Load(ctx, h, 0, 100); err != nil {
		t.Fatal(err)
	}
	p := cb.path(h)
	b, _ := os.ReadFile(p)
	b[5] ^= 1
	os.WriteFile(p, b, 0o600)
	fresh, _ := Wrap(c, filepath.Dir(cb.dir))
	fresh.SetTreePacks(func(string) bool { return true })
	got, err := fresh.Load(ctx, h, 0, 100)
	if err != nil || !bytes.Equal(got, pack[:100]) || c.loads.Load() != 2 {
		t.Fatalf("damaged cache: %v, %d loads", err, c.loads.Load())
	}
}
