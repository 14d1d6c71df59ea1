package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/repo/repotest"
	"github.com/runup/runup/internal/tree"
)

func newRepo(t *testing.T) *repo.Repository { return repotest.New(t, "") }

// contents lists a job as path → content ("dir/" for directories, "->x"
// for links), reading every file back from the repository.
func contents(t *testing.T, r *repo.Repository, j *repo.Job) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string, id [32]byte)
	walk = func(prefix string, id [32]byte) {
		tr, err := r.LoadTree(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tr.Nodes {
			p := path.Join(prefix, n.Name)
			switch n.Type {
			case tree.Dir:
				out[p+"/"] = fmt.Sprintf("%o", n.Mode)
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
				if uint64(len(b)) != n.Size {
					t.Fatalf("%s: size %d, content %d", p, n.Size, len(b))
				}
				out[p] = string(b)
			}
		}
	}
	walk("", j.Tree)
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stream is a Stream from a string, failing at Close with err.
func stream(name, data string, err error) Stream {
	return Stream{Name: name, Open: func(context.Context) (io.ReadCloser, error) {
		return &closer{Reader: strings.NewReader(data), err: err}, nil
	}}
}

type closer struct {
	io.Reader
	err error
}

func (c *closer) Close() error { return c.err }

func TestBackup(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: chunked
	tests := []struct {
		name     string
		files    map[string]string
		includes []string
		excludes []string
		globs    bool
		streams  []Stream
		want     map[string]string // paths of the job (directories omitted)
		wantErr  string
	}{
		{name: "includes and what is above them",
			files:    map[string]string{"www/index.html": "<h1>", "www/big.bin": big, "etc/app.conf": "x=1", "other/no": "no"},
			includes: []string{"www", "etc/app.conf"},
			want:     map[string]string{"www/index.html": "<h1>", "www/big.bin": big, "etc/app.conf": "x=1"}},
		{name: "version 1 excludes are exact paths",
			files:    map[string]string{"a/keep": "k", "a/skip": "s", "a/sub/x.log": "l"},
			includes: []string{"a"}, excludes: []string{"a/skip"},
			want: map[string]string{"a/keep": "k", "a/sub/x.log": "l"}},
		{name: "version 2 excludes are globs",
			files:    map[string]string{"a/keep": "k", "a/sub/x.log": "l", "a/y.log": "l"},
			includes: []string{"a"}, excludes: []string{"**/*.log"}, globs: true,
			want: map[string]string{"a/keep": "k"}},
		{name: "streams beside includes, in made-up directories",
			files:    map[string]string{"www/index.html": "<h1>"},
			includes: []string{"www"},
			streams:  []Stream{stream("db/site.sql", "CREATE TABLE t;", nil), stream("top.txt", big, nil), stream("www2/x", "", nil)},
			want:     map[string]string{"www/index.html": "<h1>", "db/site.sql": "CREATE TABLE t;", "top.txt": big, "www2/x": ""}},
		{name: "a stream into an existing directory that is not included",
			files:    map[string]string{"www/index.html": "<h1>", "db/old.sql": "old"},
			includes: []string{"www"},
			streams:  []Stream{stream("db/site.sql", "new", nil)},
			want:     map[string]string{"www/index.html": "<h1>", "db/site.sql": "new"}},
		{name: "only streams", streams: []Stream{stream("site.sql", "dump", nil)},
			want: map[string]string{"site.sql": "dump"}},
		{name: "a failing stream saves no job",
			files: map[string]string{"www/index.html": "<h1>"}, includes: []string{"www"},
			streams: []Stream{stream("db.sql", "partial", errors.New("pg_dump failed: exit status 1"))},
			wantErr: "db.sql: pg_dump failed"},
		{name: "a stream inside an include is refused",
			files: map[string]string{"www/index.html": "<h1>"}, includes: []string{"www"},
			streams: []Stream{stream("www/db.sql", "x", nil)},
			wantErr: "lies inside an include"},
		{name: "a stream named twice is refused",
			streams: []Stream{stream("a.sql", "x", nil), stream("a.sql", "y", nil)},
			wantErr: "named twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t)
			base := t.TempDir()
			writeFiles(t, base, tt.files)
			var paths []string
			for _, inc := range tt.includes {
				paths = append(paths, filepath.Join(base, inc))
			}
			j, err := Backup(context.Background(), r, Options{Project: "p", Base: base, Paths: paths, Written: tt.includes,
				Filter: NewFilter(base, tt.excludes, tt.globs), Streams: tt.streams, Host: "h"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if nums, _ := r.JobNumbers(context.Background()); len(nums) != 0 {
					t.Fatalf("a failed backup saved jobs %v", nums)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := contents(t, r, j)
			for p := range got {
				if strings.HasSuffix(p, "/") {
					delete(got, p)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("job has %v, want %v", keys(got), keys(tt.want))
			}
			for p, data := range tt.want {
				if got[p] != data {
					t.Errorf("%s: %d bytes, want %d", p, len(got[p]), len(data))
				}
			}
			if s := j.Summary; s.FilesNew != len(tt.want) || s.Errors != 0 {
				t.Errorf("summary %+v", s)
			}
		})
	}
}

func keys(m map[string]string) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	slices.Sort(k)
	return k
}

// A second backup reads only what changed, and its job is complete.
func TestIncremental(t *testing.T) {
	r := newRepo(t)
	base := t.TempDir()
	writeFiles(t, base, map[string]string{"a/one": "1", "a/two": "2", "a/sub/three": "3"})
	o := Options{Project: "p", Base: base, Paths: []string{filepath.Join(base, "a")}, Host: "h"}
	first, err := Backup(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, base, map[string]string{"a/two": "two, longer", "a/four": "4"})
	o.Parent = first
	o.Streams = []Stream{stream("dump.sql", "d", nil)}
	second, err := Backup(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	s := second.Summary
	if s.FilesUnchanged != 2 || s.FilesChanged != 1 || s.FilesNew != 2 || s.Dirs != 2 {
		t.Errorf("summary %+v", s)
	}
	got := contents(t, r, second)
	for p, want := range map[string]string{"a/one": "1", "a/two": "two, longer", "a/sub/three": "3", "a/four": "4", "dump.sql": "d"} {
		if got[p] != want {
			t.Errorf("%s = %q, want %q", p, got[p], want)
		}
	}
	if second.Parent != first.Number {
		t.Errorf("parent %d", second.Parent)
	}
	// --force reads everything again but stores nothing new.
	o.Parent, o.Force = second, true
	o.Streams = nil
	third, err := Backup(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	// Read again, and still told apart: nothing new or changed.
	if s := third.Summary; s.FilesUnchanged != 4 || s.FilesNew != 0 || s.FilesChanged != 0 || s.BytesRead == 0 || s.BlobsAdded != 1 { // only the root tree, which lost dump.sql
		t.Errorf("forced summary %+v", s)
	}
}

// An unreadable file makes the job incomplete, not failed.
func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	r := newRepo(t)
	base := t.TempDir()
	writeFiles(t, base, map[string]string{"a/ok": "1", "a/secret": "2"})
	os.Chmod(filepath.Join(base, "a/secret"), 0)
	var rep recordingReporter
	j, err := Backup(context.Background(), r, Options{Project: "p", Base: base, Paths: []string{filepath.Join(base, "a")}, Reporter: &rep})
	if err != nil {
		t.Fatal(err)
	}
	if !j.Incomplete || j.Summary.Errors != 1 || len(rep.errors) != 1 || !strings.Contains(rep.errors[0], "secret") {
		t.Fatalf("job %+v, errors %v", j, rep.errors)
	}
}

type recordingReporter struct {
	mu               sync.Mutex
	errors, warnings []string
}

func (r *recordingReporter) Error(p string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, p+": "+err.Error())
}

func (r *recordingReporter) Warning(p, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = append(r.warnings, p+": "+msg)
}
