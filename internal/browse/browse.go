// Package browse reads jobs without restoring them: walking and listing
// their trees, finding paths, comparing two jobs, dumping one file or
// directory, and measuring what a job costs.
package browse

import (
	"archive/tar"
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// ErrNotFound is returned for a path a job does not hold.
var ErrNotFound = errors.New("no such path in the job")

// WalkFunc sees every entry under a tree, depth first, in name order; p is
// slash-separated and relative to the job's root. Returning fs.SkipDir for a
// directory skips its content.
type WalkFunc func(p string, n *tree.Node) error

// Walk visits the tree id, its entries named under prefix.
func Walk(ctx context.Context, r *repo.Repository, id crypto.ID, prefix string, fn WalkFunc) error {
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		return fmt.Errorf("%s: %w", orRoot(prefix), err)
	}
	for i := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		p := path.Join(prefix, n.Name)
		err := fn(p, n)
		if errors.Is(err, fs.SkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == tree.Dir {
			if err := Walk(ctx, r, n.Subtree, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// Lookup finds the node at p (slash-separated, relative to the root). The
// root itself is returned as a synthetic directory node.
func Lookup(ctx context.Context, r *repo.Repository, root crypto.ID, p string) (*tree.Node, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	n := &tree.Node{Type: tree.Dir, Subtree: root, Mode: 0o755}
	if p == "" {
		return n, nil
	}
	for _, name := range strings.Split(p, "/") {
		if n.Type != tree.Dir {
			return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
		}
		t, err := r.LoadTree(ctx, n.Subtree)
		if err != nil {
			return nil, err
		}
		child, ok := t.Find(name)
		if !ok {
			return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
		}
		n = child
	}
	return n, nil
}

// Change is one difference between two jobs.
type Change struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"` // added, removed, modified
	What   string `json:"what,omitempty"`
	Before int64  `json:"size_before"`
	After  int64  `json:"size_after"`
}

// Totals sum up a diff.
type Totals struct {
	Added, Removed, Modified int
	BytesAdded, BytesRemoved int64
}

// Diff compares two trees. Subtrees with equal IDs are equal and skipped.
func Diff(ctx context.Context, r *repo.Repository, a, b crypto.ID, fn func(Change)) (Totals, error) {
	var tot Totals
	emit := func(c Change) {
		switch c.Kind {
		case "added":
			tot.Added++
			tot.BytesAdded += c.After
		case "removed":
			tot.Removed++
			tot.BytesRemoved += c.Before
		default:
			tot.Modified++
			tot.BytesAdded += max(c.After-c.Before, 0)
			tot.BytesRemoved += max(c.Before-c.After, 0)
		}
		fn(c)
	}
	err := diffTrees(ctx, r, a, b, "", emit)
	return tot, err
}

func diffTrees(ctx context.Context, r *repo.Repository, a, b crypto.ID, prefix string, emit func(Change)) error {
	if a == b {
		return nil
	}
	ta, tb := &tree.Tree{}, &tree.Tree{}
	var err error
	if !a.IsZero() {
		if ta, err = r.LoadTree(ctx, a); err != nil {
			return err
		}
	}
	if !b.IsZero() {
		if tb, err = r.LoadTree(ctx, b); err != nil {
			return err
		}
	}
	i, j := 0, 0
	for i < len(ta.Nodes) || j < len(tb.Nodes) {
		var na, nb *tree.Node
		switch {
		case j >= len(tb.Nodes) || i < len(ta.Nodes) && ta.Nodes[i].Name < tb.Nodes[j].Name:
			na = &ta.Nodes[i]
			i++
		case i >= len(ta.Nodes) || tb.Nodes[j].Name < ta.Nodes[i].Name:
			nb = &tb.Nodes[j]
			j++
		default:
			na, nb = &ta.Nodes[i], &tb.Nodes[j]
			i++
			j++
		}
		name := ""
		if na != nil {
			name = na.Name
		} else {
			name = nb.Name
		}
		p := path.Join(prefix, name)
		switch {
		case nb == nil:
			if err := whole(ctx, r, na, p, "removed", emit); err != nil {
				return err
			}
		case na == nil:
			if err := whole(ctx, r, nb, p, "added", emit); err != nil {
				return err
			}
		case na.Type != nb.Type:
			if err := whole(ctx, r, na, p, "removed", emit); err != nil {
				return err
			}
			if err := whole(ctx, r, nb, p, "added", emit); err != nil {
				return err
			}
		case na.Type == tree.Dir:
			if !sameMeta(na, nb) {
				emit(Change{Path: p + "/", Kind: "modified", What: "metadata"})
			}
			if err := diffTrees(ctx, r, na.Subtree, nb.Subtree, p, emit); err != nil {
				return err
			}
		default:
			what := ""
			if !sameContent(na, nb) {
				what = "content"
			} else if !sameMeta(na, nb) {
				what = "metadata"
			}
			if what != "" {
				emit(Change{Path: p, Kind: "modified", What: what, Before: int64(na.Size), After: int64(nb.Size)})
			}
		}
	}
	return nil
}

// whole reports an entry and everything below it as added or removed.
func whole(ctx context.Context, r *repo.Repository, n *tree.Node, p, kind string, emit func(Change)) error {
	one := func(p string, n *tree.Node) error {
		c := Change{Path: p, Kind: kind}
		if n.Type == tree.Dir {
			c.Path += "/"
		}
		if kind == "added" {
			c.After = int64(n.Size)
		} else {
			c.Before = int64(n.Size)
		}
		emit(c)
		return nil
	}
	one(p, n)
	if n.Type != tree.Dir {
		return nil
	}
	return Walk(ctx, r, n.Subtree, p, one)
}

func sameContent(a, b *tree.Node) bool {
	if a.Size != b.Size || len(a.Content) != len(b.Content) || a.Target != b.Target || a.Rdev != b.Rdev {
		return false
	}
	for i := range a.Content {
		if a.Content[i] != b.Content[i] {
			return false
		}
	}
	return true
}

func sameMeta(a, b *tree.Node) bool {
	return a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.MTime == b.MTime && len(a.XAttrs) == len(b.XAttrs)
}

// Dump writes a file's content to w, or a directory as a tar stream.
func Dump(ctx context.Context, r *repo.Repository, n *tree.Node, name string, w io.Writer) error {
	if n.Type == tree.File {
		return writeContent(ctx, r, n, w)
	}
	if n.Type != tree.Dir {
		return fmt.Errorf("%s is a %s: only files and directories can be dumped", name, n.Type)
	}
	tw := tar.NewWriter(w)
	base := strings.Trim(name, "/")
	err := Walk(ctx, r, n.Subtree, base, func(p string, c *tree.Node) error {
		h := &tar.Header{Name: p, Mode: int64(c.Mode & 0o7777), Uid: int(c.UID), Gid: int(c.GID),
			ModTime: c.MTime.Time()}
		switch c.Type {
		case tree.File:
			h.Typeflag, h.Size = tar.TypeReg, int64(c.Size)
		case tree.Dir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case tree.Symlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, c.Target
		case tree.Fifo:
			h.Typeflag = tar.TypeFifo
		default:
			return nil // devices and sockets have no place in a dump
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if c.Type == tree.File {
			return writeContent(ctx, r, c, tw)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Zip writes a directory as a zip stream: files (deflated), directories and
// symbolic links, with their modes and times.
func Zip(ctx context.Context, r *repo.Repository, n *tree.Node, name string, w io.Writer) error {
	if n.Type != tree.Dir {
		return fmt.Errorf("%s is a %s, not a directory", name, n.Type)
	}
	zw := zip.NewWriter(w)
	base := strings.Trim(name, "/")
	err := Walk(ctx, r, n.Subtree, base, func(p string, c *tree.Node) error {
		h := &zip.FileHeader{Name: p, Modified: c.MTime.Time()}
		mode := fs.FileMode(c.Mode & 0o777)
		switch c.Type {
		case tree.File:
			h.Method = zip.Deflate
			h.UncompressedSize64 = c.Size
		case tree.Dir:
			h.Name += "/"
			mode |= fs.ModeDir
		case tree.Symlink:
			mode |= fs.ModeSymlink
		default:
			return nil
		}
		h.SetMode(mode)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		switch c.Type {
		case tree.File:
			return writeContent(ctx, r, c, fw)
		case tree.Symlink:
			_, err = io.WriteString(fw, c.Target)
		}
		return err
	})
	if err != nil {
		return err
	}
	return zw.Close()
}

// WriteFile writes a file's content to w.
func WriteFile(ctx context.Context, r *repo.Repository, n *tree.Node, w io.Writer) error {
	if n.Type != tree.File {
		return fmt.Errorf("%s is a %s, not a file", n.Name, n.Type)
	}
	return writeContent(ctx, r, n, w)
}

func writeContent(ctx context.Context, r *repo.Repository, n *tree.Node, w io.Writer) error {
	var buf []byte
	for _, id := range n.Content {
		b, err := r.LoadBlob(ctx, pack.Data, id, buf[:0])
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		buf = b
	}
	return nil
}

// JobStats are a job's sizes.
type JobStats struct {
	Files       int   `json:"files"`
	Dirs        int   `json:"dirs"`
	LogicalSize int64 `json:"logical_size"` // all files, as on disk
	Chunks      int   `json:"chunks"`       // distinct chunks
	RawSize     int64 `json:"raw_size"`     // distinct chunks, uncompressed
	StoredSize  int64 `json:"stored_size"`  // distinct chunks as stored, each group they are in once
	Packs       int   `json:"packs"`
}

// Stats measures one job's tree.
func Stats(ctx context.Context, r *repo.Repository, root crypto.ID) (*JobStats, error) {
	st := &JobStats{}
	seen := map[crypto.ID]bool{}
	packs := map[crypto.ID]bool{}
	type place struct {
		pack   crypto.ID
		offset uint32
	}
	groups := map[place]bool{}
	add := func(id crypto.ID) {
		if seen[id] {
			return
		}
		seen[id] = true
		if loc, ok := r.Lookup(pack.Data, id); ok {
			st.Chunks++
			st.RawSize += int64(loc.RawLen)
			packs[loc.PackID] = true
			if loc.Grouped() {
				// Members share their group's bytes: count them once.
				if groups[place{loc.PackID, loc.Offset}] {
					return
				}
				groups[place{loc.PackID, loc.Offset}] = true
			}
			st.StoredSize += int64(loc.Length)
		}
	}
	add(root)
	err := Walk(ctx, r, root, "", func(p string, n *tree.Node) error {
		switch n.Type {
		case tree.File:
			st.Files++
			st.LogicalSize += int64(n.Size)
			for _, id := range n.Content {
				add(id)
			}
		case tree.Dir:
			st.Dirs++
			add(n.Subtree)
		}
		return nil
	})
	st.Packs = len(packs)
	return st, err
}

// Find calls fn for every entry of the jobs (in the order given) that
// matches pattern: a glob (** allowed) matched against the entry's name
// when it has no '/', else against its path in the job. A subtree already
// searched in an earlier job is not searched again: its matches are the
// same, under the same path, and fn hears of them again without a read.
func Find(ctx context.Context, r *repo.Repository, jobs []*repo.Job, pattern string, fn func(j *repo.Job, p string, n *tree.Node) error) error {
	if !doublestar.ValidatePattern(pattern) {
		return fmt.Errorf("invalid pattern %q", pattern)
	}
	byName := !strings.Contains(pattern, "/")
	type match struct {
		p string
		n tree.Node
	}
	// seen holds the matches below each subtree searched, by subtree and
	// the path it stood at (a match by path depends on where it stands).
	type key struct {
		id     crypto.ID
		prefix string
	}
	seen := map[key][]match{}
	const maxSeen = 1 << 20
	var search func(j *repo.Job, id crypto.ID, prefix string) ([]match, error)
	search = func(j *repo.Job, id crypto.ID, prefix string) ([]match, error) {
		k := key{id, prefix}
		if byName {
			k.prefix = ""
		}
		if m, ok := seen[k]; ok {
			if byName {
				// Same subtree elsewhere: same matches, other paths.
				out := make([]match, len(m))
				for i, x := range m {
					out[i] = match{p: path.Join(prefix, x.p), n: x.n}
				}
				return out, nil
			}
			return m, nil
		}
		t, err := r.LoadTree(ctx, id)
		if err != nil {
			return nil, err
		}
		var out []match
		for i := range t.Nodes {
			n := &t.Nodes[i]
			p := path.Join(prefix, n.Name)
			subject := p
			if byName {
				subject = n.Name
			}
			if ok, _ := doublestar.Match(pattern, subject); ok {
				out = append(out, match{p: p, n: *n})
			}
			if n.Type == tree.Dir {
				sub, err := search(j, n.Subtree, p)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			}
		}
		if len(seen) < maxSeen {
			stored := out
			if byName {
				stored = make([]match, len(out))
				for i, x := range out {
					rel := strings.TrimPrefix(strings.TrimPrefix(x.p, prefix), "/")
					stored[i] = match{p: rel, n: x.n}
				}
			}
			seen[k] = stored
		}
		return out, nil
	}
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		matches, err := search(j, j.Tree, "")
		if err != nil {
			return fmt.Errorf("job %d: %w", j.Number, err)
		}
		for _, m := range matches {
			if err := fn(j, m.p, &m.n); err != nil {
				return err
			}
		}
	}
	return nil
}

// RepoStats are a repository's sizes.
type RepoStats struct {
	Jobs        int   `json:"jobs"`
	LogicalSize int64 `json:"logical_size"` // all files of all jobs
	Chunks      int   `json:"chunks"`       // distinct data chunks
	RawSize     int64 `json:"raw_size"`     // distinct data chunks, uncompressed
	StoredSize  int64 `json:"stored_size"`  // those chunks as stored (a group once)
	TreeSize    int64 `json:"tree_size"`    // the folders' listings, as stored
	Packs       int   `json:"packs"`
	PackSize    int64 `json:"pack_size"` // what the pack files take
}

// Dedup is how many times the logical size the distinct data is.
func (s RepoStats) Dedup() float64 {
	if s.RawSize == 0 {
		return 0
	}
	return float64(s.LogicalSize) / float64(s.RawSize)
}

// Compression is how much smaller the distinct data is as stored.
func (s RepoStats) Compression() float64 {
	if s.StoredSize == 0 {
		return 0
	}
	return float64(s.RawSize) / float64(s.StoredSize)
}

// Other is what the packs hold beyond the distinct data and listings:
// headers, and duplicates or data no job uses (which prune reclaims).
func (s RepoStats) Other() int64 { return max(0, s.PackSize-s.StoredSize-s.TreeSize) }

// RepositoryStats measures the repository: the jobs' logical size, the
// index's distinct chunks and what they take as stored, and what the packs
// take (duplicates and unused data included).
func RepositoryStats(ctx context.Context, r *repo.Repository, jobs []*repo.Job) (RepoStats, error) {
	s := RepoStats{Jobs: len(jobs)}
	for _, j := range jobs {
		s.LogicalSize += j.Summary.BytesTotal
	}
	type place struct {
		pack   crypto.ID
		offset uint32
	}
	groups := map[place]bool{}
	r.Index().Each(func(loc index.Location) {
		if loc.Type == pack.Tree {
			s.TreeSize += int64(loc.Length)
			return
		}
		s.Chunks++
		s.RawSize += int64(loc.RawLen)
		if loc.Grouped() {
			// Members share their group's bytes: count them once.
			if groups[place{loc.PackID, loc.Offset}] {
				return
			}
			groups[place{loc.PackID, loc.Offset}] = true
		}
		s.StoredSize += int64(loc.Length)
	})
	if err := r.Index().Err(); err != nil {
		return s, err
	}
	var err error
	s.Packs, s.PackSize, err = r.PackSizes(ctx)
	return s, err
}
