package copier

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/runup/runup/internal/archiver"
	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/repo/repotest"
	"github.com/runup/runup/internal/tree"
)

func newRepo(t *testing.T, password string) *repo.Repository { return repotest.New(t, password) }

// files lists a job as path → content, read back and verified.
func files(t *testing.T, r *repo.Repository, root crypto.ID) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string, id crypto.ID)
	walk = func(prefix string, id crypto.ID) {
		tr, err := r.LoadTree(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tr.Nodes {
			p := path.Join(prefix, n.Name)
			switch n.Type {
			case tree.Dir:
				out[p+"/"] = fmt.Sprintf("%o %d", n.Mode, n.MTime.Sec)
				walk(p, n.Subtree)
			case tree.Symlink:
				out[p] = "->" + n.Target
			case tree.File:
				var b []byte
				for _, c := range n.Content {
					data, err := r.LoadBlob(context.Background(), pack.Data, c, nil)
					if err != nil {
						t.Fatal(err)
					}
					b = append(b, data...)
				}
				out[p] = fmt.Sprintf("%o %d %s", n.Mode, n.MTime.Sec, b)
			}
		}
	}
	walk("", root)
	return out
}

type source struct {
	t    *testing.T
	dir  string
	r    *repo.Repository
	jobs []*repo.Job
	rnd  *rand.Rand
}

func (s *source) write(name string, size int) {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(s.rnd.Uint32())
	}
	p := filepath.Join(s.dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *source) backup(project string) *repo.Job {
	var parent *repo.Job
	for _, j := range s.jobs {
		if j.Project == project {
			parent = j
		}
	}
	j, err := archiver.Backup(context.Background(), s.r, archiver.Options{Project: project, Base: s.dir,
		Paths: []string{filepath.Join(s.dir, project)}, Written: []string{project}, Parent: parent, Host: "h1", Tags: []string{"t"}})
	if err != nil {
		s.t.Fatal(err)
	}
	s.jobs = append(s.jobs, j)
	return j
}

func copyAll(t *testing.T, src, dst *repo.Repository, st *Stats) []*repo.Job {
	t.Helper()
	ctx := context.Background()
	sj, _, _ := src.Jobs(ctx)
	dj, _, _ := dst.Jobs(ctx)
	var out []*repo.Job
	for _, j := range Missing(sj, dj, src.Config().ID, dst.Config().ID) {
		h, ok := FindHint(j, sj, dj, src.Config().ID, dst.Config().ID)
		var hp *Hint
		if ok {
			hp = &h
		}
		nj, err := Copy(ctx, src, dst, j, hp, Options{Stats: st})
		if err != nil {
			t.Fatal(err)
		}
		dj = append(dj, nj)
		out = append(out, nj)
	}
	return out
}

func TestCopy(t *testing.T) {
	for _, tc := range []struct{ name, srcPW, dstPW string }{
		{"plain to encrypted", "", "target"},
		{"encrypted to encrypted", "source", "target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &source{t: t, dir: t.TempDir(), r: newRepo(t, tc.srcPW), rnd: rand.New(rand.NewPCG(1, 2))}
			dst := newRepo(t, tc.dstPW)
			for i := range 40 {
				src.write(fmt.Sprintf("site/small/%02d", i), 100+i*50) // grouped
			}
			src.write("site/big.bin", 3<<20) // chunked
			src.write("site/deep/a/b/c", 10)
			src.write("other/x", 5)
			first := src.backup("site")
			src.backup("other")

			var st Stats
			copied := copyAll(t, src.r, dst, &st)
			if len(copied) != 2 || st.Jobs.Load() != 2 {
				t.Fatalf("copied %d jobs", len(copied))
			}
			c := copied[0]
			if c.Project != "site" || c.Host != "h1" || !c.Time.Equal(first.Time) || c.Tags[0] != "t" ||
				c.Origin == nil || c.Origin.Repository != src.r.Config().ID || c.Origin.Job != first.Number {
				t.Fatalf("copied job %+v", c)
			}
			if got, want := files(t, dst, c.Tree), files(t, src.r, first.Tree); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("copy differs:\n%v\n%v", got, want)
			}
			if dst.Config().ID == src.r.Config().ID || dst.Key().Hash([]byte("x")) == src.r.Key().Hash([]byte("x")) {
				t.Fatal("the repositories share keys: the test proves nothing")
			}

			// Nothing is missing now: a second copy copies nothing.
			if again := copyAll(t, src.r, dst, &Stats{}); len(again) != 0 {
				t.Fatalf("copied again: %v", again)
			}

			// An incremental backup copies as an increment.
			src.write("site/small/07", 999)
			src.write("site/new", 20)
			second := src.backup("site")
			var inc Stats
			copied = copyAll(t, src.r, dst, &inc)
			if len(copied) != 1 {
				t.Fatalf("copied %d", len(copied))
			}
			if got, want := files(t, dst, copied[0].Tree), files(t, src.r, second.Tree); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("incremental copy differs")
			}
			if inc.BlobsRead.Load() != 2 || inc.DirsReused.Load() < 1 || inc.FilesReused.Load() < 40 {
				t.Errorf("incremental copy read %d chunks, reused %d dirs and %d files: want 2 chunks",
					inc.BlobsRead.Load(), inc.DirsReused.Load(), inc.FilesReused.Load())
			}
		})
	}
}

// A copy that is interrupted leaves no job; the next stores only the rest.
func TestInterrupted(t *testing.T) {
	src := &source{t: t, dir: t.TempDir(), r: newRepo(t, ""), rnd: rand.New(rand.NewPCG(3, 4))}
	dst := newRepo(t, "")
	for i := range 8 {
		src.write(fmt.Sprintf("site/f%d", i), 2<<20)
	}
	j := src.backup("site")
	ctx, cancel := context.WithCancel(context.Background())
	var st Stats
	go func() {
		for st.BlobsAdded.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := Copy(ctx, src.r, dst, j, nil, Options{Stats: &st, Workers: 1}); err == nil {
		t.Fatal("not interrupted")
	}
	if nums, _ := dst.JobNumbers(context.Background()); len(nums) != 0 {
		t.Fatalf("an interrupted copy left jobs %v", nums)
	}
	// What was written is found again (as a backup's packs are).
	if _, _, err := dst.AdoptPacks(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rest Stats
	copied := copyAll(t, src.r, dst, &rest)
	if len(copied) != 1 {
		t.Fatal("not copied")
	}
	if st.BlobsAdded.Load() == 0 || rest.BlobsRead.Load() == 0 {
		t.Fatalf("first run added %d, second read %d", st.BlobsAdded.Load(), rest.BlobsRead.Load())
	}
	// No blob is stored twice.
	seen := map[crypto.ID]int{}
	err := dst.Backend().List(context.Background(), backend.Data, func(fi backend.FileInfo) error {
		id, err := crypto.ParseID(fi.Name)
		if err != nil {
			return err
		}
		blobs, err := dst.ReadPackHeader(context.Background(), id, fi.Size)
		for _, b := range blobs {
			seen[b.ID]++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("blob %v stored %d times", id.Short(), n)
		}
	}
	if got, want := files(t, dst, copied[0].Tree), files(t, src.r, j.Tree); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("the resumed copy differs")
	}
}

func TestMissing(t *testing.T) {
	job := func(n int, origin *repo.Origin) *repo.Job { return &repo.Job{Number: n, Origin: origin} }
	tests := []struct {
		name     string
		src, dst []*repo.Job
		want     []int
	}{
		{"empty target", []*repo.Job{job(1, nil), job(2, nil)}, nil, []int{1, 2}},
		{"some copied", []*repo.Job{job(1, nil), job(2, nil), job(3, nil)},
			[]*repo.Job{job(1, &repo.Origin{Repository: "S", Job: 1}), job(2, &repo.Origin{Repository: "S", Job: 3})}, []int{2}},
		{"a copy of a copy is the same job", []*repo.Job{job(4, &repo.Origin{Repository: "X", Job: 9})},
			[]*repo.Job{job(1, &repo.Origin{Repository: "X", Job: 9})}, nil},
		{"a job copied back is not copied again", []*repo.Job{job(4, &repo.Origin{Repository: "D", Job: 2})},
			[]*repo.Job{job(2, nil)}, nil},
		{"the target's own jobs do not count", []*repo.Job{job(1, nil)}, []*repo.Job{job(1, nil)}, []int{1}},
	}
	for _, tt := range tests {
		var got []int
		for _, j := range Missing(tt.src, tt.dst, "S", "D") {
			got = append(got, j.Number)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
