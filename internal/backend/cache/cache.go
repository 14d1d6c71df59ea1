// Package cache keeps a local copy of a remote repository's metadata (index
// files, job records, key files and the packs that hold trees), so that
// listing jobs, browsing them and incremental backups do not download it
// again.
//
// Cached files are write-once in the repository, so a name never changes
// meaning; listings drop what the repository no longer has. The cache is
// verified, never trusted blindly: every cached file carries a BLAKE3 sum
// of its content, a file that fails it is dropped and fetched again, and a
// changed config (a new repository at the same location) empties the cache.
// The repository layer authenticates all content on top of that.
package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"

	"github.com/runup/runup/internal/backend"
)

// Backend serves cacheable reads from a directory.
type Backend struct {
	backend.Backend
	dir string
	// TreePack says whether a pack holds trees (and so is worth caching
	// whole); the repository sets it once its index is loaded.
	mu       sync.RWMutex
	treePack func(name string) bool
	// verified are cached files whose checksum this process checked: a
	// range of one is then read with pread, not the whole file again (a
	// backup loads one tree per directory, and a tree pack holds
	// thousands: reading and hashing it whole per load was quadratic).
	verified map[string]bool

	Hits, Misses atomic.Int64
	// Hashed counts the bytes of cached files checked: each file once.
	Hashed atomic.Int64
}

// Dir is the default cache directory: $XDG_CACHE_HOME/runup or
// ~/.cache/runup.
func Dir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "runup"), nil
}

// Wrap caches be's metadata under root, in a folder for the location.
func Wrap(be backend.Backend, root string) (*Backend, error) {
	sum := blake3.Sum256([]byte(be.Location()))
	dir := filepath.Join(root, hex.EncodeToString(sum[:12]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Backend{Backend: be, dir: dir, verified: map[string]bool{}}, nil
}

// SetTreePacks tells which packs hold trees.
func (b *Backend) SetTreePacks(f func(name string) bool) {
	b.mu.Lock()
	b.treePack = f
	b.mu.Unlock()
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.Backend }

func (b *Backend) cacheable(h backend.Handle) bool {
	switch h.Type {
	case backend.Index, backend.Jobs, backend.Keys:
		return true
	case backend.Data:
		b.mu.RLock()
		defer b.mu.RUnlock()
		return b.treePack != nil && b.treePack(h.Name)
	}
	return false
}

func (b *Backend) path(h backend.Handle) string {
	return filepath.Join(b.dir, string(h.Type), h.Name)
}

// get returns a verified cached file, or nil.
func (b *Backend) get(h backend.Handle) []byte {
	raw, err := os.ReadFile(b.path(h))
	if err != nil || len(raw) < 32 {
		return nil
	}
	body, sum := raw[:len(raw)-32], raw[len(raw)-32:]
	b.Hashed.Add(int64(len(body)))
	if want := blake3.Sum256(body); !bytes.Equal(sum, want[:]) {
		os.Remove(b.path(h)) // damaged: fetch again
		return nil
	}
	b.mu.Lock()
	b.verified[b.path(h)] = true
	b.mu.Unlock()
	return body
}

// getRange reads a range of a cached file this process verified already;
// ok is false when it did not, or the file is gone.
func (b *Backend) getRange(h backend.Handle, offset, length int64) ([]byte, bool) {
	p := b.path(h)
	b.mu.RLock()
	ok := b.verified[p]
	b.mu.RUnlock()
	if !ok || length <= 0 {
		return nil, false
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || offset+length > fi.Size()-32 {
		return nil, false
	}
	buf := make([]byte, length)
	if _, err := f.ReadAt(buf, offset); err != nil {
		return nil, false
	}
	return buf, true
}

func (b *Backend) put(h backend.Handle, data []byte) {
	p := b.path(h)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := p + ".tmp-" + hex.EncodeToString(rnd[:])
	sum := blake3.Sum256(data)
	if err := os.WriteFile(tmp, append(bytes.Clone(data), sum[:]...), 0o600); err != nil {
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return
	}
	// Written from the bytes in hand: as good as verified.
	b.mu.Lock()
	b.verified[p] = true
	b.mu.Unlock()
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	if h.Type == backend.Config {
		data, err := b.Backend.Load(ctx, h, offset, length)
		if err == nil {
			b.checkConfig(data)
		}
		return data, err
	}
	if !b.cacheable(h) {
		return b.Backend.Load(ctx, h, offset, length)
	}
	if buf, ok := b.getRange(h, offset, length); ok {
		b.Hits.Add(1)
		return buf, nil
	}
	whole := b.get(h)
	if whole == nil {
		b.Misses.Add(1)
		var err error
		if whole, err = b.Backend.Load(ctx, h, 0, 0); err != nil {
			return nil, err
		}
		b.put(h, whole)
	} else {
		b.Hits.Add(1)
	}
	if err := backend.CheckRange(h, int64(len(whole)), offset, length); err != nil {
		return nil, err
	}
	if length == 0 {
		length = int64(len(whole)) - offset
	}
	return whole[offset : offset+length], nil
}

// checkConfig empties the cache when the repository at this location is
// not the one it was filled from.
func (b *Backend) checkConfig(cfg []byte) {
	sum := blake3.Sum256(cfg)
	p := filepath.Join(b.dir, "config.sum")
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, sum[:]) {
		return
	}
	for _, t := range []backend.FileType{backend.Index, backend.Jobs, backend.Keys, backend.Data} {
		os.RemoveAll(filepath.Join(b.dir, string(t)))
	}
	_ = os.WriteFile(p, sum[:], 0o600)
}

// List implements backend.Backend; it also drops cached files the
// repository no longer has.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	seen := map[string]bool{}
	err := b.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		seen[fi.Name] = true
		return fn(fi)
	})
	if err != nil {
		return err
	}
	entries, _ := os.ReadDir(filepath.Join(b.dir, string(t)))
	for _, e := range entries {
		if !seen[e.Name()] {
			os.Remove(filepath.Join(b.dir, string(t), e.Name()))
		}
	}
	return nil
}

// Save implements backend.Backend; what is written is cached at once.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	err := b.Backend.Save(ctx, h, data)
	if err == nil && (b.cacheable(h) || backend.IsMetadata(ctx)) {
		b.put(h, data)
	}
	return err
}

// SaveReader implements backend.ReaderSaver when the wrapped backend does;
// a file to cache (a pack of trees) is read back from r.
func (b *Backend) SaveReader(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64) error {
	rs, ok := b.Backend.(backend.ReaderSaver)
	if !ok {
		return errors.New("cache: the wrapped backend cannot save from a reader")
	}
	err := rs.SaveReader(ctx, h, r, size)
	if err == nil && (b.cacheable(h) || backend.IsMetadata(ctx)) {
		data := make([]byte, size)
		if _, rerr := r.ReadAt(data, 0); rerr == nil || rerr == io.EOF {
			b.put(h, data)
		}
	}
	return err
}

// CanSaveReader reports whether SaveReader works.
func (b *Backend) CanSaveReader() bool {
	if c, ok := b.Backend.(interface{ CanSaveReader() bool }); ok {
		return c.CanSaveReader()
	}
	_, ok := b.Backend.(backend.ReaderSaver)
	return ok
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	b.mu.Lock()
	delete(b.verified, b.path(h))
	b.mu.Unlock()
	os.Remove(b.path(h))
	return b.Backend.Remove(ctx, h)
}
