package archiver

import (
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
	context  string
	exact    map[string]bool // absolute paths
	relGlobs []string
	absGlobs []string
	// IgnoreFiles honours .runupignore files (gitignore syntax).
	IgnoreFiles bool
	// always holds paths never backed up: the repository, the config file.
	always map[string]bool
}

// IgnoreFileName is read in every directory when Filter.IgnoreFiles is set.
const IgnoreFileName = ".runupignore"

// NewFilter builds a filter; context is absolute.
func NewFilter(context string, excludes []string, globs bool) *Filter {
	f := &Filter{context: context, exact: map[string]bool{}, always: map[string]bool{}}
	for _, e := range excludes {
		slash := filepath.ToSlash(e)
		if globs && strings.ContainsAny(slash, "*?[{") {
			if filepath.IsAbs(e) {
				f.absGlobs = append(f.absGlobs, filepath.Clean(slash))
			} else {
				f.relGlobs = append(f.relGlobs, strings.TrimPrefix(filepath.ToSlash(filepath.Clean(e)), "./"))
			}
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
	if len(f.relGlobs) > 0 {
		if rel, err := filepath.Rel(f.context, abs); err == nil && !strings.HasPrefix(rel, "..") {
			rel = filepath.ToSlash(rel)
			for _, g := range f.relGlobs {
				if ok, _ := doublestar.Match(g, rel); ok {
					return true
				}
			}
		}
	}
	for _, g := range f.absGlobs {
		if ok, _ := doublestar.Match(g, filepath.ToSlash(abs)); ok {
			return true
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
