package archiver

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The tree every selection case backs up.
var selectTree = map[string]string{
	"src/main.go":             "package main",
	"src/README.TXT":          "read me",
	"src/notes.txt":           "notes",
	"src/vendor/lib/lib.go":   "package lib",
	"build/out.bin":           strings.Repeat("x", 5000),
	"cache/CACHEDIR.TAG":      "Signature: 8a477f597d28d172789f06886806bc55\n",
	"cache/blob":              "cached",
	"faketag/CACHEDIR.TAG":    "not the signature",
	"faketag/kept":            "kept",
	"private/.nobackup":       "",
	"private/secret":          "secret",
	"deep/a/b/node_modules/m": "module",
}

// files lists the files (not directories) of a job, sorted.
func files(c map[string]string) []string {
	var out []string
	for p := range c {
		if !strings.HasSuffix(p, "/") {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func TestSelection(t *testing.T) {
	all := files(selectTree)
	without := func(drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(p string) bool {
			for _, d := range drop {
				if p == d || strings.HasPrefix(p, d+"/") {
					return true
				}
			}
			return false
		})
	}
	for _, tc := range []struct {
		name  string
		setup func(f *Filter) error
		want  []string
	}{
		{"nothing left out", func(*Filter) error { return nil }, all},
		{"name at any depth", func(f *Filter) error { return f.Exclude([]string{"node_modules", "*.txt"}, false) },
			without("deep/a/b/node_modules", "src/notes.txt")},
		{"caseless", func(f *Filter) error { return f.Exclude([]string{"*.txt"}, true) },
			without("src/notes.txt", "src/README.TXT")},
		{"path relative to the context", func(f *Filter) error { return f.Exclude([]string{"src/vendor"}, false) },
			without("src/vendor")},
		{"** in a path", func(f *Filter) error { return f.Exclude([]string{"deep/**/m"}, false) },
			without("deep/a/b/node_modules/m")},
		{"comments and blank lines", func(f *Filter) error { return f.Exclude([]string{"# build", "", "  "}, false) }, all},
		{"if present", func(f *Filter) error { f.ExcludeIfPresent([]string{".nobackup"}); return nil },
			without("private")},
		{"caches need the signature", func(f *Filter) error { f.ExcludeIfPresent([]string{CacheDirTag}); return nil },
			without("cache")},
		{"larger than", func(f *Filter) error { f.ExcludeLargerThan(4096); return nil },
			without("build/out.bin")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			src := t.TempDir()
			writeFiles(t, src, selectTree)
			f := NewFilter(src, nil, true)
			if err := tc.setup(f); err != nil {
				t.Fatal(err)
			}
			j, err := Backup(context.Background(), r, Options{Project: "p", Base: src, InContext: true,
				Paths: []string{src}, Filter: f, Stats: &Stats{}})
			if err != nil {
				t.Fatal(err)
			}
			if got := files(contents(t, r, j)); !slices.Equal(got, tc.want) {
				t.Errorf("backed up %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestBadPattern(t *testing.T) {
	if err := NewFilter("/", nil, true).Exclude([]string{"src/[unclosed"}, false); err == nil {
		t.Fatal("an invalid glob was accepted")
	}
}

// A dry run reads and counts, says what it would add, and stores nothing.
func TestDryRun(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	writeFiles(t, src, selectTree)
	// The same content twice counts once.
	writeFiles(t, src, map[string]string{"copy/out.bin": selectTree["build/out.bin"]})
	j, err := Backup(context.Background(), r, Options{Project: "p", Base: src, InContext: true,
		Paths: []string{src}, Filter: NewFilter(src, nil, true), Stats: &Stats{}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if j.Number != 0 || j.Summary.FilesNew != len(selectTree)+1 {
		t.Fatalf("dry run job %d with %d new files", j.Number, j.Summary.FilesNew)
	}
	if j.Summary.BytesAdded < 5000 || j.Summary.BytesAdded > 9000 {
		t.Errorf("would add %d bytes; ~5.1 KB of content and ~2 KB of trees; the copy counts once", j.Summary.BytesAdded)
	}
	if jobs, _, err := r.Jobs(context.Background()); err != nil || len(jobs) != 0 {
		t.Fatalf("a dry run saved a job: %v %v", jobs, err)
	}
	if st, err := r.Flush(context.Background()); err != nil || st.Stored != 0 {
		t.Fatalf("a dry run left %d bytes to store (%v)", st.Stored, err)
	}
}

// Scan counts what the backup then reads, whatever is left out.
func TestScan(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, selectTree)
	f := NewFilter(src, nil, true)
	f.ExcludeIfPresent([]string{CacheDirTag})
	var st Stats
	Scan(context.Background(), Options{Paths: []string{src}, Filter: f, Stats: &st})
	var size int64
	n := 0
	for p, c := range selectTree {
		if !strings.HasPrefix(p, "cache/") {
			size += int64(len(c))
			n++
		}
	}
	if !st.ScanDone.Load() || st.ScanFiles.Load() != int64(n) || st.ScanBytes.Load() != size {
		t.Fatalf("scan: done %v, %d files, %d bytes; want %d files, %d bytes", st.ScanDone.Load(), st.ScanFiles.Load(), st.ScanBytes.Load(), n, size)
	}
}

// --verbose hears of every file with its status.
type fileLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *fileLog) Error(string, error)    {}
func (l *fileLog) Warning(string, string) {}
func (l *fileLog) File(path, status string, size int64) {
	l.mu.Lock()
	l.lines = append(l.lines, status+" "+filepath.Base(path))
	l.mu.Unlock()
}

func TestFileStatus(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"a": "same", "b": "before", "c": strings.Repeat("big", 200000)})
	run := func(parent *Options) (*fileLog, Options) {
		log := &fileLog{}
		o := Options{Project: "p", Base: src, InContext: true, Paths: []string{src}, Filter: NewFilter(src, nil, true),
			Stats: &Stats{}, Reporter: log}
		if parent != nil {
			o.Parent = parent.Parent
		}
		j, err := Backup(context.Background(), r, o)
		if err != nil {
			t.Fatal(err)
		}
		o.Parent = j
		slices.Sort(log.lines)
		return log, o
	}
	first, o := run(nil)
	if want := []string{"new a", "new b", "new c"}; !slices.Equal(first.lines, want) {
		t.Fatalf("first backup: %v, want %v", first.lines, want)
	}
	writeFiles(t, src, map[string]string{"b": "after!", "d": "new"})
	second, _ := run(&o)
	if want := []string{"changed b", "new d", "unchanged a", "unchanged c"}; !slices.Equal(second.lines, want) {
		t.Fatalf("second backup: %v, want %v", second.lines, want)
	}
}

// runup.yaml version 2's exclude globs are anchored at the context (or
// absolute), even without a slash; version 1's are exact paths.
func TestConfigExcludes(t *testing.T) {
	ctx := "/ctx"
	for _, tc := range []struct {
		exclude string
		globs   bool
		path    string
		want    bool
	}{
		{"*.log", true, "/ctx/a.log", true},
		{"*.log", true, "/ctx/sub/a.log", false},
		{"**/*.log", true, "/ctx/sub/a.log", true},
		{"./src/*.tmp", true, "/ctx/src/x.tmp", true},
		{"./src/*.tmp", true, "/ctx/other/src/x.tmp", false},
		{"/var/**/cache", true, "/var/lib/apt/cache", true},
		{"/var/**/cache", true, "/ctx/var/lib/cache", false},
		{"*.log", true, "/elsewhere/a.log", false},
		{"*.log", false, "/ctx/a.log", false}, // version 1: an exact name
		{"./web/vendor", false, "/ctx/web/vendor", true},
	} {
		f := NewFilter(ctx, []string{tc.exclude}, tc.globs)
		if got := f.Excluded(tc.path, false); got != tc.want {
			t.Errorf("exclude %q (globs %v): Excluded(%s) = %v, want %v", tc.exclude, tc.globs, tc.path, got, tc.want)
		}
	}
}
