package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
)

// memBackend keeps files in memory, for the fuzzer's speed.
type memBackend struct {
	mu    sync.Mutex
	files map[backend.Handle][]byte
}

func newMem() *memBackend { return &memBackend{files: map[backend.Handle][]byte{}} }

func (m *memBackend) Location() string { return "mem" }
func (m *memBackend) Close() error     { return nil }

func (m *memBackend) Save(_ context.Context, h backend.Handle, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[h]; ok {
		return fmt.Errorf("%v: %w", h, backend.ErrExists)
	}
	m.files[h] = append([]byte(nil), data...)
	return nil
}

func (m *memBackend) Load(_ context.Context, h backend.Handle, off, n int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[h]
	if !ok {
		return nil, fmt.Errorf("%v: %w", h, backend.ErrNotExist)
	}
	if err := backend.CheckRange(h, int64(len(b)), off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		n = int64(len(b)) - off
	}
	return append([]byte(nil), b[off:off+n]...), nil
}

func (m *memBackend) Stat(_ context.Context, h backend.Handle) (backend.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[h]
	if !ok {
		return backend.FileInfo{}, fmt.Errorf("%v: %w", h, backend.ErrNotExist)
	}
	return backend.FileInfo{Name: h.Name, Size: int64(len(b))}, nil
}

func (m *memBackend) List(_ context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	m.mu.Lock()
	var fis []backend.FileInfo
	for h, b := range m.files {
		if h.Type == t {
			fis = append(fis, backend.FileInfo{Name: h.Name, Size: int64(len(b))})
		}
	}
	m.mu.Unlock()
	for _, fi := range fis {
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

func (m *memBackend) Remove(_ context.Context, h backend.Handle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, h)
	return nil
}

// FuzzOpen opens a repository whose config and key file are any bytes:
// opening must fail cleanly or give a supported, consistent repository, and
// never do unbounded work (the fuzzer reports hangs and huge allocations).
func FuzzOpen(f *testing.F) {
	ctx := context.Background()
	for _, pw := range [][]byte{nil, []byte("pw")} {
		m := newMem()
		if _, err := Init(ctx, m, InitOptions{Password: pw, KDF: fastKDF}); err != nil {
			f.Fatal(err)
		}
		var key []byte
		for h, b := range m.files {
			if h.Type == backend.Keys {
				key = b
			}
		}
		f.Add(m.files[backend.Handle{Type: backend.Config}], key, true, "pw")
	}
	f.Add([]byte("{}"), []byte(`{"format":3,"kdf":"argon2id","params":{"time":4,"memory":65536,"threads":4},"salt":"AAAAAAAAAAA=","data":""}`), true, "pw")
	f.Add([]byte{}, []byte(`{"format":99}`), false, "")
	f.Fuzz(func(t *testing.T, cfg, key []byte, consistentName bool, password string) {
		var kf struct {
			Params *crypto.KDFParams `json:"params"`
		}
		if json.Unmarshal(key, &kf) == nil && kf.Params != nil && kf.Params.Memory > 64 {
			// Costly but legal derivations would only slow the fuzzer;
			// their bounds are tested in crypto.
			return
		}
		m := newMem()
		m.files[backend.Handle{Type: backend.Config}] = cfg
		name := "0000000000000000000000000000000000000000000000000000000000000000"
		if consistentName {
			name = KeyFileName(key)
		}
		m.files[backend.Handle{Type: backend.Keys, Name: name}] = key
		r, err := Open(ctx, m, func() ([]byte, error) { return []byte(password), nil }, Options{})
		if err != nil {
			return
		}
		c := r.Config()
		if !formatSupported(c.Version) || c.Encrypted != r.Key().Encrypted || c.ChunkMax != chunkMax {
			t.Fatalf("opened an inconsistent repository: %+v", c)
		}
	})
}
