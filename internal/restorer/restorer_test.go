package restorer

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/repo/repotest"
	"github.com/runup/runup/internal/tree"
)

type collect struct {
	mu   sync.Mutex
	errs []string
}

func (c *collect) Error(path string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, path+": "+err.Error())
}
func (c *collect) Warning(path string, msg string) {}

func newRepo(t testing.TB) *repo.Repository { return repotest.New(t, "") }

// rawTree encodes nodes without the encoder's checks, as a hostile
// repository would.
func rawTree(nodes []tree.Node) []byte {
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, n := range nodes {
		str(n.Name)
		b = append(b, byte(n.Type))
		for _, v := range []uint64{uint64(n.Mode), 0, 0, n.Size} {
			b = binary.AppendUvarint(b, v)
		}
		b = binary.AppendVarint(b, 0)
		b = binary.AppendVarint(b, 0)
		for range 4 {
			b = binary.AppendUvarint(b, 0)
		}
		str(n.Target)
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, uint64(len(n.Content)))
		for _, id := range n.Content {
			b = append(b, id[:]...)
		}
		if n.Type == tree.Dir {
			b = append(b, n.Subtree[:]...)
		}
	}
	return b
}

func save(t testing.TB, r *repo.Repository, typ pack.BlobType, b []byte) crypto.ID {
	id := r.Key().Hash(b)
	if _, err := r.SaveBlob(context.Background(), typ, id, b); err != nil {
		t.Fatal(err)
	}
	return id
}

// A crafted repository cannot make restore write outside its location.
func TestHostileRepository(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	sentinel := filepath.Join(outside, "secret")
	os.WriteFile(sentinel, []byte("untouched"), 0o644)

	r := newRepo(t)
	payload := save(t, r, pack.Data, []byte("pwned"))
	file := func(name string) tree.Node {
		return tree.Node{Name: name, Type: tree.File, Mode: 0o644, Size: 5, Content: []crypto.ID{payload}}
	}
	// Each hostile tree goes into its own directory of the root, so that a
	// refused listing costs only that directory.
	hostile := map[string][]tree.Node{
		"dotdot":   {file("..")},
		"slash":    {file("a/b")},
		"abs":      {file("/etc")},
		"nul":      {file("x\x00y")},
		"dupe":     {file("same"), file("same")},
		"unsorted": {file("b"), file("a")},
		// A link pointing outside, then a directory and a file by the same
		// names as links already on disk (see below).
		"links": {{Name: "out", Type: tree.Symlink, Target: outside}},
	}
	var root []tree.Node
	for name, nodes := range hostile {
		root = append(root, tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, Subtree: save(t, r, pack.Tree, rawTree(nodes))})
	}
	inner := save(t, r, pack.Tree, rawTree([]tree.Node{file("secret")}))
	root = append(root, tree.Node{Name: "victim-dir", Type: tree.Dir, Mode: 0o755, Subtree: inner})
	root = append(root, file("victim-file"))
	rt := &tree.Tree{Nodes: root}
	rt.Sort()
	rootID := save(t, r, pack.Tree, rawTree(rt.Nodes))
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	target := t.TempDir()
	// Links planted in the location before the restore, pointing outside.
	os.Symlink(outside, filepath.Join(target, "victim-dir"))
	os.Symlink(sentinel, filepath.Join(target, "victim-file"))

	rep := &collect{}
	_, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target, Reporter: rep})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "untouched" {
		t.Fatalf("restore wrote outside its location: %q", b)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("restore created files outside its location: %v", entries)
	}
	for _, name := range []string{"dotdot", "slash", "abs", "nul", "dupe", "unsorted"} {
		found := false
		for _, e := range rep.errs {
			if strings.Contains(e, filepath.Join(target, name)) {
				found = true
			}
		}
		if !found {
			t.Errorf("hostile tree %q was not reported: %v", name, rep.errs)
		}
	}
	// The planted links were replaced by what the job holds.
	if fi, err := os.Lstat(filepath.Join(target, "victim-dir")); err != nil || !fi.IsDir() {
		t.Errorf("victim-dir is not a real directory: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "victim-file")); err != nil || string(b) != "pwned" {
		t.Errorf("victim-file: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(target, "links", "out")); err != nil || l != outside {
		t.Errorf("the job's own link was not restored as a link: %q %v", l, err)
	}
}

func TestClearLocation(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644)
	loc := t.TempDir()
	for _, p := range []string{"a/b/c", ".runup/data", "repo/sub/x", "other"} {
		os.MkdirAll(filepath.Join(loc, p), 0o755)
	}
	os.WriteFile(filepath.Join(loc, "runup.yaml"), []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(loc, "link-out"))
	if err := ClearLocation(loc, []string{filepath.Join(loc, "runup.yaml"), filepath.Join(loc, "repo", "sub")}); err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.Walk(loc, func(p string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(loc, p)
		left = append(left, rel)
		return nil
	})
	want := ". .runup .runup/data repo repo/sub repo/sub/x runup.yaml"
	if strings.Join(left, " ") != want {
		t.Fatalf("left %v, want %s", left, want)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatal("clearing followed a link out of the location")
	}
	for _, bad := range []string{"/", "relative", "/a/../b"} {
		if err := ClearLocation(bad, nil); err == nil {
			t.Errorf("ClearLocation(%q) accepted", bad)
		}
	}
}

// BenchmarkRestoreSmallFiles restores a job of 2,000 small files: mostly the
// planning and the per-file work, which dominate trees of small files.
func BenchmarkRestoreSmallFiles(b *testing.B) {
	ctx := context.Background()
	r := newRepo(b)
	var nodes []tree.Node
	for i := range 2000 {
		content := []byte{byte(i), byte(i >> 8), 'x'}
		nodes = append(nodes, tree.Node{Name: fmt.Sprintf("f%05d", i), Type: tree.File, Mode: 0o644, Size: 3,
			Content: []crypto.ID{save(b, r, pack.Data, content)}})
	}
	root := save(b, r, pack.Tree, rawTree(nodes))
	if _, err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		target := b.TempDir()
		if _, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: root}, Options{Target: target}); err != nil {
			b.Fatal(err)
		}
	}
}

// Many directories, files of one and of two chunks
// (one of them a hole), over several batches: every file gets its content,
// mode and time, and no descriptor is left open.
func TestManyDirectories(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	var dirs []tree.Node
	for d := range 600 {
		var files []tree.Node
		for i := range 3 {
			a := []byte(fmt.Sprintf("dir %d file %d\n", d, i))
			content := []crypto.ID{save(t, r, pack.Data, a)}
			size := len(a)
			if i == 2 { // two chunks, the second all zeros
				z := make([]byte, 100)
				content = append(content, save(t, r, pack.Data, z))
				size += len(z)
			}
			files = append(files, tree.Node{Name: fmt.Sprintf("f%d", i), Type: tree.File, Mode: 0o640 + uint32(i),
				Size: uint64(size), MTime: tree.Time{Sec: int64(d*1000 + i)}, Content: content})
		}
		b, err := tree.Encode(&tree.Tree{Nodes: files}, tree.Version2)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, tree.Node{Name: fmt.Sprintf("d%04d", d), Type: tree.Dir, Mode: 0o755, Subtree: save(t, r, pack.Tree, b)})
	}
	b, err := tree.Encode(&tree.Tree{Nodes: dirs}, tree.Version2)
	if err != nil {
		t.Fatal(err)
	}
	root := save(t, r, pack.Tree, b)
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := fds()
	target := t.TempDir()
	res, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: root}, Options{Target: target})
	if err != nil || res.Errors != 0 || res.Files != 3*len(dirs) {
		t.Fatalf("restore: %v %+v", err, res)
	}
	if after := fds(); after != before {
		t.Fatalf("%d descriptors open before the restore, %d after", before, after)
	}
	for d := range dirs {
		for i := range 3 {
			p := filepath.Join(target, fmt.Sprintf("d%04d/f%d", d, i))
			got, err := os.ReadFile(p)
			want := fmt.Sprintf("dir %d file %d\n", d, i)
			if i == 2 {
				want += string(make([]byte, 100))
			}
			if err != nil || string(got) != want {
				t.Fatalf("%s: %q %v", p, got, err)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != os.FileMode(0o640+i) || fi.ModTime().Unix() != int64(d*1000+i) {
				t.Fatalf("%s: mode %v time %v", p, fi.Mode(), fi.ModTime())
			}
		}
	}
}
