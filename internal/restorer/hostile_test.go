//go:build linux

// These tests need Linux: tmpfs mounts, block counts, and the openat2
// confinement of fsys_linux.go.

package restorer

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// repoOn makes a repository in dir, opened through wrap (nil: as it is).
func repoOn(t testing.TB, dir string, wrap func(backend.Backend) backend.Backend) *repo.Repository {
	t.Helper()
	lb, _ := local.Open(dir)
	lb.Create()
	ctx := context.Background()
	if _, err := repo.Init(ctx, lb, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	var be backend.Backend = lb
	if wrap != nil {
		be = wrap(lb)
	}
	r, err := repo.Open(ctx, be, nil, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func fileNode(t testing.TB, r *repo.Repository, name string, mode uint32, chunks ...[]byte) tree.Node {
	n := tree.Node{Name: name, Type: tree.File, Mode: mode, MTime: tree.Time{Sec: 1_600_000_000}}
	for _, c := range chunks {
		n.Content = append(n.Content, save(t, r, pack.Data, c))
		n.Size += uint64(len(c))
	}
	return n
}

func dirNode(t testing.TB, r *repo.Repository, name string, mode uint32, nodes ...tree.Node) tree.Node {
	return tree.Node{Name: name, Type: tree.Dir, Mode: mode, Subtree: treeOf(t, r, nodes...)}
}

func treeOf(t testing.TB, r *repo.Repository, nodes ...tree.Node) crypto.ID {
	tr := &tree.Tree{Nodes: nodes}
	tr.Sort()
	b, err := tree.Encode(tr, r.TreeVersion())
	if err != nil {
		t.Fatal(err)
	}
	return save(t, r, pack.Tree, b)
}

func flush(t testing.TB, r *repo.Repository) {
	if _, err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type warnings struct {
	collect
	warns []string
}

func (w *warnings) Warning(path, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warns = append(w.warns, path+": "+msg)
}

// An in-place restore writes only inside what the config includes today:
// a job that holds more (an authorized_keys file, a mode of 777 for the
// directory above the project) has that skipped and reported, and the
// directories above the includes are left as they are.
func TestWithinConfines(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	rootID := treeOf(t, r,
		dirNode(t, r, "proj", 0o777,
			dirNode(t, r, "data", 0o750, fileNode(t, r, "a", 0o640, []byte("A"))),
			fileNode(t, r, "secret", 0o600, []byte("S"))),
		dirNode(t, r, "home", 0o755, dirNode(t, r, "u", 0o700, dirNode(t, r, ".ssh", 0o700,
			fileNode(t, r, "authorized_keys", 0o600, []byte("ssh-ed25519 attacker"))))),
		fileNode(t, r, "proj-file-instead-of-dir", 0o644, []byte("x")))
	flush(t, r)
	for _, exists := range []bool{true, false} {
		target := t.TempDir()
		if exists {
			os.Mkdir(filepath.Join(target, "proj"), 0o755)
		}
		rep := &warnings{}
		res, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target,
			Within: []string{filepath.Join(target, "proj", "data")}, Reporter: rep})
		if err != nil || res.Errors != 0 {
			t.Fatalf("restore: %v %+v %v", err, res, rep.errs)
		}
		if b, err := os.ReadFile(filepath.Join(target, "proj/data/a")); err != nil || string(b) != "A" {
			t.Fatalf("proj/data/a: %q %v", b, err)
		}
		for _, p := range []string{"home", "proj/secret", "proj-file-instead-of-dir"} {
			if _, err := os.Lstat(filepath.Join(target, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was restored outside the includes", p)
			}
		}
		if res.Outside != 3 || len(rep.warns) != 3 || !strings.Contains(rep.warns[0], "outside what runup.yaml includes") {
			t.Errorf("outside: %d, warnings %v", res.Outside, rep.warns)
		}
		fi, _ := os.Stat(filepath.Join(target, "proj"))
		if want := os.FileMode(0o755); exists && fi.Mode().Perm() != want {
			t.Errorf("existing directory above the include: mode %v, want %v", fi.Mode().Perm(), want)
		}
		if want := os.FileMode(0o777); !exists && fi.Mode().Perm() != want {
			t.Errorf("directory made above the include: mode %v, want the job's %v", fi.Mode().Perm(), want)
		}
	}
	// A link where a directory above the includes should be is not
	// followed, nor replaced.
	target, elsewhere := t.TempDir(), t.TempDir()
	os.Symlink(elsewhere, filepath.Join(target, "proj"))
	rep := &warnings{}
	res, _ := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target,
		Within: []string{filepath.Join(target, "proj", "data")}, Reporter: rep})
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 || res.Errors == 0 {
		t.Fatalf("restore followed a link above the includes: %v, %+v", entries, res)
	}
	if l, err := os.Readlink(filepath.Join(target, "proj")); err != nil || l != elsewhere {
		t.Fatalf("the link above the includes was replaced: %q %v", l, err)
	}
}

// Links planted inside the target while a restore runs cannot redirect a
// single write outside it: every operation is relative to a directory
// descriptor and no link is followed.
func TestLinksPlantedDuringRestore(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	var files []tree.Node
	for i := range 3000 {
		files = append(files, fileNode(t, r, "f"+string(rune('a'+i%26))+strings.Repeat("x", i/26), 0o644, []byte{byte(i), byte(i >> 8), 1}))
	}
	rootID := treeOf(t, r, dirNode(t, r, "d", 0o755, dirNode(t, r, "sub", 0o755, files...)))
	flush(t, r)
	outside := t.TempDir()
	os.Mkdir(filepath.Join(outside, "sub"), 0o755)
	target := t.TempDir()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d := filepath.Join(target, "d")
		for !stop.Load() {
			// Swap the directory for a link to elsewhere, and back.
			if os.Rename(d, d+".real") == nil {
				os.Symlink(outside, d)
				time.Sleep(50 * time.Microsecond)
				os.Remove(d)
				os.Rename(d+".real", d)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}()
	Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target, Reporter: &collect{}})
	stop.Store(true)
	wg.Wait()
	if entries, _ := os.ReadDir(filepath.Join(outside, "sub")); len(entries) != 0 {
		t.Fatalf("a planted link redirected %d writes outside the target", len(entries))
	}
	if fi, _ := os.Stat(filepath.Join(outside, "sub")); fi.Mode().Perm() != 0o755 {
		t.Fatalf("a planted link redirected a mode: %v", fi.Mode())
	}
}

// A file whose content cannot be verified is removed, never left with the
// job's size and time; other files restore, and the damage is counted.
func TestDamagedContentRemoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := repoOn(t, dir, nil)
	rnd := rand.New(rand.NewPCG(1, 1))
	big := func() []byte {
		b := make([]byte, 200<<10) // above the group size: a blob of its own
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	good, bad1, bad2 := big(), big(), big()
	rootID := treeOf(t, r, fileNode(t, r, "good", 0o644, good), fileNode(t, r, "bad", 0o644, bad1, bad2))
	flush(t, r)
	loc, _ := r.Lookup(pack.Data, r.Key().Hash(bad2))
	p := filepath.Join(dir, "data", loc.PackID.String()[:2], loc.PackID.String())
	os.Chmod(p, 0o600)
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff, 0xee}, int64(loc.Offset)+100)
	f.Close()

	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "bad"), []byte("an older version"), 0o644)
	rep := &collect{}
	res, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target, Reporter: rep})
	if err != nil || res.Damaged != 1 || res.Errors != 1 {
		t.Fatalf("restore: %v %+v %v", err, res, rep.errs)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "good")); !bytes.Equal(b, good) {
		t.Fatal("good file not restored")
	}
	if _, err := os.Lstat(filepath.Join(target, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file with unverified content was left: %v", err)
	}
}

// flaky fails every load after the first few, as a server that went away.
type flaky struct {
	backend.Backend
	loads, after atomic.Int64
}

func (f *flaky) Load(ctx context.Context, h backend.Handle, off, n int64) ([]byte, error) {
	if h.Type == backend.Data && f.loads.Add(1) > f.after.Load() {
		return nil, errors.New("connection reset by peer")
	}
	return f.Backend.Load(ctx, h, off, n)
}

// When the storage fails, the restore stops at once with the storage's
// error instead of failing file after file, and no file is left that looks
// restored but is not.
func TestStorageFailureStops(t *testing.T) {
	ctx := context.Background()
	fb := &flaky{}
	fb.after.Store(1 << 40)
	r := repoOn(t, t.TempDir(), func(be backend.Backend) backend.Backend { fb.Backend = be; return fb })
	rnd := rand.New(rand.NewPCG(2, 2))
	want := map[string][]byte{}
	var files []tree.Node
	for i := range 40 {
		b := make([]byte, 300<<10)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		name := "f" + string(rune('A'+i))
		want[name] = b
		files = append(files, fileNode(t, r, name, 0o644, b))
	}
	rootID := treeOf(t, r, files...)
	flush(t, r)
	fb.loads.Store(0)
	fb.after.Store(2)
	target := t.TempDir()
	rep := &collect{}
	_, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target, Reporter: rep, Workers: 2})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("restore from failing storage: %v", err)
	}
	if fb.loads.Load() > 2+2 {
		t.Errorf("%d loads after the storage failed", fb.loads.Load()-2)
	}
	entries, _ := os.ReadDir(target)
	for _, e := range entries {
		if b, _ := os.ReadFile(filepath.Join(target, e.Name())); !bytes.Equal(b, want[e.Name()]) {
			t.Errorf("%s was left with the wrong content", e.Name())
		}
	}
}

// Holes are made at block granularity: a file of mostly zeros restores
// with only its data blocks allocated, in any chunk layout.
func TestSparse(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	mib := func(fill func(b []byte)) []byte { b := make([]byte, 1<<20); fill(b); return b }
	head := mib(func(b []byte) { copy(b, "abcd") })
	zero := mib(func([]byte) {})
	middle := mib(func(b []byte) { copy(b[600_000:], "in the middle") })
	small := make([]byte, 64<<10) // one chunk: data, then 56 KiB of zeros
	copy(small, bytes.Repeat([]byte("z"), 8192))
	rootID := treeOf(t, r, fileNode(t, r, "big", 0o644, head, zero, middle, zero), fileNode(t, r, "small", 0o644, small))
	flush(t, r)
	target := t.TempDir()
	if res, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: target}); err != nil || res.Errors != 0 {
		t.Fatalf("restore: %v %+v", err, res)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		maxUsed int64
	}{
		{"big", bytes.Join([][]byte{head, zero, middle, zero}, nil), 64 << 10},
		{"small", small, 16 << 10},
	} {
		p := filepath.Join(target, tc.name)
		if b, _ := os.ReadFile(p); !bytes.Equal(b, tc.content) {
			t.Fatalf("%s: content differs", tc.name)
		}
		var st syscall.Stat_t
		syscall.Stat(p, &st)
		if used := st.Blocks * 512; used > tc.maxUsed {
			t.Errorf("%s: %d KiB allocated, want at most %d", tc.name, used>>10, tc.maxUsed>>10)
		}
	}
}

// A write that fails (a full disk) ends with an error naming the file, no
// panic, and no partial file.
func TestWriteFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	ctx := context.Background()
	r := newRepo(t)
	rnd := rand.New(rand.NewPCG(3, 3))
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	rootID := treeOf(t, r, fileNode(t, r, "toobig", 0o644, b[:1<<20], b[1<<20:2<<20], b[2<<20:]))
	flush(t, r)
	rep := &collect{}
	res, err := Restore(ctx, r, &repo.Job{Number: 1, Tree: rootID}, Options{Target: mnt, Reporter: rep})
	if err != nil || res.Errors != 1 || !strings.Contains(strings.Join(rep.errs, ""), "no space left") {
		t.Fatalf("restore onto a full disk: %v %+v %v", err, res, rep.errs)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "toobig")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a partial file was left: %v", err)
	}
}

func TestMatchBelow(t *testing.T) {
	for _, tc := range []struct {
		pattern, dir string
		want         bool
	}{
		{"d0000/real", "d0000", true},
		{"d0000/real", "d0001", false},
		{"d0000/real", "d0000/real", false},
		{"d*/real", "d0001", true},
		{"**/real", "anything/deep", true},
		{"a/**", "a", true},
		{"a/**", "b", false},
		{"a/b/c", "a/b", true},
		{"a/b/c", "a/x", false},
		{"a", "a", false},
	} {
		if got := matchBelow(tc.pattern, tc.dir); got != tc.want {
			t.Errorf("matchBelow(%q, %q) = %v", tc.pattern, tc.dir, got)
		}
	}
}
