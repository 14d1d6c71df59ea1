package index

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
)

// files makes n index files' worth of random packs; some blobs repeat
// across packs, and some have both types.
func files(r *rand.Rand, n, packsPer, blobsPer int) map[string][]PackBlobs {
	out := map[string][]PackBlobs{}
	var some []crypto.ID
	for f := range n {
		var packs []PackBlobs
		for range packsPer {
			p := PackBlobs{ID: randID(r)}
			for i := range blobsPer {
				b := pack.Blob{Type: pack.BlobType(r.IntN(2)), ID: randID(r), Offset: uint32(i * 100), Length: 100, RawLen: uint32(r.IntN(1000))}
				if len(some) > 0 && r.IntN(20) == 0 {
					b.ID = some[r.IntN(len(some))] // a duplicate, or the other type
				}
				some = append(some, b.ID)
				p.Blobs = append(p.Blobs, b)
			}
			packs = append(packs, p)
		}
		out[fmt.Sprintf("%064x", f)] = packs
	}
	return out
}

func source(fs map[string][]PackBlobs, names []string) StoreSource {
	return func(add func(string, []PackBlobs) error) error {
		for _, n := range names {
			if err := add(n, fs[n]); err != nil {
				return err
			}
		}
		return nil
	}
}

// reference is the in-memory index of the same files, which the store
// must answer exactly as.
func reference(fs map[string][]PackBlobs, names []string) *Index {
	x := New()
	for _, n := range names {
		for _, p := range fs[n] {
			x.AddPack(p.ID, p.Blobs)
		}
	}
	return x
}

func sameAnswers(t *testing.T, want, got *Index, fs map[string][]PackBlobs, r *rand.Rand) {
	t.Helper()
	n := 0
	for _, packs := range fs {
		for _, p := range packs {
			for _, b := range p.Blobs {
				for _, ty := range []pack.BlobType{pack.Data, pack.Tree} {
					w, wok := want.Lookup(ty, b.ID)
					g, gok := got.Lookup(ty, b.ID)
					if wok != gok || wok && (g.Blob != w.Blob || !got.HasPack(g.PackID)) {
						t.Fatalf("%v %v: store %+v %v, memory %+v %v", ty, b.ID.Short(), g, gok, w, wok)
					}
					n++
				}
			}
			if want.HasPack(p.ID) != got.HasPack(p.ID) || want.IsTreePack(p.ID) != got.IsTreePack(p.ID) {
				t.Fatalf("pack %v: HasPack/IsTreePack differ", p.ID.Short())
			}
		}
	}
	for range 1000 {
		if got.Has(pack.Data, randID(r)) {
			t.Fatal("a random ID was found")
		}
	}
	if err := got.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestStoreBuildAndMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	fs := files(r, 12, 5, 300)
	var names []string
	for n := range fs {
		names = append(names, n)
	}
	root := t.TempDir()
	// A tiny sorting budget, so that the build spills and merges runs.
	s, err := BuildStore(root, "repo", nil, source(fs, names[:8]), 64<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	x := New()
	x.SetParts([]Part{{S: s}})
	sameAnswers(t, reference(fs, names[:8]), x, subset(fs, names[:8]), r)

	// Index files 0 and 1 are gone from the repository (a prune), 8..11
	// are new: a merge drops and adds.
	dead := map[uint32]bool{}
	for _, n := range names[:2] {
		f, _ := s.File(n)
		dead[f] = true
	}
	x.SetParts([]Part{{S: s, Dead: dead}})
	sameAnswers(t, reference(fs, names[2:8]), x, subset(fs, names[:8]), r)
	// A delta of two new files over the base, then both merged with two
	// more into a new base.
	d, err := BuildStore(root, "repo", nil, source(fs, names[8:10]), 64<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	x.SetParts([]Part{{S: s, Dead: dead}, {S: d}})
	sameAnswers(t, reference(fs, names[2:10]), x, subset(fs, names[:10]), r)
	s2, err := BuildStore(root, "repo", []Part{{S: s, Dead: dead}, {S: d}}, source(fs, names[10:]), 64<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	y := New()
	y.SetParts([]Part{{S: s2}})
	sameAnswers(t, reference(fs, names[2:]), y, fs, r)
	if len(s2.Files()) != 10 {
		t.Fatalf("%d files in the merged store", len(s2.Files()))
	}
	// Made current and reopened, it is the same; for another repository,
	// it is none.
	if err := SetCurrent(root, Generations{Base: s2.Gen()}); err != nil {
		t.Fatal(err)
	}
	g, err := ReadCurrent(root)
	if err != nil || g.Base != s2.Gen() || g.Delta != "" {
		t.Fatalf("current: %+v %v", g, err)
	}
	s3, err := OpenGen(root, g.Base, "repo", 1<<20)
	if err != nil || s3 == nil || s3.Len() != s2.Len() {
		t.Fatalf("reopen: %v", err)
	}
	if other, err := OpenGen(root, g.Base, "another", 1<<20); other != nil || err != nil {
		t.Fatalf("a store of another repository: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 2 { // current and the generation
		t.Fatalf("old generations left: %v", entries)
	}
	// Each visits every live blob once.
	seen := map[Key]int{}
	y.Each(func(l Location) { seen[Key{l.ID, l.Type}]++ })
	ref := reference(fs, names[2:])
	if len(seen) != ref.Len() {
		t.Fatalf("Each saw %d blobs, want %d", len(seen), ref.Len())
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%v seen %d times", k, c)
		}
	}
}

func subset(fs map[string][]PackBlobs, names []string) map[string][]PackBlobs {
	out := map[string][]PackBlobs{}
	for _, n := range names {
		out[n] = fs[n]
	}
	return out
}

// A damaged page is noticed: lookups fail rather than answer wrongly, and
// the error is kept; a damaged meta makes the store unusable (rebuilt).
func TestStoreDamage(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	fs := files(r, 2, 3, 200)
	var names []string
	for n := range fs {
		names = append(names, n)
	}
	root := t.TempDir()
	s, err := BuildStore(root, "repo", nil, source(fs, names), 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	entries := filepath.Join(root, s.Gen(), "entries")
	f, _ := os.OpenFile(entries, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, 100)
	f.Close()
	x := New()
	x.SetParts([]Part{{S: s}})
	for _, p := range fs[names[0]] {
		for _, b := range p.Blobs {
			x.Lookup(b.Type, b.ID)
		}
	}
	if !errors.Is(x.Err(), ErrStoreDamaged) {
		t.Fatalf("damaged page: %v", x.Err())
	}
	b, _ := os.ReadFile(entries)
	b[len(b)-10] ^= 1
	os.WriteFile(entries, b, 0o600)
	if _, err := OpenGen(root, s.Gen(), "repo", 1<<20); !errors.Is(err, ErrStoreDamaged) {
		t.Fatalf("damaged meta: %v", err)
	}
}

func TestSorter(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, budget := range []int{1 << 20, 4096} { // in memory, and spilled
		s := NewSorter(t.TempDir(), 8, 4, budget)
		var want [][]byte
		for range 5000 {
			rec := make([]byte, 8)
			for i := range rec {
				rec[i] = byte(r.IntN(8)) // many equal keys
			}
			s.Add(rec)
			want = append(want, rec)
		}
		var got [][]byte
		if err := s.Each(func(rec []byte) error { got = append(got, bytes.Clone(rec)); return nil }); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if len(got) != len(want) {
			t.Fatalf("budget %d: %d records out of %d", budget, len(got), len(want))
		}
		for i := 1; i < len(got); i++ {
			if bytes.Compare(got[i-1][:4], got[i][:4]) > 0 {
				t.Fatalf("budget %d: out of order at %d", budget, i)
			}
		}
	}
}

// Many runs merge in rounds, fanIn at a time, and keep their order.
func TestSorterManyRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	s := NewSorter(t.TempDir(), 16, 8, 64*16) // a run every 64 records
	n := 64 * 200
	for range n {
		rec := make([]byte, 16)
		for i := range rec {
			rec[i] = byte(r.Uint32())
		}
		s.Add(rec)
	}
	for pass := range 2 { // merged once, then read straight
		var last []byte
		count := 0
		if err := s.Each(func(rec []byte) error {
			if last != nil && bytes.Compare(last, rec[:8]) > 0 {
				return fmt.Errorf("out of order at %d", count)
			}
			last = append(last[:0], rec[:8]...)
			count++
			return nil
		}); err != nil || count != n {
			t.Fatalf("pass %d: %d of %d records: %v", pass, count, n, err)
		}
		if len(s.runs) > fanIn {
			t.Fatalf("%d runs after a merge", len(s.runs))
		}
	}
	s.Close()
}
