package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/browse"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

type lsEntry struct {
	Path   string    `json:"path"`
	Type   string    `json:"type"`
	Mode   string    `json:"mode"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"`
}

func modeString(n *tree.Node) string {
	m := fs.FileMode(n.Mode & 0o777)
	switch n.Type {
	case tree.Dir:
		m |= fs.ModeDir
	case tree.Symlink:
		m |= fs.ModeSymlink
	case tree.Fifo:
		m |= fs.ModeNamedPipe
	case tree.Socket:
		m |= fs.ModeSocket
	case tree.CharDev:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case tree.BlockDev:
		m |= fs.ModeDevice
	}
	return m.String()
}

func newLs(g *globals) *cobra.Command {
	var long, recursive bool
	c := &cobra.Command{
		Use:   "ls JOB [PATH]",
		Short: "List the entries of a job (JOB: a number, latest, or PROJECT:latest)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, jobs, err := g.readSession(ctx, true)
			if err != nil {
				return err
			}
			defer s.close()
			j, err := resolveJob(jobs, args[0])
			if err != nil {
				return err
			}
			p := ""
			if len(args) == 2 {
				p = strings.Trim(path.Clean("/"+args[1]), "/")
			}
			n, err := browse.Lookup(ctx, s.Repository, j.Tree, p)
			if err != nil {
				return fmt.Errorf("job %d: %w", j.Number, err)
			}
			var entries []lsEntry
			show := func(p string, n *tree.Node) {
				e := lsEntry{Path: p, Type: n.Type.String(), Mode: modeString(n), Size: n.Size, MTime: n.MTime.Time(), Target: n.Target}
				if g.json {
					entries = append(entries, e)
					return
				}
				if n.Type == tree.Dir {
					p += "/"
				}
				if n.Type == tree.Symlink {
					p += " -> " + n.Target
				}
				if long {
					fmt.Fprintf(g.stdout, "%s %10d %s %s\n", e.Mode, e.Size, e.MTime.Local().Format("2006-01-02 15:04:05"), p)
				} else {
					fmt.Fprintln(g.stdout, p)
				}
			}
			if n.Type != tree.Dir {
				show(p, n)
			} else {
				err = browse.Walk(ctx, s.Repository, n.Subtree, p, func(cp string, cn *tree.Node) error {
					show(cp, cn)
					if !recursive && cn.Type == tree.Dir {
						return fs.SkipDir
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			if g.json {
				if entries == nil {
					entries = []lsEntry{}
				}
				return writeJSON(g, entries)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&long, "long", "l", false, "show mode, size and modification time")
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "list directories' content too")
	return c
}

func newDump(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "dump JOB PATH",
		Short: "Write one file of a job to stdout (a directory as a tar stream)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.json {
				return usageErr(errors.New("dump writes the file's own bytes: --json does not apply (see 'runup ls JOB PATH --json' for its metadata)"))
			}
			ctx := cmd.Context()
			s, jobs, err := g.readSession(ctx, true)
			if err != nil {
				return err
			}
			defer s.close()
			j, err := resolveJob(jobs, args[0])
			if err != nil {
				return err
			}
			n, err := browse.Lookup(ctx, s.Repository, j.Tree, args[1])
			if err != nil {
				return fmt.Errorf("job %d: %w", j.Number, err)
			}
			if n.Type == tree.Dir && progress.IsTerminal(g.stdout) {
				// As tar does: a tar stream is no use on a screen.
				return usageErr(fmt.Errorf("%s is a folder, dumped as a tar stream: refusing to write it to a terminal; redirect it ('> %s.tar') or pipe it ('| tar -t')", args[1], path.Base("/"+strings.Trim(args[1], "/"))))
			}
			return browse.Dump(ctx, s.Repository, n, args[1], g.stdout)
		},
	}
}

func newDiff(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff JOB1 JOB2",
		Short: "Show what was added, removed and modified between two jobs",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, jobs, err := g.readSession(ctx, true)
			if err != nil {
				return err
			}
			defer s.close()
			a, err := resolveJob(jobs, args[0])
			if err != nil {
				return err
			}
			b, err := resolveJob(jobs, args[1])
			if err != nil {
				return err
			}
			var changes []browse.Change
			sign := map[string]string{"added": "+", "removed": "-", "modified": "M"}
			tot, err := browse.Diff(ctx, s.Repository, a.Tree, b.Tree, func(c browse.Change) {
				if g.json {
					changes = append(changes, c)
					return
				}
				what := ""
				if c.What != "" {
					what = " (" + c.What + ")"
				}
				fmt.Fprintf(g.stdout, "%s %s%s\n", sign[c.Kind], c.Path, what)
			})
			if err != nil {
				return err
			}
			if g.json {
				if changes == nil {
					changes = []browse.Change{}
				}
				return writeJSON(g, map[string]any{"changes": changes, "added": tot.Added, "removed": tot.Removed,
					"modified": tot.Modified, "bytes_added": tot.BytesAdded, "bytes_removed": tot.BytesRemoved})
			}
			g.printf("\n%d added, %d removed, %d modified; %s added, %s removed\n", tot.Added, tot.Removed, tot.Modified,
				progress.Bytes(tot.BytesAdded), progress.Bytes(tot.BytesRemoved))
			return nil
		},
	}
}

func newFind(g *globals) *cobra.Command {
	var project, since, until string
	c := &cobra.Command{
		Use:   "find PATTERN",
		Short: "Find which jobs hold paths matching PATTERN, newest first",
		Long: `Find which jobs hold paths matching PATTERN (glob, ** allowed). A pattern
without '/' matches file names; with '/', whole paths inside the job.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pattern := args[0]
			if !doublestar.ValidatePattern(pattern) {
				return usageErr(fmt.Errorf("invalid pattern %q", pattern))
			}
			var from, to time.Time
			var err error
			if since != "" {
				if from, err = parseWhen(since); err != nil {
					return err
				}
			}
			if until != "" {
				if to, err = parseWhen(until); err != nil {
					return err
				}
			}
			s, jobs, err := g.readSession(ctx, true)
			if err != nil {
				return err
			}
			defer s.close()
			slices.Reverse(jobs)
			type hit struct {
				Job     int       `json:"job"`
				Project string    `json:"project"`
				Time    time.Time `json:"time"`
				Path    string    `json:"path"`
			}
			var hits []hit
			var selected []*repo.Job
			for _, j := range jobs {
				if project != "" && j.Project != project || !from.IsZero() && j.Time.Before(from) || !to.IsZero() && j.Time.After(to) {
					continue
				}
				selected = append(selected, j)
			}
			err = browse.Find(ctx, s.Repository, selected, pattern, func(j *repo.Job, p string, n *tree.Node) error {
				hits = append(hits, hit{Job: j.Number, Project: j.Project, Time: j.Time, Path: p})
				if !g.json {
					fmt.Fprintf(g.stdout, "job %d (%s, %s): %s\n", j.Number, j.Project, j.Time.Local().Format("2006-01-02 15:04"), p)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if g.json {
				if hits == nil {
					hits = []hit{}
				}
				return writeJSON(g, hits)
			}
			if len(hits) == 0 {
				return errors.New("no job holds a path matching " + pattern)
			}
			return nil
		},
	}
	c.Flags().StringVar(&project, "project", "", "only jobs of this project")
	c.Flags().StringVar(&since, "since", "", "only jobs from this time on (2006-01-02[ 15:04])")
	c.Flags().StringVar(&until, "until", "", "only jobs up to this time")
	return c
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func newStats(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats [JOB]",
		Short: "Sizes: logical, stored, dedup and compression ratios, chunks and packs",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, jobs, err := g.readSession(ctx, true)
			if err != nil {
				return err
			}
			defer s.close()
			if len(args) == 1 {
				j, err := resolveJob(jobs, args[0])
				if err != nil {
					return err
				}
				st, err := browse.Stats(ctx, s.Repository, j.Tree)
				if err != nil {
					return err
				}
				o := struct {
					Job int `json:"job"`
					*browse.JobStats
					Dedup       float64 `json:"dedup_ratio"`
					Compression float64 `json:"compression_ratio"`
				}{Job: j.Number, JobStats: st, Dedup: ratio(st.LogicalSize, st.RawSize), Compression: ratio(st.RawSize, st.StoredSize)}
				if g.json {
					return writeJSON(g, o)
				}
				g.printf("Job %d\n", j.Number)
				g.printf("  logical size:      %s in %d files\n", progress.Bytes(st.LogicalSize), st.Files)
				g.printf("  distinct data:     %s in %d chunks (dedup ratio %.2f)\n", progress.Bytes(st.RawSize), st.Chunks, o.Dedup)
				g.printf("  stored:            %s in %d packs (compression ratio %.2f)\n", progress.Bytes(st.StoredSize), st.Packs, o.Compression)
				return nil
			}
			rs, err := browse.RepositoryStats(ctx, s.Repository, jobs)
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g, struct {
					browse.RepoStats
					Dedup       float64 `json:"dedup_ratio"`
					Compression float64 `json:"compression_ratio"`
				}{rs, rs.Dedup(), rs.Compression()})
			}
			g.printf("Repository: %d jobs\n", rs.Jobs)
			g.printf("  logical size:      %s (all files of all jobs)\n", progress.Bytes(rs.LogicalSize))
			g.printf("  distinct data:     %s in %d chunks (dedup ratio %.2f)\n", progress.Bytes(rs.RawSize), rs.Chunks, rs.Dedup())
			g.printf("  stored:            %s (compression ratio %.2f), and %s of folder listings\n", progress.Bytes(rs.StoredSize), rs.Compression(), progress.Bytes(rs.TreeSize))
			g.printf("  packs:             %s in %d packs", progress.Bytes(rs.PackSize), rs.Packs)
			if other := rs.Other(); other > rs.PackSize/50 {
				g.printf(", of which %s are headers, duplicates or data no job uses ('runup prune' reclaims what is unused)", progress.Bytes(other))
			}
			g.printf("\n")
			return nil
		},
	}
}
