package checker

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runup/runup/internal/archiver"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/repo"
)

func TestParseSubset(t *testing.T) {
	for in, want := range map[string]Subset{"1/3": {N: 1, T: 3}, "3/3": {N: 3, T: 3}, "5%": {Fraction: 0.05}, "100%": {Fraction: 1}} {
		if got, err := ParseSubset(in); err != nil || got != want {
			t.Errorf("ParseSubset(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0/3", "4/3", "1/0", "0%", "101%", "half", ""} {
		if _, err := ParseSubset(bad); err == nil {
			t.Errorf("ParseSubset(%q) accepted", bad)
		}
	}
}

// fixture is a repository on disk with two jobs: job 1 holds small.txt and
// big.bin (its own, largest pack), job 2 adds other.txt.
type fixture struct {
	dir string // the repository's folder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	be.Create()
	if _, err := repo.Init(ctx, be, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	big := make([]byte, 3<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644)
	os.WriteFile(filepath.Join(src, "small.txt"), []byte("small"), 0o644)
	r := open(t, dir)
	backup := func(parent *repo.Job) *repo.Job {
		j, err := archiver.Backup(ctx, r, archiver.Options{Project: "p", Base: src, InContext: true, Paths: []string{src},
			Filter: archiver.NewFilter(src, nil, true), Stats: &archiver.Stats{}, Parent: parent})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	j1 := backup(nil)
	os.WriteFile(filepath.Join(src, "other.txt"), []byte("other"), 0o644)
	backup(j1)
	r.Close()
	return &fixture{dir: dir}
}

func open(t *testing.T, dir string) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, nil, repo.Options{IndexDir: filepath.Join(filepath.Dir(dir), "idx")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// biggestPack is the path of the largest file under data/: big.bin's.
func (f *fixture) biggestPack(t *testing.T) string {
	t.Helper()
	var best string
	var size int64
	filepath.Walk(filepath.Join(f.dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return nil
	})
	return best
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		damage   func(t *testing.T, f *fixture)
		opts     Options
		ok       bool
		damaged  []int    // jobs
		affected []string // paths named, in any job
		problem  string   // in some problem's text
	}{
		{name: "clean", damage: func(*testing.T, *fixture) {}, ok: true},
		{name: "clean, every byte read", damage: func(*testing.T, *fixture) {}, opts: Options{ReadData: true}, ok: true},
		{name: "pack lost", damage: func(t *testing.T, f *fixture) {
			p := f.biggestPack(t)
			os.Chmod(p, 0o600)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, damaged: []int{1, 2}, affected: []string{"big.bin"}},
		{name: "a flipped byte in the data, found by reading it", damage: flipMiddle, opts: Options{ReadData: true},
			damaged: []int{1, 2}, affected: []string{"big.bin"}, problem: "blob"},
		{name: "a flipped byte in the data, unseen by the structure check", damage: flipMiddle, ok: true},
		{name: "a job record lost (a hole in the numbers)", damage: func(t *testing.T, f *fixture) {
			p := filepath.Join(f.dir, "jobs", "0000000001")
			os.Chmod(p, 0o600)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, problem: "job 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.damage(t, f)
			rep, err := Check(context.Background(), open(t, f.dir), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() != tc.ok && tc.problem == "" {
				t.Fatalf("OK() = %v, want %v: %+v", rep.OK(), tc.ok, rep)
			}
			if tc.damaged != nil && !slices.Equal(rep.DamagedJobs, tc.damaged) {
				t.Errorf("damaged jobs %v, want %v", rep.DamagedJobs, tc.damaged)
			}
			for _, want := range tc.affected {
				found := false
				for _, a := range rep.Affected {
					found = found || strings.HasSuffix(a.Path, want)
				}
				if !found {
					t.Errorf("%s is not among the affected: %+v", want, rep.Affected)
				}
			}
			if tc.problem != "" {
				found := false
				for _, p := range rep.Problems {
					found = found || strings.Contains(p.Kind+" "+p.What+" "+p.Err, tc.problem)
				}
				if !found {
					t.Errorf("no problem mentions %q: %+v", tc.problem, rep.Problems)
				}
			}
			if tc.ok && (len(rep.GoodJobs) != 2 || rep.Packs == 0) {
				t.Errorf("a clean repository: %+v", rep)
			}
			if tc.opts.ReadData && rep.PacksRead != rep.Packs {
				t.Errorf("read %d of %d packs", rep.PacksRead, rep.Packs)
			}
		})
	}
}

func flipMiddle(t *testing.T, f *fixture) {
	p := f.biggestPack(t)
	os.Chmod(p, 0o600)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o400); err != nil {
		t.Fatal(err)
	}
}

// --read-data-subset reads about the share asked for, and n/t subsets
// cover every pack once.
func TestSubsetReads(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.dir)
	total := 0
	for n := 1; n <= 3; n++ {
		rep, err := Check(context.Background(), r, Options{ReadData: true, Subset: &Subset{N: n, T: 3}})
		if err != nil || !rep.OK() {
			t.Fatalf("subset %d/3: %v %+v", n, err, rep)
		}
		total += rep.PacksRead
		if n == 3 && total != rep.Packs {
			t.Fatalf("the three thirds read %d packs of %d", total, rep.Packs)
		}
	}
}
