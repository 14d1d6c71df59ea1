package browse

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runup/runup/internal/archiver"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/repo"
)

// The repository's ratios: duplicates are deduplication, never
// "compression", and the distinct data is never larger than the logical.
func TestRepositoryStats(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	src := t.TempDir()
	random := make([]byte, 1<<20)
	rand.Read(random)
	// Text from a small vocabulary compresses, and has no repeated chunks.
	rng := mrand.New(mrand.NewPCG(1, 2))
	words := strings.Fields("backup restore chunk pack index tree job repository prune check mount daemon")
	var text strings.Builder
	for text.Len() < 1<<20 {
		text.WriteString(words[rng.IntN(len(words))])
		text.WriteString(fmt.Sprint(rng.IntN(1000), " "))
	}
	files := map[string][]byte{"a.bin": random, "copy-of-a.bin": random, "text.txt": []byte(text.String())}
	distinct := int64(len(random) + text.Len())
	for i := range 40 { // small files, grouped; two contents only
		content := []byte(fmt.Sprintf("small file of kind %d\n", i%2))
		files[fmt.Sprintf("small/%02d", i)] = content
		if i < 2 {
			distinct += int64(len(content))
		}
	}
	var logical int64
	for name, b := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
		logical += int64(len(b))
	}
	var jobs []*repo.Job
	for range 2 { // the second job changes nothing: all of it is dedup
		var parent *repo.Job
		if len(jobs) > 0 {
			parent = jobs[0]
		}
		j, err := archiver.Backup(ctx, r, archiver.Options{Project: "p", Base: src, InContext: true, Paths: []string{src},
			Filter: archiver.NewFilter(src, nil, true), Stats: &archiver.Stats{}, Parent: parent})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	s, err := RepositoryStats(ctx, r, jobs)
	if err != nil {
		t.Fatal(err)
	}
	if s.Jobs != 2 || s.LogicalSize != 2*logical {
		t.Fatalf("jobs %d, logical %d; want 2 and %d", s.Jobs, s.LogicalSize, 2*logical)
	}
	if s.RawSize != distinct {
		t.Errorf("distinct data %d bytes, want %d (each chunk once)", s.RawSize, distinct)
	}
	if want := float64(2*logical) / float64(distinct); s.Dedup() < want*0.999 || s.Dedup() > want*1.001 {
		t.Errorf("dedup %.3f, want %.3f", s.Dedup(), want)
	}
	// Random data does not compress, text does: overall a little above 1,
	// and never below it because of duplicates.
	if c := s.Compression(); c < 1.2 || c > 3 {
		t.Errorf("compression %.2f: stored %d of %d distinct bytes", c, s.StoredSize, s.RawSize)
	}
	if s.StoredSize > s.PackSize || s.TreeSize <= 0 || s.Packs == 0 || s.Other() < 0 {
		t.Errorf("sizes: %+v", s)
	}
}

// Two writers that stored the same new data at the same time leave it in
// the packs twice: the second copy is waste for prune, not part of the
// distinct data, and never shows as a compression ratio below 1.
func TestRepositoryStatsTwoWriters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be, _ := local.Open(filepath.Join(dir, "repo"))
	be.Create()
	// Encrypted: two writers' packs of the same data differ (in an
	// unencrypted repository they are the same file, stored once).
	pw := []byte("two writers")
	if _, err := repo.Init(ctx, be, repo.InitOptions{Password: pw}); err != nil {
		t.Fatal(err)
	}
	open := func(name string) *repo.Repository {
		r, err := repo.Open(ctx, be, func() ([]byte, error) { return pw, nil }, repo.Options{IndexDir: filepath.Join(dir, name)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	src := t.TempDir()
	random := make([]byte, 2<<20)
	rand.Read(random)
	os.WriteFile(filepath.Join(src, "same.bin"), random, 0o644)
	// Both open before either has written: neither knows the other's data.
	// A stream that sorts first holds each walk until both have started:
	// then both store same.bin before either can see the other's.
	r1, r2 := open("idx1"), open("idx2")
	jobs := make([]*repo.Job, 2)
	errs := make([]error, 2)
	var started, wg sync.WaitGroup
	started.Add(2)
	gate := archiver.Stream{Name: "0-gate", Open: func(context.Context) (io.ReadCloser, error) {
		started.Done()
		started.Wait()
		return io.NopCloser(strings.NewReader("gate")), nil
	}}
	for i, r := range []*repo.Repository{r1, r2} {
		wg.Go(func() {
			jobs[i], errs[i] = archiver.Backup(ctx, r, archiver.Options{Project: "p", Base: src, InContext: true,
				Paths: []string{filepath.Join(src, "same.bin")}, Streams: []archiver.Stream{gate},
				Filter: archiver.NewFilter(src, nil, true), Stats: &archiver.Stats{}})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Summary.BytesAdded < int64(len(random)) {
			t.Fatalf("job %d added %d bytes: the writers did not overlap", j.Number, j.Summary.BytesAdded)
		}
	}
	s, err := RepositoryStats(ctx, open("idx3"), jobs)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(random) + len("gate")); s.RawSize != want {
		t.Errorf("distinct data %d, want %d: a chunk stored twice counts once", s.RawSize, want)
	}
	if c := s.Compression(); c < 0.95 {
		t.Errorf("compression %.2f: duplicates show as compression", c)
	}
	if s.Other() < int64(len(random))*9/10 {
		t.Errorf("the second copy (%d bytes) is not counted as reclaimable: %+v", len(random), s)
	}
}
