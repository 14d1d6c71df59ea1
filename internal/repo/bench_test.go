package repo

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/runup/runup/internal/pack"
)

// sourceLike is compressible text, like the source trees RunUp is measured on.
func sourceLike(n int) []byte {
	r := rand.New(rand.NewPCG(1, 1))
	words := []string{"func ", "return ", "if err != nil {\n", "\t", "}\n", "int ", "for i := range ", "x", "y", "buf", " = ", "(", ")", "\n"}
	b := make([]byte, 0, n)
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}

func BenchmarkCompress(b *testing.B) {
	for _, c := range []struct {
		name string
		mode Compression
	}{{"auto", CompressAuto}, {"better", CompressBetter}, {"max", CompressMax}} {
		b.Run(c.name, func(b *testing.B) {
			comp, _ := newCompressor(c.mode)
			data := sourceLike(1 << 20)
			var dst []byte
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				dst, _ = comp.compress(dst[:0], data, true)
			}
		})
	}
}

// BenchmarkSaveBlob is the whole write path of a new chunk: compress, seal,
// append to a pack, write full packs to a local repository.
func BenchmarkSaveBlob(b *testing.B) {
	dir := b.TempDir()
	be := mustLocal(b, dir)
	ctx := context.Background()
	if _, err := Init(ctx, be, InitOptions{Password: []byte("pw"), KDF: fastKDF}); err != nil {
		b.Fatal(err)
	}
	r, err := Open(ctx, be, func() ([]byte, error) { return []byte("pw"), nil }, Options{Uploads: 1})
	if err != nil {
		b.Fatal(err)
	}
	data := sourceLike(1 << 20)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16) // a new chunk each time
		i++
		if _, err := r.SaveBlob(ctx, pack.Data, r.Key().Hash(data), data); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	os.RemoveAll(filepath.Join(dir, "data"))
}

// Incompressible data costs a sample, not a full compression.
func BenchmarkCompressRandom(b *testing.B) {
	comp, _ := newCompressor(CompressAuto)
	data := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(2, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	var dst []byte
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var ok bool
		if dst, ok = comp.compress(dst[:0], data, true); ok {
			b.Fatal("random data compressed")
		}
	}
}
