package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/tree"
)

var fastKDF = crypto.KDFParams{Time: 1, Memory: 64, Threads: 1}

func newRepo(t *testing.T, password []byte) (backend.Backend, *Repository) {
	t.Helper()
	be, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := Init(ctx, be, InitOptions{Password: password, KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, be, func() ([]byte, error) { return password, nil }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return be, r
}

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	be, _ := newRepo(t, []byte("pw"))
	if _, err := Init(ctx, be, InitOptions{}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := Open(ctx, be, func() ([]byte, error) { return []byte("nope"), nil }, Options{}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := Open(ctx, be, nil, Options{}); !errors.Is(err, ErrNoPassword) {
		t.Fatalf("no password: %v", err)
	}
	empty, _ := local.Open(t.TempDir())
	if _, err := Open(ctx, empty, nil, Options{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing repository: %v", err)
	}
	// A second password opens the same repository.
	r, _ := Open(ctx, be, func() ([]byte, error) { return []byte("pw"), nil }, Options{})
	if _, err := AddKey(ctx, be, r.Key(), []byte("second"), fastKDF, FormatVersion); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, func() ([]byte, error) { return []byte("second"), nil }, Options{})
	if err != nil || r2.Config().ID != r.Config().ID {
		t.Fatalf("second password: %v", err)
	}
}

func TestBlobsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	for _, pw := range [][]byte{nil, []byte("pw")} {
		be, r := newRepo(t, pw)
		var ids []crypto.ID
		var datas [][]byte
		for i := range 40 {
			// Half compressible, half not; enough to fill several packs.
			d := bytes.Repeat([]byte{byte(i), 1, 2, 3}, 256<<10)
			if i%2 == 1 {
				d = make([]byte, 1<<20)
				for j := range d {
					d[j] = byte(j*7919 + i*104729 + j>>8*31)
				}
			}
			id := r.Key().Hash(d)
			st, err := r.SaveBlob(ctx, pack.Data, id, d)
			if err != nil || !st.Added {
				t.Fatalf("save: %v %+v", err, st)
			}
			if st2, _ := r.SaveBlob(ctx, pack.Data, id, d); st2.Added {
				t.Fatal("duplicate stored twice")
			}
			ids, datas = append(ids, id), append(datas, d)
		}
		if _, err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		r2, err := Open(ctx, be, func() ([]byte, error) { return pw, nil }, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if probs, err := r2.LoadIndex(ctx); err != nil || len(probs) > 0 {
			t.Fatalf("load index: %v %v", err, probs)
		}
		for i, id := range ids {
			got, err := r2.LoadBlob(ctx, pack.Data, id, nil)
			if err != nil || !bytes.Equal(got, datas[i]) {
				t.Fatalf("blob %d: %v", i, err)
			}
		}
		if _, err := r2.LoadBlob(ctx, pack.Tree, ids[0], nil); !errors.Is(err, ErrDamaged) {
			t.Fatalf("wrong blob type accepted: %v", err)
		}
	}
}

func TestAdoptPacksWithoutIndex(t *testing.T) {
	ctx := context.Background()
	be, r := newRepo(t, nil)
	d := []byte("some content that is stored")
	id := r.Key().Hash(d)
	if _, err := r.SaveBlob(ctx, pack.Data, id, d); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Lose every index file, as a crash before the index write would.
	_ = be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		return be.Remove(ctx, backend.Handle{Type: backend.Index, Name: fi.Name})
	})
	r2, _ := Open(ctx, be, nil, Options{})
	if _, err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if r2.Has(pack.Data, id) {
		t.Fatal("index survived removal")
	}
	n, probs, err := r2.AdoptPacks(ctx)
	if err != nil || len(probs) > 0 || n != 1 {
		t.Fatalf("adopt: %d %v %v", n, probs, err)
	}
	if got, err := r2.LoadBlob(ctx, pack.Data, id, nil); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("adopted blob: %v", err)
	}
}

func TestConcurrentJobNumbers(t *testing.T) {
	ctx := context.Background()
	be, _ := newRepo(t, nil)
	var wg sync.WaitGroup
	nums := make([]int, 8)
	for i := range nums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := Open(ctx, be, nil, Options{})
			if err != nil {
				t.Error(err)
				return
			}
			j := &Job{Project: "p"}
			if err := r.SaveJob(ctx, j); err != nil {
				t.Error(err)
			}
			nums[i] = j.Number
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for _, n := range nums {
		if seen[n] || n < 1 || n > len(nums) {
			t.Fatalf("job numbers %v are not 1..%d once each", nums, len(nums))
		}
		seen[n] = true
	}
}

func FuzzDecodeJob(f *testing.F) {
	f.Add([]byte(`{"number":3,"project":"p","tree":"`+strings.Repeat("ab", 32)+`","paths":["a"],"summary":{}}`), 3)
	f.Add([]byte(`{}`), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		j, err := decodeJob(b, n)
		if err == nil && (j.Number != n || j.Tree.IsZero() && j.TreeHex != strings.Repeat("0", 64)) {
			t.Fatalf("accepted a record for job %d as %+v", n, j)
		}
	})
}

func mustLocal(tb testing.TB, dir string) backend.Backend {
	be, err := local.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if err := be.Create(); err != nil {
		tb.Fatal(err)
	}
	return be
}

// Writing a content-named file whose name is taken by a damaged copy
// replaces the copy: rewriting is a repair (unencrypted repositories seal
// deterministically, so the names match).
func TestSaveReplacesDamagedCopy(t *testing.T) {
	ctx := context.Background()
	be, r := newRepo(t, nil)
	plain := []byte("index file content")
	name, err := r.saveSealed(ctx, backend.Index, plain)
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.Index, Name: name}
	good, _ := backend.LoadAll(ctx, be, h)
	bad := bytes.Clone(good)
	bad[0] ^= 1
	be.Remove(ctx, h)
	be.Save(ctx, h, bad)
	if again, err := r.saveSealed(ctx, backend.Index, plain); err != nil || again != name {
		t.Fatalf("rewrite: %v", err)
	}
	if got, _ := backend.LoadAll(ctx, be, h); !bytes.Equal(got, good) {
		t.Fatal("the damaged copy is still there")
	}
}

// Small data blobs are stored in groups; each reads back alone, through
// a Decoder in pack order, and after the index is rebuilt from pack
// headers. A format 1 repository gets no groups.
func TestGroups(t *testing.T) {
	ctx := context.Background()
	for _, version := range []int{FormatVersion, 1} {
		be, r := newRepo(t, []byte("pw"))
		r.cfg.Version = version
		var ids []crypto.ID
		var datas [][]byte
		for i := range 300 {
			d := bytes.Repeat([]byte(fmt.Sprintf("file %d of some source tree\n", i%50)), 1+i*i%5000)
			if i%7 == 0 {
				d = d[:1]
			}
			id := r.Key().Hash(d)
			if _, err := r.SaveBlob(ctx, pack.Data, id, d); err != nil {
				t.Fatal(err)
			}
			ids, datas = append(ids, id), append(datas, d)
		}
		if _, err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		grouped, small := 0, 0
		r.Index().Each(func(loc index.Location) {
			if loc.Grouped() {
				grouped++
			}
			if loc.RawLen < groupMember {
				small++
			}
		})
		if version == 1 && grouped != 0 || version >= 2 && (grouped != small || small < 200) {
			t.Fatalf("format %d: %d of %d small blobs grouped", version, grouped, small)
		}
		for _, rebuild := range []bool{false, true} {
			r2, err := Open(ctx, be, func() ([]byte, error) { return []byte("pw"), nil }, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rebuild {
				if _, err := r2.RebuildIndex(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := r2.LoadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				got, err := r2.LoadBlob(ctx, pack.Data, id, nil)
				if err != nil || !bytes.Equal(got, datas[i]) {
					t.Fatalf("format %d rebuild %v: blob %d: %v", version, rebuild, i, err)
				}
			}
		}
		// Pack by pack, in header order, as restore and check read them.
		n := 0
		_ = be.List(ctx, backend.Data, func(fi backend.FileInfo) error {
			pid, _ := crypto.ParseID(fi.Name)
			data, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.Data, Name: fi.Name})
			if err != nil {
				t.Fatal(err)
			}
			blobs, err := pack.ReadHeader(r.Key(), int64(len(data)), data, nil)
			if err != nil {
				t.Fatal(err)
			}
			dec := r.NewDecoder()
			for _, b := range blobs {
				got, err := dec.Decode(index.Location{PackID: pid, Blob: b}, data[b.Offset:b.Offset+b.Length])
				if err != nil || r.Key().Hash(got) != b.ID {
					t.Fatalf("decode %v: %v", b.ID.Short(), err)
				}
				n++
			}
			return nil
		})
		if n != r.Index().Len() {
			t.Fatalf("packs hold %d blobs, the index %d", n, r.Index().Len())
		}
	}
}

// keyNames lists the key files of a backend.
func keyNames(t *testing.T, be backend.Backend) []string {
	t.Helper()
	var names []string
	if err := be.List(context.Background(), backend.Keys, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

func rewrite(t *testing.T, be backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	ctx := context.Background()
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, data); err != nil {
		t.Fatal(err)
	}
}

// The storage is not trusted when opening: a damaged key file is damage
// (never a wrong password), a repository with keys in clear is refused when
// a password is set, costs are bounded, and a lost config is reported as
// such.
func TestOpenHostileKeys(t *testing.T) {
	ctx := context.Background()
	pw := func(p string) PasswordFunc { return func() ([]byte, error) { return []byte(p), nil } }
	for _, tc := range []struct {
		name    string
		harm    func(t *testing.T, be backend.Backend, r *Repository)
		pw      string
		require bool
		want    error // nil: opens
		msg     string
	}{
		{name: "intact", pw: "pw", require: true},
		{name: "wrong password", pw: "nope", want: ErrWrongPassword},
		{name: "renamed key file", pw: "pw", want: ErrDamaged, msg: "does not match its name", harm: func(t *testing.T, be backend.Backend, r *Repository) {
			n := keyNames(t, be)[0]
			b, _ := backend.LoadAll(ctx, be, backend.Handle{Type: backend.Keys, Name: n})
			be.Remove(ctx, backend.Handle{Type: backend.Keys, Name: n})
			be.Save(ctx, backend.Handle{Type: backend.Keys, Name: strings.Repeat("0", 64)}, b)
		}},
		{name: "altered key file", pw: "pw", want: ErrDamaged, msg: "keys/", harm: func(t *testing.T, be backend.Backend, r *Repository) {
			h := backend.Handle{Type: backend.Keys, Name: keyNames(t, be)[0]}
			b, _ := backend.LoadAll(ctx, be, h)
			b[len(b)-5] ^= 1
			rewrite(t, be, h, b)
		}},
		{name: "damaged key beside an intact one, wrong password", pw: "nope", want: ErrWrongPassword, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			AddKey(ctx, be, r.Key(), []byte("second"), fastKDF, FormatVersion)
			be.Save(ctx, backend.Handle{Type: backend.Keys, Name: strings.Repeat("1", 64)}, []byte("{}"))
		}},
		{name: "damaged key beside an intact one", pw: "pw", harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Save(ctx, backend.Handle{Type: backend.Keys, Name: strings.Repeat("1", 64)}, []byte("{}"))
		}},
		{name: "absurd costs", pw: "pw", want: ErrDamaged, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			h := backend.Handle{Type: backend.Keys, Name: keyNames(t, be)[0]}
			b, _ := backend.LoadAll(ctx, be, h)
			b = bytes.Replace(b, []byte(`"time":1`), []byte(`"time":16`), 1)
			be.Remove(ctx, h)
			be.Save(ctx, backend.Handle{Type: backend.Keys, Name: KeyFileName(b)}, b)
		}},
		{name: "substituted by an unencrypted repository", pw: "pw", require: true, want: ErrNotEncrypted, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			other, _ := newRepo(t, nil)
			for _, n := range keyNames(t, be) {
				be.Remove(ctx, backend.Handle{Type: backend.Keys, Name: n})
			}
			for _, n := range keyNames(t, other) {
				b, _ := backend.LoadAll(ctx, other, backend.Handle{Type: backend.Keys, Name: n})
				be.Save(ctx, backend.Handle{Type: backend.Keys, Name: n}, b)
			}
			cfg, _ := backend.LoadAll(ctx, other, backend.Handle{Type: backend.Config})
			rewrite(t, be, backend.Handle{Type: backend.Config}, cfg)
		}},
		{name: "clear key planted beside the real ones", pw: "pw", require: true, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			k, _ := crypto.NewMasterKey(false)
			AddKey(ctx, be, k, nil, fastKDF, FormatVersion)
		}},
		{name: "config lost", pw: "pw", want: ErrDamaged, msg: "config is missing", harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Remove(ctx, backend.Handle{Type: backend.Config})
		}},
		{name: "config forged", pw: "pw", want: ErrDamaged, msg: "config", harm: func(t *testing.T, be backend.Backend, r *Repository) {
			rewrite(t, be, backend.Handle{Type: backend.Config}, []byte("forged config bytes"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, r := newRepo(t, []byte("pw"))
			if tc.harm != nil {
				tc.harm(t, be, r)
			}
			got, err := Open(ctx, be, pw(tc.pw), Options{RequireEncryption: tc.require})
			if tc.want == nil {
				if err != nil || got.Config().ID != r.Config().ID {
					t.Fatalf("open: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("open: %v, want %v (%q)", err, tc.want, tc.msg)
			}
		})
	}
	// An unencrypted repository opens without a password, and is refused
	// when one is set.
	be, _ := newRepo(t, nil)
	if _, err := Open(ctx, be, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, pw("pw"), Options{RequireEncryption: true}); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("unencrypted with a password: %v", err)
	}
	// Init refuses a location holding repository files without a config.
	be.Remove(ctx, backend.Handle{Type: backend.Config})
	if _, err := Init(ctx, be, InitOptions{}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "config is missing") {
		t.Fatalf("init over a repository without config: %v", err)
	}
}

// A password is tried on a bounded number of key files, the one that
// worked last time first.
func TestKeyTriesBounded(t *testing.T) {
	ctx := context.Background()
	be, r := newRepo(t, []byte("pw"))
	var last string
	for i := range maxKeyTries + 2 {
		var err error
		if last, err = AddKey(ctx, be, r.Key(), []byte(fmt.Sprint("other", i)), fastKDF, FormatVersion); err != nil {
			t.Fatal(err)
		}
	}
	// The last key added is the only one that opens with "other9"; it is
	// found only when preferred, since it may sort after maxKeyTries others.
	o, err := Open(ctx, be, func() ([]byte, error) { return []byte(fmt.Sprint("other", maxKeyTries+1)), nil }, Options{PreferKey: last})
	if err != nil || o.KeyID() != last {
		t.Fatalf("preferred key: %v", err)
	}
	if _, err := Open(ctx, be, func() ([]byte, error) { return []byte("none of them"), nil }, Options{}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
}

func newRepoVersion(t *testing.T, version int) (backend.Backend, *Repository) {
	t.Helper()
	be := mustLocal(t, t.TempDir())
	ctx := context.Background()
	if _, err := Init(ctx, be, InitOptions{Password: []byte("pw"), KDF: fastKDF, Version: version}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, be, func() ([]byte, error) { return []byte("pw"), nil }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return be, r
}

func reopen(t *testing.T, be backend.Backend) *Repository {
	t.Helper()
	r, err := Open(context.Background(), be, func() ([]byte, error) { return []byte("pw"), nil }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// A file whose bytes are an empty directory's tree must not stand in for
// the tree, nor the tree for the file (issue: planted file). Format 3
// stores both; a format 2 repository reads through the fallback, and
// Upgrade stores each under its own type before writing the new config.
func TestTypedIdentity(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		version   int
		treeFirst bool
	}{{3, false}, {3, true}, {2, false}, {2, true}, {1, false}} {
		t.Run(fmt.Sprintf("format%d/treeFirst=%v", tc.version, tc.treeFirst), func(t *testing.T) {
			be, r := newRepoVersion(t, tc.version)
			planted, _ := tree.Encode(&tree.Tree{}, r.TreeVersion())
			id := r.Key().Hash(planted)
			save := []func(){
				func() {
					if got, _, err := r.SaveTree(ctx, &tree.Tree{}); err != nil || got != id {
						t.Fatalf("tree %v %v", got, err)
					}
				},
				func() {
					if _, err := r.SaveBlob(ctx, pack.Data, id, planted); err != nil {
						t.Fatal(err)
					}
				},
			}
			if tc.treeFirst {
				save[0], save[1] = save[1], save[0]
			}
			save[1]()
			save[0]()
			if _, err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			r = reopen(t, be)
			_, dataOK := r.Index().Lookup(pack.Data, id)
			_, treeOK := r.Index().Lookup(pack.Tree, id)
			if tc.version >= 3 != (dataOK && treeOK) {
				t.Fatalf("stored as data %v, as tree %v", dataOK, treeOK)
			}
			// Either way, both read back.
			if tr, err := r.LoadTree(ctx, id); err != nil || len(tr.Nodes) != 0 {
				t.Fatalf("load tree: %v", err)
			}
			if b, err := r.LoadBlob(ctx, pack.Data, id, nil); err != nil || !bytes.Equal(b, planted) {
				t.Fatalf("load data: %v", err)
			}
			if tc.version >= 3 {
				return
			}
			// Upgrade: a job that uses both, then every blob under its own type.
			job := &Job{Project: "p", Tree: id}
			if err := r.SaveJob(ctx, job); err != nil {
				t.Fatal(err)
			}
			root := &tree.Tree{Nodes: []tree.Node{{Name: "empty", Type: tree.Dir, Subtree: id}, {Name: "f", Type: tree.File, Size: uint64(len(planted)), Content: []crypto.ID{id}}}}
			rootID, _, err := r.SaveTree(ctx, root)
			if err != nil {
				t.Fatal(err)
			}
			job2 := &Job{Project: "p", Tree: rootID}
			if _, err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := r.SaveJob(ctx, job2); err != nil {
				t.Fatal(err)
			}
			st, err := r.Upgrade(ctx, []*Job{job, job2})
			if err != nil || st.TypedAdded != 1 || st.To != 3 {
				t.Fatalf("upgrade: %+v %v", st, err)
			}
			r = reopen(t, be)
			if r.Config().Version != 3 {
				t.Fatalf("version %d after upgrade", r.Config().Version)
			}
			_, dataOK = r.Index().Lookup(pack.Data, id)
			_, treeOK = r.Index().Lookup(pack.Tree, id)
			if !dataOK || !treeOK {
				t.Fatalf("after upgrade: stored as data %v, as tree %v", dataOK, treeOK)
			}
			if st, err := r.Upgrade(ctx, nil); err != nil || st.TypedAdded != 0 {
				t.Fatalf("second upgrade: %+v %v", st, err)
			}
		})
	}
}

// Files that change what RunUp believes about jobs are verified before
// they are acted on: a forged tombstone hides nothing, a forged newer
// revision does not hide the job, and a job that vanished without a
// tombstone is reported (the newest too, given what a machine remembers).
func TestJobFilesVerified(t *testing.T) {
	ctx := context.Background()
	h := func(name string) backend.Handle { return backend.Handle{Type: backend.Jobs, Name: name} }
	for _, tc := range []struct {
		name    string
		harm    func(t *testing.T, be backend.Backend, r *Repository)
		live    []int
		missing []int
		floor   int
		forged  int
	}{
		{name: "intact", live: []int{1, 2, 3}},
		{name: "junk tombstone", live: []int{1, 2, 3}, forged: 1, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Save(ctx, h("0000000002.forgotten"), []byte("junk"))
		}},
		{name: "another job's tombstone", live: []int{1, 2, 3}, forged: 1, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Save(ctx, h("0000000003.forgotten"), r.key.Seal(nil, []byte(jobName(1))))
		}},
		{name: "real forget", live: []int{1, 3}, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			if err := r.ForgetJob(ctx, 2); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "forget replaces a forged tombstone", live: []int{1, 3}, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Save(ctx, h("0000000002.forgotten"), []byte("junk"))
			if err := r.ForgetJob(ctx, 2); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "record deleted", live: []int{1, 3}, missing: []int{2}, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Remove(ctx, h("0000000002"))
		}},
		{name: "newest deleted, remembered", live: []int{1, 2}, missing: []int{3}, floor: 3, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Remove(ctx, h("0000000003"))
		}},
		{name: "forged newer revision", live: []int{1, 2, 3}, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			be.Save(ctx, h("0000000002.r7"), []byte("junk"))
		}},
		{name: "old revision replayed under a newer name", live: []int{1, 2, 3}, harm: func(t *testing.T, be backend.Backend, r *Repository) {
			j, _ := r.LoadJob(ctx, 2)
			j.Tags = []string{"new"}
			if err := r.UpdateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
			old, _ := backend.LoadAll(ctx, be, h("0000000002.r1"))
			be.Save(ctx, h("0000000002.r2"), old)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, r := newRepo(t, []byte("pw"))
			for range 3 {
				if err := r.SaveJob(ctx, &Job{Project: "p"}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.harm != nil {
				tc.harm(t, be, r)
			}
			r = reopen(t, be)
			r.noteJob(tc.floor) // as Options.HighestJob does
			live, err := r.JobNumbers(ctx)
			if err != nil || !slices.Equal(live, tc.live) {
				t.Fatalf("live jobs %v %v, want %v", live, err, tc.live)
			}
			missing, forged, err := r.MissingJobs(ctx)
			if err != nil || !slices.Equal(missing, tc.missing) || len(forged) != tc.forged {
				t.Fatalf("missing %v forged %v (%v), want %v and %d", missing, forged, err, tc.missing, tc.forged)
			}
			jobs, _, err := r.Jobs(ctx)
			if err != nil || len(jobs) != len(tc.live) {
				t.Fatalf("%d jobs load: %v", len(jobs), err)
			}
			for _, n := range tc.live {
				if _, err := r.LoadJob(ctx, n); err != nil {
					t.Fatalf("job %d: %v", n, err)
				}
			}
			// Numbers are never reused, whatever a tombstone claims.
			j := &Job{Project: "p"}
			if err := r.SaveJob(ctx, j); err != nil || j.Number != 4 {
				t.Fatalf("next job %d: %v", j.Number, err)
			}
		})
	}
}

// repair index never makes anything less restorable: a pack whose header
// is damaged keeps the entries the old index held, and an index file that
// cannot be read is left in place.
func TestRebuildKeepsWhatHeadersLost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be := mustLocal(t, dir)
	if _, err := Init(ctx, be, InitOptions{Password: []byte("pw"), KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	r := reopen(t, be)
	var ids []crypto.ID
	rnd := rand.New(rand.NewPCG(9, 9))
	for range 100 { // 20 MiB that does not compress: two packs
		d := make([]byte, 200<<10)
		for j := range d {
			d[j] = byte(rnd.Uint32())
		}
		id := r.Key().Hash(d)
		if _, err := r.SaveBlob(ctx, pack.Data, id, d); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	loc, _ := r.Lookup(pack.Data, ids[0])
	p := filepath.Join(dir, "data", loc.PackID.String()[:2], loc.PackID.String())
	fi, _ := os.Stat(p)
	os.Chmod(p, 0o600)
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte{0xde, 0xad}, fi.Size()-40) // inside the sealed header
	f.Close()

	r = reopen(t, be)
	res, err := r.RebuildIndex(ctx)
	if err != nil || len(res.Kept) != 1 || len(res.Lost) != 0 || res.Packs < 2 {
		t.Fatalf("rebuild: %+v %v", res, err)
	}
	r = reopen(t, be)
	for i, id := range ids {
		if _, err := r.LoadBlob(ctx, pack.Data, id, nil); err != nil {
			t.Fatalf("blob %d unreachable after the repair: %v", i, err)
		}
	}
	// With the index lost as well, the damaged pack is reported lost, and
	// an index file damaged for good goes.
	_ = be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		return be.Remove(ctx, backend.Handle{Type: backend.Index, Name: fi.Name})
	})
	junk := backend.Handle{Type: backend.Index, Name: strings.Repeat("ab", 32)}
	be.Save(ctx, junk, []byte("junk"))
	res, err = reopen(t, be).RebuildIndex(ctx)
	if err != nil || len(res.Lost) != 1 || len(res.Unreadable) != 1 {
		t.Fatalf("rebuild without index: %+v %v", res, err)
	}
	if _, err := be.Stat(ctx, junk); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("a damaged index file was kept: %v", err)
	}
}

// With an index dir, the index lives in a store on local disk, brought up
// to date at every open: new index files are read or merged, files the
// repository lost stop counting, and a damaged store heals itself.
func TestIndexStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be := mustLocal(t, dir)
	if _, err := Init(ctx, be, InitOptions{Password: []byte("pw"), KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	idxDir := t.TempDir()
	open := func() *Repository {
		r, err := Open(ctx, be, func() ([]byte, error) { return []byte("pw"), nil }, Options{IndexDir: idxDir})
		if err != nil {
			t.Fatal(err)
		}
		if probs, err := r.LoadIndex(ctx); err != nil || len(probs) > 0 {
			t.Fatalf("load index: %v %v", probs, err)
		}
		return r
	}
	var ids []crypto.ID
	write := func(r *Repository, n int) {
		for i := range n {
			d := []byte(fmt.Sprintf("blob %d of %d", len(ids), i))
			id := r.Key().Hash(d)
			if _, err := r.SaveBlob(ctx, pack.Data, id, d); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			if i%3 == 2 {
				if _, err := r.Flush(ctx); err != nil { // an index file each time
					t.Fatal(err)
				}
			}
		}
		if _, err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	all := func(r *Repository, want int) {
		t.Helper()
		for i, id := range ids[:want] {
			if b, err := r.LoadBlob(ctx, pack.Data, id, nil); err != nil || !bytes.HasPrefix(b, []byte("blob")) {
				t.Fatalf("blob %d of %d: %v", i, want, err)
			}
		}
	}
	r := open()
	write(r, 60) // 20 index files: the base
	r.Close()
	r = open()
	if p := r.Index().Parts(); len(p) != 1 || len(p[0].S.Files()) != 20 {
		t.Fatal("no store, or not all index files in it")
	}
	all(r, 60)
	write(r, 9) // a few new index files: a delta over the base
	if err := r.PublishIndex(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = open()
	if p := r.Index().Parts(); len(p) != 2 || len(p[1].S.Files()) != 3 || r.IndexFilesRead() != 0 {
		t.Fatalf("published: %d parts, %d index files read", len(p), r.IndexFilesRead())
	}
	all(r, 69)
	// An index file removed from the repository no longer counts.
	gone := r.Index().Parts()[0].S.Files()[0]
	r.Close()
	be.Remove(ctx, backend.Handle{Type: backend.Index, Name: gone})
	r = open()
	missing := 0
	var present []crypto.ID
	for _, id := range ids {
		if !r.Has(pack.Data, id) {
			missing++
		} else {
			present = append(present, id)
		}
	}
	if missing != 3 {
		t.Fatalf("%d blobs missing after one index file of 3 was removed", missing)
	}
	r.Close()
	// A damaged page is noticed by the lookup that reads it, and the store
	// is built again.
	cur, _ := os.ReadFile(filepath.Join(r.StoreDir(), "current"))
	entries := filepath.Join(r.StoreDir(), strings.Fields(string(cur))[0], "entries")
	f, _ := os.OpenFile(entries, os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{0xee}, 64), 0)
	f.Close()
	r = open()
	for _, id := range present {
		if !r.Has(pack.Data, id) {
			t.Fatalf("blob %v lost with a damaged store page", id.Short())
		}
	}
	if err := r.Index().Err(); err != nil {
		t.Fatalf("the damaged store was not replaced: %v", err)
	}
}
