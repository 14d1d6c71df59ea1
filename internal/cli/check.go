package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/checker"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
)

func newCheck(g *globals) *cobra.Command {
	var (
		readData bool
		subset   string
	)
	c := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository and say which jobs and files are damaged",
		Long: `Verify the repository's structure: index files, pack headers, job records
and every job's trees, and that every chunk a job needs is stored.
--read-data also reads all data and verifies every chunk against its ID;
--read-data-subset 1/7 (or 10%) reads a part, to spread the work over nights.
Exit code 0 only when nothing is wrong; 13 when damage is found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := runCheck(cmd.Context(), g, readData, subset)
			return err
		},
	}
	c.Flags().BoolVar(&readData, "read-data", false, "read and verify all data")
	c.Flags().StringVar(&subset, "read-data-subset", "", "read and verify a part of the data: n/t or a percentage")
	return c
}

func printReport(g *globals, rep *checker.Report) {
	for _, p := range rep.Problems {
		if strings.HasPrefix(p.Err, p.Kind+" "+p.What+":") {
			fmt.Fprintf(g.stdout, "error: %s\n", p.Err) // the error names it already
			continue
		}
		fmt.Fprintf(g.stdout, "error: %s %s: %s\n", p.Kind, p.What, p.Err)
	}
	for _, a := range rep.Affected {
		fmt.Fprintf(g.stdout, "damaged: job %d: %s (%s)\n", a.Job, a.Path, a.Why)
	}
	g.printf("%d packs, %d blobs checked", rep.Packs, rep.Blobs)
	if rep.PacksRead > 0 {
		g.printf("; %d packs read and verified", rep.PacksRead)
	}
	g.printf(".\n")
	if len(rep.GoodJobs) > 0 {
		g.printf("Jobs without damage: %s\n", joinInts(rep.GoodJobs))
	}
	if len(rep.DamagedJobs) > 0 {
		fmt.Fprintf(g.stdout, "Damaged jobs: %s\n", joinInts(rep.DamagedJobs))
	}
	if rep.UnindexedPacks > 0 {
		g.printf("%s not in the index (left by an interrupted backup; the next backup adopts them, or run 'runup repair index').\n", isAre(rep.UnindexedPacks, "pack"))
	}
	if rep.UnreferencedPacks > 0 {
		g.printf("%s no data any job uses ('runup prune' will remove them).\n", plural(rep.UnreferencedPacks, "pack holds", "packs hold"))
	}
	if rep.OK() {
		g.printf("No problems found.\n")
	}
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func newRepair(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "repair",
		Short: "Repair the repository",
	}
	c.AddCommand(&cobra.Command{
		Use:   "index",
		Short: "Rebuild the index from the pack files alone",
		Long: `Rebuild the index files from the headers of the pack files, for when index
files are lost or damaged. Loses nothing that the packs hold; new index files
are written before the old ones are removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			s, err := e.lockedRepo(ctx, repo.Options{}, exclusiveLock, "repair index")
			if err != nil {
				return err
			}
			defer s.close()
			res, err := s.RebuildIndex(ctx)
			if err != nil {
				return err
			}
			for _, p := range res.Unreadable {
				fmt.Fprintf(g.stderr, "warning: %v (removed: it is replaced by the new index)\n", p)
			}
			for _, p := range res.Kept {
				fmt.Fprintf(g.stderr, "warning: %v\n", p)
			}
			for _, p := range res.Lost {
				fmt.Fprintf(g.stderr, "error: %v\n", p)
			}
			g.printf("Index rebuilt from %s.\n", plural(res.Packs, "pack", "packs"))
			if g.json {
				msgs := func(errs []error) []string {
					out := []string{}
					for _, e := range errs {
						out = append(out, e.Error())
					}
					return out
				}
				if err := writeJSON(g, struct {
					Packs      int      `json:"packs"`
					Unreadable []string `json:"unreadable_index_files"`
					Kept       []string `json:"damaged_headers_kept"`
					Lost       []string `json:"unreachable_packs"`
				}{res.Packs, msgs(res.Unreadable), msgs(res.Kept), msgs(res.Lost)}); err != nil {
					return err
				}
			}
			if len(res.Kept)+len(res.Lost) > 0 {
				return withCode(ExitDamaged, fmt.Errorf("%d pack(s) with a damaged header (kept as the old index described them), %d unreachable; run 'runup check'",
					len(res.Kept), len(res.Lost)))
			}
			return nil
		},
	})
	return c
}

// runCheck checks the repository and prints the report.
func runCheck(ctx context.Context, g *globals, readData bool, subset string) (*checker.Report, error) {
	o := checker.Options{ReadData: readData || subset != ""}
	if subset != "" {
		s, err := checker.ParseSubset(subset)
		if err != nil {
			return nil, usageErr(err)
		}
		o.Subset = &s
	}
	if o.ReadData {
		g.noCache = true // verify what the storage holds, not a local copy
	}
	e, err := g.loadEnv()
	if err != nil {
		return nil, err
	}
	s, err := e.lockedRepo(ctx, repo.Options{}, readLock, "check")
	if err != nil {
		return nil, err
	}
	defer s.close()
	var done, total atomic.Int64
	start := time.Now()
	line := g.progressLine(func() string {
		d, t := done.Load(), total.Load()
		l := fmt.Sprintf("check: read %d of %d packs (%.0f%%)", d, t, progress.Percent(d, t))
		if eta, ok := progress.ETA(d, t, time.Since(start)); ok {
			l += ", ETA " + progress.Clock(eta)
		}
		return l
	})
	o.Progress = func(d, t int) { done.Store(int64(d)); total.Store(int64(t)) }
	rep, err := checker.Check(ctx, s.Repository, o)
	line.Stop()
	if err != nil {
		return nil, err
	}
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return rep, err
		}
	} else {
		printReport(g, rep)
	}
	if !rep.OK() {
		var found []string
		if n := len(rep.Problems); n > 0 {
			found = append(found, plural(n, "problem", "problems"))
		}
		if n := len(rep.Affected); n > 0 {
			found = append(found, fmt.Sprintf("%s damaged in %s", plural(n, "file", "files"), plural(len(rep.DamagedJobs), "job", "jobs")))
		}
		return rep, withCode(ExitDamaged, fmt.Errorf("check found %s (listed above): 'runup repair index' if index files are damaged; damaged data is lost unless a copy has it", strings.Join(found, " and ")))
	}
	return rep, nil
}

// isAre is "1 pack is" or "4 packs are".
func isAre(n int, noun string) string {
	if n == 1 {
		return "1 " + noun + " is"
	}
	return fmt.Sprintf("%d %ss are", n, noun)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
