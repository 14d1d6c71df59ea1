package restorer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// job saves a small job: a.txt, keep/b.txt, keep/sub/c.txt.
func smallJob(t *testing.T, r *repo.Repository) *repo.Job {
	t.Helper()
	file := func(name, data string) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: uint64(len(data)),
			Content: []crypto.ID{save(t, r, pack.Data, []byte(data))}}
	}
	dir := func(name string, nodes ...tree.Node) tree.Node {
		b, err := tree.Encode(&tree.Tree{Nodes: nodes}, tree.Version2)
		if err != nil {
			t.Fatal(err)
		}
		return tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, Subtree: save(t, r, pack.Tree, b)}
	}
	b, err := tree.Encode(&tree.Tree{Nodes: []tree.Node{file("a.txt", "a"),
		dir("keep", file("b.txt", "b"), dir("sub", file("c.txt", "c")))}}, tree.Version2)
	if err != nil {
		t.Fatal(err)
	}
	root := save(t, r, pack.Tree, b)
	if _, err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &repo.Job{Number: 1, Tree: root}
}

// listing is a directory's files and directories, relative and sorted.
func listing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if fi.IsDir() {
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(out)
	return out
}

type statusLog struct {
	collect
	lines []string
}

func (s *statusLog) File(path, status string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, status+" "+filepath.Base(path))
}

func TestDryRunAndDelete(t *testing.T) {
	r := newRepo(t)
	j := smallJob(t, r)
	full := []string{"a.txt", "keep/", "keep/b.txt", "keep/sub/", "keep/sub/c.txt"}
	for _, tc := range []struct {
		name    string
		opts    Options
		before  map[string]string // files on disk before
		want    []string          // on disk after
		status  []string          // sorted statuses reported
		deleted int
	}{
		{"dry run into nothing", Options{DryRun: true}, nil, nil,
			[]string{"restore a.txt", "restore b.txt", "restore c.txt"}, 0},
		{"dry run over a partial copy", Options{DryRun: true}, map[string]string{"a.txt": "a", "keep/b.txt": "old"},
			[]string{"a.txt", "keep/", "keep/b.txt"}, []string{"restore b.txt", "restore c.txt", "unchanged a.txt"}, 0},
		{"dry run of delete names, removes nothing", Options{DryRun: true, Delete: true},
			map[string]string{"a.txt": "a", "extra": "x", "keep/sub/stale": "s", ".runup/config": "c"},
			[]string{".runup/", ".runup/config", "a.txt", "extra", "keep/", "keep/sub/", "keep/sub/stale"},
			[]string{"delete extra", "delete stale", "restore b.txt", "restore c.txt", "unchanged a.txt"}, 2},
		{"delete", Options{Delete: true},
			map[string]string{"extra": "x", "keep/sub/stale": "s", "keep/olddir/f": "f", ".runup/config": "c", "runup.yaml": "y"},
			append([]string{".runup/", ".runup/config"}, append(full, "runup.yaml")...),
			[]string{"delete extra", "delete olddir", "delete stale", "restored a.txt", "restored b.txt", "restored c.txt"}, 3},
		{"delete leaves what the filters leave out", Options{Delete: true, Include: []string{"keep/**"}},
			map[string]string{"extra": "x", "keep/stale": "s"},
			[]string{"extra", "keep/", "keep/b.txt", "keep/sub/", "keep/sub/c.txt"},
			[]string{"delete stale", "restored b.txt", "restored c.txt"}, 1},
		{"without delete nothing goes", Options{}, map[string]string{"extra": "x"},
			append(slices.Clone(full[:1]), append([]string{"extra"}, full[1:]...)...),
			[]string{"restored a.txt", "restored b.txt", "restored c.txt"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target")
			for name, data := range tc.before {
				p := filepath.Join(target, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, []byte(data), 0o644)
			}
			log := &statusLog{}
			o := tc.opts
			o.Target, o.Reporter = target, log
			o.Keep = []string{filepath.Join(target, "runup.yaml")}
			res, err := Restore(context.Background(), r, j, o)
			if err != nil || res.Errors != 0 {
				t.Fatalf("restore: %v %+v %v", err, res, log.errs)
			}
			if got := listing(t, target); !slices.Equal(got, tc.want) {
				t.Errorf("on disk %v\nwant %v", got, tc.want)
			}
			sort.Strings(log.lines)
			if !slices.Equal(log.lines, tc.status) {
				t.Errorf("reported %v\nwant %v", log.lines, tc.status)
			}
			if res.Deleted != tc.deleted {
				t.Errorf("deleted %d, want %d", res.Deleted, tc.deleted)
			}
			if tc.opts.DryRun && tc.before == nil {
				if _, err := os.Stat(target); err == nil {
					t.Error("a dry run made the location")
				}
			}
		})
	}
}
