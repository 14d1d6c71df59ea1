package archiver

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	ignore "github.com/sabhiram/go-gitignore"
)

// Filter decides what a backup leaves out.
//
// Version 1 excludes are exact paths: a directory is excluded with
// everything below it, a file only by its exact path. Version 2 excludes are
// glob patterns with ** matched against the path relative to the context
// (or the absolute path, for an absolute pattern); a pattern without glob
// characters behaves as in version 1.
type Filter struct {
	context string
	exact   map[string]bool // absolute paths
	// IgnoreFiles honours .runupignore files (gitignore syntax).
	IgnoreFiles bool
	// always holds paths never backed up: the repository, the config file.
	always map[string]bool

	// What 'backup' takes from its command line (and version 2 keys of
	// the same names): restic's options, with restic's meanings.
	patterns      []pattern
	ifPresent     []marker
	largerThan    int64 // 0: no limit
	OneFileSystem bool  // do not descend into other mounted filesystems
}

// pattern is a glob that leaves paths out. An --exclude or --iexclude
// pattern without a slash matches a name at any depth; one with a slash,
// and every glob of runup.yaml version 2's exclude, matches the path
// relative to the context, or the absolute path when it is absolute.
type pattern struct {
	glob     string
	anchored bool // matched against the whole path, not the name
	abs      bool
	caseless bool
}

// marker is an --exclude-if-present NAME[:HEADER]: a directory holding a
// file NAME (that starts with HEADER, when given) is left out.
type marker struct {
	name, header string
}

// CacheDirTag is the marker --exclude-caches looks for
// (https://bford.info/cachedir/).
const CacheDirTag = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55"

// Exclude adds --exclude (caseless: --iexclude) patterns. A pattern that
// is not a valid glob is an error.
func (f *Filter) Exclude(patterns []string, caseless bool) error {
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		g := filepath.ToSlash(p)
		pt := pattern{caseless: caseless, anchored: strings.Contains(strings.TrimSuffix(g, "/"), "/"), abs: filepath.IsAbs(p) || strings.HasPrefix(g, "/")}
		g = strings.TrimSuffix(g, "/")
		if pt.anchored && !pt.abs {
			g = strings.TrimPrefix(g, "./")
		}
		if caseless {
			g = strings.ToLower(g)
		}
		if !doublestar.ValidatePattern(g) {
			return fmt.Errorf("exclude pattern %q is not a valid glob", p)
		}
		pt.glob = g
		f.patterns = append(f.patterns, pt)
	}
	return nil
}

// ExcludeIfPresent leaves out directories holding a marker file, given as
// NAME or NAME:HEADER.
func (f *Filter) ExcludeIfPresent(specs []string) {
	for _, s := range specs {
		name, header, _ := strings.Cut(s, ":")
		if name != "" {
			f.ifPresent = append(f.ifPresent, marker{name, header})
		}
	}
}

// ExcludeLargerThan leaves out files of more than size bytes (0: none).
func (f *Filter) ExcludeLargerThan(size int64) { f.largerThan = size }

func (p pattern) match(context, abs, base string) bool {
	if p.caseless {
		abs, base, context = strings.ToLower(abs), strings.ToLower(base), strings.ToLower(context)
	}
	if !p.anchored {
		ok, _ := doublestar.Match(p.glob, base)
		return ok
	}
	path := filepath.ToSlash(abs)
	if !p.abs {
		rel, err := filepath.Rel(context, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return false
		}
		path = filepath.ToSlash(rel)
	}
	ok, _ := doublestar.Match(p.glob, path)
	return ok
}

// excludedEntry applies what needs more than a path: sizes, markers in a
// directory. It runs after Excluded, on entries that would be kept.
func (f *Filter) excludedEntry(abs string, fi fs.FileInfo) bool {
	if f.largerThan > 0 && fi.Mode().IsRegular() && fi.Size() > f.largerThan {
		return true
	}
	if fi.IsDir() {
		for _, m := range f.ifPresent {
			if hasMarker(filepath.Join(abs, m.name), m.header) {
				return true
			}
		}
	}
	return false
}

func hasMarker(path, header string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	if header == "" {
		return true
	}
	// Opened as a backup opens files: a fifo swapped in since lstat must
	// not block the walk (a planted file is part of the threat model).
	f, err := openFile(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	buf := make([]byte, len(header))
	_, err = io.ReadFull(f, buf)
	return err == nil && string(buf) == header
}

// IgnoreFileName is read in every directory when Filter.IgnoreFiles is set.
const IgnoreFileName = ".runupignore"

// NewFilter builds a filter; context is absolute.
func NewFilter(context string, excludes []string, globs bool) *Filter {
	f := &Filter{context: context, exact: map[string]bool{}, always: map[string]bool{}}
	for _, e := range excludes {
		slash := filepath.ToSlash(e)
		if globs && strings.ContainsAny(slash, "*?[{") {
			// Anchored even without a slash: relative to the context.
			p := pattern{glob: filepath.ToSlash(filepath.Clean(e)), anchored: true, abs: filepath.IsAbs(e)}
			f.patterns = append(f.patterns, p)
			continue
		}
		f.exact[absPath(context, e)] = true
	}
	return f
}

// Never adds a path that is never backed up, whatever the config says.
func (f *Filter) Never(abs string) { f.always[filepath.Clean(abs)] = true }

func absPath(context, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(context, p)
}

// Excluded reports whether abs is left out.
func (f *Filter) Excluded(abs string, isDir bool) bool {
	if f.always[abs] || (isDir && filepath.Base(abs) == ".runup") || f.exact[abs] {
		return true
	}
	if len(f.patterns) > 0 {
		base := filepath.Base(abs)
		for _, p := range f.patterns {
			if p.match(f.context, abs, base) {
				return true
			}
		}
	}
	return false
}

// ignoreRules are the .runupignore files in force in a directory, innermost
// last.
type ignoreRules struct {
	parent *ignoreRules
	dir    string
	rules  *ignore.GitIgnore
}

func (f *Filter) enter(parent *ignoreRules, dir string) *ignoreRules {
	if !f.IgnoreFiles {
		return parent
	}
	b, err := os.ReadFile(filepath.Join(dir, IgnoreFileName))
	if err != nil {
		return parent
	}
	return &ignoreRules{parent: parent, dir: dir, rules: ignore.CompileIgnoreLines(strings.Split(string(b), "\n")...)}
}

func (r *ignoreRules) ignored(abs string, isDir bool) bool {
	for ; r != nil; r = r.parent {
		rel, err := filepath.Rel(r.dir, abs)
		if err != nil {
			continue
		}
		rel = filepath.ToSlash(rel)
		if isDir {
			rel += "/"
		}
		if r.rules.MatchesPath(rel) {
			return true
		}
	}
	return false
}
