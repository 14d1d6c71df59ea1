package usage

import (
	"testing"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
)

// Join groups the copies of each blob and says whether it is used; with
// typed false, a key of either type uses both.
func TestJoin(t *testing.T) {
	id := func(b byte) crypto.ID { return crypto.ID{b} }
	packs := []index.PackBlobs{
		{ID: id(100), Blobs: []pack.Blob{{Type: pack.Data, ID: id(1)}, {Type: pack.Data, ID: id(2)}, {Type: pack.Tree, ID: id(2)}}},
		{ID: id(101), Blobs: []pack.Blob{{Type: pack.Data, ID: id(1)}, {Type: pack.Data, ID: id(3)}}},
	}
	s, err := index.BuildStore(t.TempDir(), "r", nil, func(add func(string, []index.PackBlobs) error) error {
		return add("f", packs)
	}, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		typed bool
		used  []index.Key
		want  map[index.Key][2]int // copies, used
	}{
		{true, []index.Key{{ID: id(1)}, {ID: id(1)}, {ID: id(2), Type: pack.Tree}},
			map[index.Key][2]int{{ID: id(1)}: {2, 1}, {ID: id(2)}: {1, 0}, {ID: id(2), Type: pack.Tree}: {1, 1}, {ID: id(3)}: {1, 0}}},
		{false, []index.Key{{ID: id(2), Type: pack.Tree}, {ID: id(9)}},
			map[index.Key][2]int{{ID: id(1)}: {2, 0}, {ID: id(2)}: {2, 1}, {ID: id(3)}: {1, 0}}},
	} {
		k := NewKeys(t.TempDir(), 1<<20)
		for _, u := range tc.used {
			k.Add(u.Type, u.ID)
		}
		got := map[index.Key][2]int{}
		if err := Join(s, k, tc.typed, func(copies []index.Entry, used bool) {
			u := 0
			if used {
				u = 1
			}
			got[index.Key{ID: copies[0].ID, Type: copies[0].Type}] = [2]int{len(copies), u}
		}); err != nil {
			t.Fatal(err)
		}
		k.Close()
		if len(got) != len(tc.want) {
			t.Fatalf("typed=%v: %v, want %v", tc.typed, got, tc.want)
		}
		for key, w := range tc.want {
			if got[key] != w {
				t.Errorf("typed=%v: %v: %v, want %v", tc.typed, key, got[key], w)
			}
		}
	}
}
