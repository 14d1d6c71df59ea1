package repo

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
)

// bomb is zstd frames of size zeros, written without holding them: a few
// kilobytes that decompress to size bytes.
func bomb(t testing.TB, size int64, declare bool) []byte {
	t.Helper()
	var out bytes.Buffer
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest)}
	if !declare {
		opts = append(opts, zstd.WithSingleSegment(false))
	}
	w, err := zstd.NewWriter(&out, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.LimitReader(zeros{}, size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// Decompression stops at the blob's stated length, for every frame and
// every group, whatever the frames claim: a blob of a few kilobytes from
// hostile storage costs kilobytes, not the hundreds of megabytes it expands
// to.
func TestDecompressBounded(t *testing.T) {
	c, err := newCompressor(CompressAuto)
	if err != nil {
		t.Fatal(err)
	}
	small := c.enc.EncodeAll(bytes.Repeat([]byte("runup "), 20), nil) // 120 bytes
	big := bomb(t, 256<<20, false)
	bigDeclared := bomb(t, 256<<20, true)
	for _, tc := range []struct {
		name   string
		src    []byte
		rawLen int
	}{
		{"one frame, no size stated", big, 4096},
		{"one frame stating its size", bigDeclared, 4096},
		{"a small frame, then a bomb", append(bytes.Clone(small), big...), 120},
		{"a small frame stating its size, then a bomb", append(bytes.Clone(small), bigDeclared...), 120},
		{"group: a bomb", big, -maxGroup},
		{"group: a small frame, then a bomb", append(bytes.Clone(small), big...), -maxGroup},
	} {
		var derr error
		n := allocated(func() { _, derr = c.decompress(nil, tc.src, tc.rawLen) })
		if derr == nil {
			t.Errorf("%s: decompressed", tc.name)
		}
		if n > 16<<20 {
			t.Errorf("%s: allocated %d MiB", tc.name, n>>20)
		}
	}
	// What the encoder writes still decodes, alone and in a buffer of any size.
	for _, dst := range [][]byte{nil, make([]byte, 0, 10), make([]byte, 0, 1<<20)} {
		out, err := c.decompress(dst, small, 120)
		if err != nil || len(out) != 120 {
			t.Fatalf("decompress: %d bytes, %v", len(out), err)
		}
		if out, err := c.decompress(dst, small, -maxGroup); err != nil || len(out) != 120 {
			t.Fatalf("decompress a group: %d bytes, %v", len(out), err)
		}
	}
	// The bound is on the call: a reused buffer keeps its capacity (a
	// shrunken one was reallocated for every larger blob, a third of a
	// restore's time).
	if out, _ := c.decompress(make([]byte, 0, 1<<20), small, 120); cap(out) != 1<<20 {
		t.Fatalf("the buffer came back with capacity %d", cap(out))
	}
	if _, err := c.decompress(nil, small, 119); err == nil {
		t.Fatal("a blob one byte longer than stated was accepted")
	}
	// The encoder states a frame's size from 256 bytes on; a smaller group
	// (a backup's last) must read back: it once could not.
	for _, n := range []int{64, 120, 255, 256, 1000, 600_000} {
		src := bytes.Repeat([]byte("runup "), n/6+1)[:n]
		out, err := c.decompress(nil, c.enc.EncodeAll(src, nil), -maxGroup)
		if err != nil || !bytes.Equal(out, src) {
			t.Fatalf("group of %d bytes: %v", n, err)
		}
	}
}

// The same through the repository's decoder: a sealed group that is a bomb
// fails as damage.
func TestDecodeGroupBomb(t *testing.T) {
	_, r := newRepo(t, nil)
	sealed := r.key.Seal(nil, bomb(t, 256<<20, false))
	loc := index.Location{Blob: pack.Blob{Type: pack.Data, Flags: pack.FlagZstd | pack.FlagGrouped, Length: uint32(len(sealed)), RawLen: 10}}
	var err error
	n := allocated(func() { _, err = r.NewDecoder().Decode(loc, sealed) })
	if err == nil || n > 16<<20 {
		t.Fatalf("group bomb: %v, %d MiB allocated", err, n>>20)
	}
}

func FuzzDecompress(f *testing.F) {
	c, err := newCompressor(CompressAuto)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.enc.EncodeAll([]byte("hello, hello, hello, hello"), nil), 26)
	f.Add(bomb(f, 1<<20, false), 100)
	f.Add(bomb(f, 1<<20, true), -maxGroup)
	f.Fuzz(func(t *testing.T, src []byte, rawLen int) {
		rawLen = max(min(rawLen, 1<<20), -maxGroup)
		out, err := c.decompress(nil, src, rawLen)
		if err != nil {
			return
		}
		if rawLen >= 0 && len(out) != rawLen || rawLen < 0 && len(out) > -rawLen {
			t.Fatalf("%d bytes out, bound %d", len(out), rawLen)
		}
	})
}

// FuzzDecodeGroup feeds the decoder sealed groups and member locations of
// any shape: it must fail cleanly or return exactly the member, verified.
func FuzzDecodeGroup(f *testing.F) {
	k, _ := crypto.NewMasterKey(false)
	r := &Repository{key: k}
	var err error
	if r.comp, err = newCompressor(CompressAuto); err != nil {
		f.Fatal(err)
	}
	member := []byte("a small file")
	group := append(bytes.Repeat([]byte{7}, 100), member...)
	f.Add(r.comp.enc.EncodeAll(group, nil), uint32(100), uint32(len(member)), true)
	f.Add(group, uint32(100), uint32(len(member)), false)
	f.Fuzz(func(t *testing.T, body []byte, inner, rawLen uint32, zstdFlag bool) {
		flags := pack.FlagGrouped
		if zstdFlag {
			flags |= pack.FlagZstd
		}
		sealed := k.Seal(nil, body)
		id := k.Hash(member)
		loc := index.Location{Blob: pack.Blob{Type: pack.Data, Flags: flags, ID: id, Length: uint32(len(sealed)), RawLen: rawLen, Inner: inner}}
		out, err := r.NewDecoder().Decode(loc, sealed)
		if err == nil && !bytes.Equal(out, member) {
			t.Fatalf("decoded %q", out)
		}
	})
}
