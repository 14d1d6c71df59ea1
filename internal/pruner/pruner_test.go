package pruner

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

type fixture struct {
	t    *testing.T
	dir  string
	be   backend.Backend
	r    *repo.Repository
	rnd  *rand.Rand
	data map[crypto.ID][]byte
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	be, _ := local.Open(dir)
	be.Create()
	ctx := context.Background()
	if _, err := repo.Init(ctx, be, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, be: be, rnd: rand.New(rand.NewPCG(1, 2)), data: map[crypto.ID][]byte{}}
	f.reopen()
	return f
}

func (f *fixture) reopen() {
	if f.r != nil {
		f.r.Close()
	}
	r, err := repo.Open(context.Background(), f.be, nil, repo.Options{IndexDir: filepath.Join(f.dir, "..", "idx")})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := r.LoadIndex(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.r = r
}

// chunk stores a random chunk of n bytes (incompressible) and returns it.
func (f *fixture) chunk(n int) crypto.ID {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(f.rnd.Uint32())
	}
	id := f.r.Key().Hash(b)
	if _, err := f.r.SaveBlob(context.Background(), pack.Data, id, b); err != nil {
		f.t.Fatal(err)
	}
	f.data[id] = b
	return id
}

// job saves a job of one file per chunk list.
func (f *fixture) job(files ...[]crypto.ID) int {
	ctx := context.Background()
	var nodes []tree.Node
	for i, content := range files {
		var size uint64
		for _, c := range content {
			size += uint64(len(f.data[c]))
		}
		nodes = append(nodes, tree.Node{Name: fmt.Sprintf("f%03d", i), Type: tree.File, Size: size, Content: content})
	}
	id, _, err := f.r.SaveTree(ctx, &tree.Tree{Nodes: nodes})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.r.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
	j := &repo.Job{Project: "p", Tree: id}
	if err := f.r.SaveJob(ctx, j); err != nil {
		f.t.Fatal(err)
	}
	return j.Number
}

func (f *fixture) size() int64 {
	var n int64
	f.be.List(context.Background(), backend.Data, func(fi backend.FileInfo) error { n += fi.Size; return nil })
	return n
}

// readable checks that every chunk of the given jobs' files reads back.
func (f *fixture) readable(ids ...crypto.ID) {
	f.t.Helper()
	for _, id := range ids {
		b, err := f.r.LoadBlob(context.Background(), pack.Data, id, nil)
		if err != nil || !bytes.Equal(b, f.data[id]) {
			f.t.Fatalf("chunk %v after prune: %v", id.Short(), err)
		}
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(f *fixture) ([]crypto.ID, Options, func(*Stats) string)
	}{
		{"a forgotten job's packs are deleted", func(f *fixture) ([]crypto.ID, Options, func(*Stats) string) {
			var a, b []crypto.ID
			for range 20 {
				a = append(a, f.chunk(1<<20))
			}
			f.job(a)
			for range 20 {
				b = append(b, f.chunk(1<<20))
			}
			n := f.job(b)
			f.r.ForgetJob(ctx, n)
			return a, Options{MaxUnused: 0.05}, func(st *Stats) string {
				if st.PacksDeleted < 1 || st.BlobsUnused < 20 || st.BytesFreed < 19<<20 {
					return fmt.Sprintf("%+v", st)
				}
				return ""
			}
		}},
		{"a mostly unused pack is repacked", func(f *fixture) ([]crypto.ID, Options, func(*Stats) string) {
			var all []crypto.ID
			for range 12 {
				all = append(all, f.chunk(1<<20))
			}
			n := f.job(all)
			keep := all[:2]
			f.job(keep)
			f.r.ForgetJob(ctx, n)
			return keep, Options{MaxUnused: 0.05}, func(st *Stats) string {
				if st.PacksRepacked != 1 || st.BlobsUsed != 3 { // two chunks and the tree
					return fmt.Sprintf("%+v", st)
				}
				return ""
			}
		}},
		{"a bound on repacking is kept", func(f *fixture) ([]crypto.ID, Options, func(*Stats) string) {
			var all []crypto.ID
			for range 12 {
				all = append(all, f.chunk(1<<20))
			}
			n := f.job(all)
			f.job(all[:2])
			f.r.ForgetJob(ctx, n)
			return all[:2], Options{MaxUnused: 0.05, MaxRepackSize: 1 << 20}, func(st *Stats) string {
				if st.PacksRepacked != 0 || st.PacksKept == 0 {
					return fmt.Sprintf("%+v", st)
				}
				return ""
			}
		}},
		{"a dry run changes nothing", func(f *fixture) ([]crypto.ID, Options, func(*Stats) string) {
			var a []crypto.ID
			for range 5 {
				a = append(a, f.chunk(1<<20))
			}
			n := f.job(a)
			f.r.ForgetJob(ctx, n)
			before := f.size()
			return nil, Options{DryRun: true}, func(st *Stats) string {
				if st.PacksDeleted == 0 || f.size() != before {
					return fmt.Sprintf("%+v, %d -> %d bytes", st, before, f.size())
				}
				return ""
			}
		}},
		{"a duplicate is claimed in one pack, the other emptied", func(f *fixture) ([]crypto.ID, Options, func(*Stats) string) {
			a := f.chunk(1 << 20)
			f.job([]crypto.ID{a})
			// The same chunk stored again through a second repository
			// handle (as a second host would), then used alone.
			// (With a chunk of its own, so that the pack differs: an
			// unencrypted repository seals deterministically.)
			other, _ := repo.Open(ctx, f.be, nil, repo.Options{})
			other.SaveBlob(ctx, pack.Data, a, f.data[a])
			extra := make([]byte, 1<<20)
			extra[0] = 1
			other.SaveBlob(ctx, pack.Data, other.Key().Hash(extra), extra)
			other.Flush(ctx)
			other.Close()
			return []crypto.ID{a}, Options{MaxUnused: 0.05}, func(st *Stats) string {
				if st.PacksDeleted != 1 {
					return fmt.Sprintf("%+v", st)
				}
				return ""
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			keep, o, check := tc.run(f)
			f.reopen()
			st, err := Prune(ctx, f.r, o)
			if err != nil {
				t.Fatal(err)
			}
			if msg := check(st); msg != "" {
				t.Fatal(msg)
			}
			f.reopen()
			f.readable(keep...)
		})
	}
}

// Packs no index lists are left alone while young, and pruned once old.
func TestPruneGrace(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a := f.chunk(1 << 20)
	f.job([]crypto.ID{a})
	// An unindexed pack, as an interrupted backup leaves.
	f.chunk(2 << 20)
	if _, err := f.r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Remove the newest index file: its pack is now unindexed.
	var newest string
	var at time.Time
	f.be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
		if fi.ModTime.After(at) {
			newest, at = fi.Name, fi.ModTime
		}
		return nil
	})
	f.be.Remove(ctx, backend.Handle{Type: backend.Index, Name: newest})
	before := f.size()
	f.reopen()
	st, err := Prune(ctx, f.r, Options{Grace: time.Hour})
	if err != nil || st.PacksRecent != 1 || f.size() != before {
		t.Fatalf("young unindexed pack: %+v %v, %d -> %d bytes", st, err, before, f.size())
	}
	f.reopen()
	st, err = Prune(ctx, f.r, Options{Grace: 0})
	if err != nil || st.PacksRecent != 0 || f.size() >= before {
		t.Fatalf("old unindexed pack: %+v %v", st, err)
	}
	f.reopen()
	f.readable(a)
	if entries, _ := os.ReadDir(f.r.StoreDir()); len(entries) == 0 {
		t.Fatal("no store")
	}
}
