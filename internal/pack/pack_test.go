package pack

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/runup/runup/internal/crypto"
)

func makePack(t testing.TB, key *crypto.MasterKey, n int) ([]byte, []Blob, [][]byte) {
	w := NewWriter(nil)
	var plains [][]byte
	for i := range n {
		p := bytes.Repeat([]byte{byte(i)}, 100+i)
		plains = append(plains, p)
		w.Add(BlobType(i%2), 0, key.Hash(p), len(p), key.Seal(nil, p))
	}
	data, id, blobs, err := w.Finish(key)
	if err != nil || id != key.Hash(data) {
		t.Fatalf("finish: %v", err)
	}
	return bytes.Clone(data), blobs, plains
}

func loader(data []byte) func(off, n int64) ([]byte, error) {
	return func(off, n int64) ([]byte, error) {
		if off < 0 || off+n > int64(len(data)) {
			return nil, fmt.Errorf("out of range")
		}
		return data[off : off+n], nil
	}
}

func TestRoundTrip(t *testing.T) {
	for _, enc := range []bool{true, false} {
		key, _ := crypto.NewMasterKey(enc)
		for _, n := range []int{0, 1, 5, 3000} {
			data, blobs, plains := makePack(t, key, n)
			for _, tail := range []int{4, 100, len(data)} {
				if tail > len(data) {
					continue
				}
				got, err := ReadHeader(key, int64(len(data)), data[len(data)-tail:], loader(data))
				if err != nil {
					t.Fatalf("enc=%v n=%d tail=%d: %v", enc, n, tail, err)
				}
				if len(got) != len(blobs) {
					t.Fatalf("got %d blobs, want %d", len(got), len(blobs))
				}
				for i, b := range got {
					if b != blobs[i] {
						t.Fatalf("blob %d: %+v != %+v", i, b, blobs[i])
					}
					plain, err := key.Open(nil, data[b.Offset:b.Offset+b.Length])
					if err != nil || !bytes.Equal(plain, plains[i]) || key.Hash(plain) != b.ID {
						t.Fatalf("blob %d does not open to its content", i)
					}
				}
			}
		}
	}
}

func TestDamagedHeaders(t *testing.T) {
	key, _ := crypto.NewMasterKey(true)
	data, blobs, _ := makePack(t, key, 10)
	last := blobs[len(blobs)-1]
	for i := int(last.Offset + last.Length); i < len(data); i++ {
		bad := bytes.Clone(data)
		bad[i] ^= 0x40
		if _, err := ReadHeader(key, int64(len(bad)), bad, loader(bad)); !errors.Is(err, ErrDamaged) && err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	for _, n := range []int{0, 3, 4, 50, len(data) - 1} {
		short := data[:n]
		if _, err := ReadHeader(key, int64(len(short)), short, loader(short)); err == nil {
			t.Fatalf("pack truncated to %d bytes accepted", n)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	key, _ := crypto.NewMasterKey(false)
	data, _, _ := makePack(f, key, 3)
	f.Add(data)
	f.Add([]byte{1, 2, 3, 4, 5})
	w := NewWriter(nil)
	w.AddGroup(FlagZstd, []Member{{RawLen: 3}, {RawLen: 4}}, func(dst []byte) []byte { return key.Seal(dst, []byte("abcdefg")) })
	grouped, _, _, _ := w.Finish(key)
	f.Add(grouped)
	f.Fuzz(func(t *testing.T, data []byte) {
		blobs, err := ReadHeader(key, int64(len(data)), data, loader(data))
		if err != nil {
			return
		}
		end := int64(0)
		for _, b := range blobs {
			end = int64(b.Offset) + int64(b.Length)
		}
		if end > int64(len(data)) {
			t.Fatalf("blobs past the end")
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{1, 0}, int64(0))
	f.Add([]byte{1, 1, 0, 0}, int64(10))
	f.Fuzz(func(t *testing.T, hdr []byte, dataLen int64) {
		_, _ = parseHeader(hdr, dataLen)
	})
}

func BenchmarkWriter(b *testing.B) {
	key, _ := crypto.NewMasterKey(true)
	blob := bytes.Repeat([]byte("x"), 64<<10)
	id := key.Hash(blob)
	buf := make([]byte, 0, 17<<20)
	b.SetBytes(16 << 20)
	for b.Loop() {
		w := NewWriter(buf)
		for w.Len() < 16<<20 {
			w.AddSealed(Data, 0, id, len(blob), func(dst []byte) []byte { return key.Seal(dst, blob) })
		}
		w.Finish(key)
	}
}

// A streamed pack is byte for byte the in-memory one, with the same ID.
func TestStreamWriter(t *testing.T) {
	key, _ := crypto.NewMasterKey(false)
	mem := NewWriter(nil)
	var out bytes.Buffer
	st := NewStreamWriter(&out, key.NewHash())
	for i := range 50 {
		p := bytes.Repeat([]byte{byte(i)}, 1000+i)
		for _, w := range []*Writer{mem, st} {
			w.AddSealed(Data, 0, key.Hash(p), len(p), func(dst []byte) []byte { return key.Seal(dst, p) })
		}
	}
	data, id, blobs, _ := mem.Finish(key)
	_, sid, sblobs, err := st.Finish(key)
	if err != nil || !bytes.Equal(out.Bytes(), data) || sid != id || len(sblobs) != len(blobs) {
		t.Fatalf("streamed pack differs: %v", err)
	}
}

// Groups read back with every member at its place in the group's
// plaintext, between ungrouped blobs and next to another group.
func TestGroups(t *testing.T) {
	key, _ := crypto.NewMasterKey(true)
	w := NewWriter(nil)
	single := []byte("alone")
	w.Add(Data, 0, key.Hash(single), len(single), key.Seal(nil, single))
	var want [][]byte
	for g := range 2 {
		var members []Member
		var plain []byte
		for i := range 3 + g {
			p := bytes.Repeat([]byte{byte(10*g + i)}, 7+i)
			want = append(want, p)
			members = append(members, Member{ID: key.Hash(p), RawLen: len(p)})
			plain = append(plain, p...)
		}
		w.AddGroup(FlagZstd, members, func(dst []byte) []byte { return key.Seal(dst, plain) })
	}
	data, _, blobs, err := w.Finish(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadHeader(key, int64(len(data)), data, loader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1+len(want) || !slices.Equal(got, blobs) {
		t.Fatalf("header %+v, writer said %+v", got, blobs)
	}
	for i, b := range got[1:] {
		if !b.Grouped() || b.Flags&FlagZstd == 0 {
			t.Fatalf("member %d has flags %d", i, b.Flags)
		}
		plain, err := key.Open(nil, data[b.Offset:b.Offset+b.Length])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain[b.Inner:b.Inner+b.RawLen], want[i]) {
			t.Fatalf("member %d: wrong plaintext", i)
		}
	}
	if got[1].Offset == got[4].Offset || got[1].Offset != got[3].Offset {
		t.Fatalf("groups share or split offsets: %+v", got)
	}

	// A continuation entry without a group before it is damage.
	hdr := []byte{headerVersion2, 1, byte(Data), byte(FlagGrouped)}
	hdr = append(hdr, make([]byte, crypto.IDSize+8)...)
	if _, err := parseHeader(hdr, 0); !errors.Is(err, ErrDamaged) {
		t.Fatalf("orphan member accepted: %v", err)
	}
	// Version 1 headers cannot hold groups.
	hdr[0] = headerVersion
	if _, err := parseHeader(hdr, 0); !errors.Is(err, ErrDamaged) {
		t.Fatalf("group in a version 1 header accepted: %v", err)
	}
}
