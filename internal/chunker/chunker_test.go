package chunker

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

func split(t testing.TB, key []byte, data []byte) [][]byte {
	c, err := New(key, make([]byte, 2*MaxSize))
	if err != nil {
		t.Fatal(err)
	}
	c.Reset(bytes.NewReader(data))
	var out [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch))
	}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func TestChunksCoverInputWithinBounds(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, n := range []int{0, 1, MinSize - 1, MinSize, MinSize + 1, MaxSize, MaxSize + 1, 40 << 20} {
		data := randBytes(uint64(n), n)
		chunks := split(t, key, data)
		if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
			t.Fatalf("n=%d: chunks do not rebuild the input", n)
		}
		for i, c := range chunks {
			if len(c) > MaxSize || (len(c) < MinSize && i != len(chunks)-1) {
				t.Fatalf("n=%d: chunk %d has size %d", n, i, len(c))
			}
		}
		if n == 0 && len(chunks) != 0 {
			t.Fatalf("empty input gave %d chunks", len(chunks))
		}
	}
}

// A one-byte change in a large file must change about one chunk, not all.
func TestLocalChangeTouchesFewChunks(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	data := randBytes(7, 64<<20)
	before := split(t, key, data)
	changed := bytes.Clone(data)
	changed[30<<20] ^= 0xff
	after := split(t, key, changed)
	seen := map[string]bool{}
	for _, c := range before {
		seen[string(c)] = true
	}
	newChunks := 0
	for _, c := range after {
		if !seen[string(c)] {
			newChunks++
		}
	}
	if newChunks > 2 {
		t.Fatalf("one changed byte gave %d new chunks of %d", newChunks, len(after))
	}
	if len(before) < 30 || len(before) > 130 {
		t.Fatalf("64 MiB gave %d chunks; want about 64", len(before))
	}
}

func TestKeyChangesBoundaries(t *testing.T) {
	data := randBytes(3, 32<<20)
	a := split(t, []byte("0123456789abcdef0123456789abcdef"), data)
	b := split(t, []byte("fedcba9876543210fedcba9876543210"), data)
	if len(a) == len(b) {
		same := true
		for i := range a {
			if len(a[i]) != len(b[i]) {
				same = false
			}
		}
		if same {
			t.Fatal("two keys cut identical boundaries")
		}
	}
}

func BenchmarkChunker(b *testing.B) {
	data := randBytes(1, 64<<20)
	c, _ := New([]byte("0123456789abcdef0123456789abcdef"), make([]byte, 2*MaxSize))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c.Reset(bytes.NewReader(data))
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}
