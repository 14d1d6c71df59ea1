package index

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
)

func randID(r *rand.Rand) crypto.ID {
	var id crypto.ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

func TestEntrySize(t *testing.T) {
	if s := unsafe.Sizeof(Entry{}); s > 64 {
		t.Fatalf("index entry is %d bytes; the target is at most 64", s)
	}
}

func TestAddLookupAcrossMerges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := New()
	want := map[Key]Location{}
	for p := range 300 {
		pid := randID(r)
		var blobs []pack.Blob
		for i := range 100 {
			b := pack.Blob{Type: pack.BlobType(i % 2), ID: randID(r), Offset: uint32(i * 10), Length: 10, RawLen: uint32(p)}
			blobs = append(blobs, b)
			want[Key{b.ID, b.Type}] = Location{PackID: pid, Blob: b}
		}
		x.AddPack(pid, blobs)
	}
	if x.Len() != len(want) {
		t.Fatalf("Len %d, want %d", x.Len(), len(want))
	}
	for k, loc := range want {
		got, ok := x.Lookup(k.Type, k.ID)
		if !ok || got != loc {
			t.Fatalf("lookup %v: %+v %v, want %+v", k, got, ok, loc)
		}
		if x.Has(1-k.Type, k.ID) {
			t.Fatalf("%v found with the other type", k)
		}
	}
	if x.Has(pack.Data, randID(r)) {
		t.Fatal("unknown ID found")
	}
	// A duplicate keeps its first location.
	var some Key
	for k := range want {
		some = k
		break
	}
	x.AddPack(randID(r), []pack.Blob{{ID: some.ID, Type: some.Type, Length: 99}})
	if got, _ := x.Lookup(some.Type, some.ID); got != want[some] {
		t.Fatal("duplicate replaced the first location")
	}
	n := 0
	x.Each(func(Location) { n++ })
	if n != len(want) {
		t.Fatalf("Each visited %d", n)
	}
}

// A file's chunk and a directory's tree with the same ID are two blobs, in
// the pending map and in the sorted array alike.
func TestTypeIsPartOfIdentity(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, merge := range []bool{false, true} {
		x := New()
		id := randID(r)
		x.AddPack(crypto.ID{1}, []pack.Blob{{Type: pack.Data, ID: id, Length: 2, RawLen: 2}})
		if merge {
			x.mu.Lock()
			x.mergeLocked()
			x.mu.Unlock()
		}
		if x.Has(pack.Tree, id) {
			t.Fatal("a data blob answers for a tree")
		}
		x.AddPack(crypto.ID{2}, []pack.Blob{{Type: pack.Tree, ID: id, Length: 3, RawLen: 2}})
		x.mu.Lock()
		x.mergeLocked()
		x.mu.Unlock()
		d, okd := x.Lookup(pack.Data, id)
		tr, okt := x.Lookup(pack.Tree, id)
		if !okd || !okt || d.PackID != (crypto.ID{1}) || tr.PackID != (crypto.ID{2}) || x.Len() != 2 {
			t.Fatalf("merge=%v: data %+v %v, tree %+v %v", merge, d, okd, tr, okt)
		}
		if any, ok := x.LookupAny(id); !ok || any.Type != pack.Data {
			t.Fatalf("LookupAny: %+v %v", any, ok)
		}
	}
}

func TestFileRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var packs []PackBlobs
	for range 5 {
		p := PackBlobs{ID: randID(r)}
		for i := range 7 {
			p.Blobs = append(p.Blobs, pack.Blob{Type: pack.Tree, Flags: pack.FlagZstd, ID: randID(r), Offset: uint32(i) << 20, Length: 1 << 31, RawLen: 5})
		}
		packs = append(packs, p)
	}
	packs = append(packs, PackBlobs{ID: randID(r), Blobs: []pack.Blob{}})
	if Encode(packs)[0] != fileVersion {
		t.Fatal("a file without groups is not written as version 1")
	}
	g := PackBlobs{ID: randID(r)}
	for i := range 3 {
		g.Blobs = append(g.Blobs, pack.Blob{Type: pack.Data, Flags: pack.FlagZstd | pack.FlagGrouped, ID: randID(r), Offset: 40, Length: 900, RawLen: 300, Inner: uint32(300 * i)})
	}
	packs = append(packs, g)
	got, err := Decode(Encode(packs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, packs) {
		t.Fatal("index file round trip differs")
	}
	enc := Encode(packs)
	for n := range len(enc) {
		if _, err := Decode(enc[:n]); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode([]PackBlobs{{Blobs: []pack.Blob{{Length: 3}}}}))
	f.Add(Encode([]PackBlobs{{Blobs: []pack.Blob{{Flags: pack.FlagGrouped, Length: 30, RawLen: 5}, {Flags: pack.FlagGrouped, Length: 30, RawLen: 7, Inner: 5}}}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := Decode(b)
		if err == nil {
			if again, err := Decode(Encode(packs)); err != nil || !reflect.DeepEqual(again, packs) {
				t.Fatalf("re-encoding changed the index")
			}
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	x := New()
	var ids []crypto.ID
	for range 100 {
		var blobs []pack.Blob
		for range 10000 {
			id := randID(r)
			ids = append(ids, id)
			blobs = append(blobs, pack.Blob{ID: id})
		}
		x.AddPack(randID(r), blobs)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		x.Has(pack.Data, ids[i%len(ids)])
		i++
	}
}
