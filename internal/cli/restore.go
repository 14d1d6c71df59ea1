package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/restorer"
)

type restoreOptions struct {
	job           int
	location      string
	clearLocation bool
	force         bool
	include       []string
	exclude       []string
	dryRun        bool
	delete        bool
}

func newRestore(g *globals) *cobra.Command {
	var o restoreOptions
	c := &cobra.Command{
		Use:   "restore [PROJECT]",
		Short: "Restore a project's job (all projects when none is named)",
		Long: `Restore the latest job of a project, or the job given with -j, in place
or under --location. Files of the job are overwritten unless they already
hold the same content; files created after the job are left alone, unless
--delete removes what the job does not have (it asks first, default no).

In place, only what runup.yaml includes for the project today is written.
--dry-run changes nothing and says what would be written, left as it is,
and deleted (--verbose: file by file).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := runRestore(cmd.Context(), g, o, args)
			return err
		},
	}
	f := c.Flags()
	f.IntVarP(&o.job, "job", "j", 0, "job number to restore (0: the latest job of the project)")
	f.StringVarP(&o.location, "location", "l", "", "restore under this directory (relative to the context) instead of in place")
	f.BoolVar(&o.clearLocation, "clear-location", false, "empty the location first (keeps .runup, the repository and runup.yaml)")
	f.BoolVarP(&o.force, "force", "f", false, "do not ask for confirmation")
	f.StringSliceVar(&o.include, "include", nil, "restore only paths matching this pattern (** allowed; repeatable)")
	f.StringSliceVar(&o.exclude, "exclude", nil, "do not restore paths matching this pattern (repeatable)")
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "change nothing: say what would be restored, skipped and deleted (with --verbose, file by file)")
	f.BoolVar(&o.delete, "delete", false, "delete files in the location that the job does not have (asks first, default no)")
	return c
}

type restoreResult struct {
	Job      int    `json:"job"`
	Project  string `json:"project"`
	Location string `json:"location"`
	restorer.Result
}

// runRestore restores and returns what it restored.
func runRestore(ctx context.Context, g *globals, o restoreOptions, args []string) ([]restoreResult, error) {
	var results []restoreResult
	if o.job < 0 {
		return nil, usageErr(fmt.Errorf("--job %d: job numbers start at 1 (0 means the latest)", o.job))
	}
	if o.dryRun && o.clearLocation {
		return nil, usageErr(errors.New("--dry-run with --clear-location: a dry run deletes nothing; use --delete --dry-run to see what the job does not have"))
	}
	e, err := g.loadEnv()
	if err != nil {
		return results, err
	}
	r, err := e.open(ctx, repo.Options{}, readLock, "restore")
	if err != nil {
		return results, err
	}
	defer r.close()
	// Lost index files must not make intact data unreachable: the first
	// time a blob is not in the index, packs no index lists are read.
	var once sync.Once
	findMissing := func() {
		once.Do(func() {
			n, probs, err := r.FindUnindexedPacks(ctx)
			if err != nil {
				fmt.Fprintf(g.stderr, "warning: looking for packs missing from the index: %v\n", err)
				return
			}
			if n > 0 || len(probs) > 0 {
				fmt.Fprintf(g.stderr, "warning: %d pack(s) missing from the index were read directly (run 'runup check', then 'runup repair index')\n", n)
			}
			for _, p := range probs {
				fmt.Fprintf(g.stderr, "warning: %v\n", p)
			}
		})
	}
	jobs, err := r.jobs(ctx)
	if err != nil {
		return results, err
	}
	selected, err := e.selectJobs(jobs, args, o.job)
	if err != nil {
		return results, err
	}
	cleared := map[string]bool{}
	failed, damaged := 0, 0
	for _, j := range selected {
		dest, err := e.restoreTarget(j, o.location)
		if err != nil {
			return results, err
		}
		if d := e.localRepoDir(); d != "" {
			for _, p := range dest.clear() {
				if within(p, d) {
					return results, usageErr(fmt.Errorf("location %s is inside the repository; choose another", p))
				}
			}
		}
		if !o.force && !o.dryRun {
			q := fmt.Sprintf("Are you sure you want to restore the project %q (job %d of %s) %s? [Y/n] ", j.Project, j.Number,
				j.Time.Local().Format("2006-01-02 15:04"), dest.describe())
			ok, err := confirm(g, q, true)
			if err != nil {
				return results, err
			}
			if !ok {
				return results, errors.New("restore cancelled; nothing was changed")
			}
			if o.delete && !o.clearLocation {
				// In place, only what runup.yaml includes is restored, so
				// only there can anything be deleted.
				where := []string{dest.root}
				if len(dest.within) > 0 {
					where = dest.within
				}
				ok, err := confirm(g, fmt.Sprintf("--delete DELETES what job %d does not have in %s (but the repository and runup.yaml). Delete? [y/N] ",
					j.Number, strings.Join(where, ", ")), false)
				if err != nil {
					return results, err
				}
				if !ok {
					return results, errors.New("restore cancelled; nothing was changed")
				}
			}
			if o.clearLocation {
				ok, err := confirm(g, fmt.Sprintf("--clear-location first DELETES everything in %s (but the repository and runup.yaml). Delete? [y/N] ",
					strings.Join(dest.clear(), ", ")), false)
				if err != nil {
					return results, err
				}
				if !ok {
					return results, errors.New("restore cancelled; nothing was changed")
				}
			}
		}
		if o.clearLocation {
			keep := []string{e.localRepoDir()}
			if e.cfg != nil {
				keep = append(keep, e.cfg.File)
			}
			for _, p := range dest.clear() {
				if cleared[p] {
					continue
				}
				if err := restorer.ClearLocation(p, keep); err != nil {
					return results, err
				}
				cleared[p] = true
			}
		}
		rep := &reporter{g: g}
		stats := &restorer.Stats{}
		start := time.Now()
		// A whole job's totals are in its record: the line's totals do
		// not grow as the restore plans. A partial restore counts them as
		// it goes.
		var totalFiles, totalBytes int64
		if len(o.include) == 0 && len(o.exclude) == 0 && len(dest.within) == 0 {
			sm := j.Summary
			totalFiles, totalBytes = int64(sm.FilesNew+sm.FilesChanged+sm.FilesUnchanged), sm.BytesTotal
		}
		line := g.progressLine(func() string {
			return restoreProgress(j.Project, stats, totalFiles, totalBytes, time.Since(start))
		})
		keep := []string{e.localRepoDir()}
		if e.cfg != nil {
			keep = append(keep, e.cfg.File)
		}
		res, err := restorer.Restore(ctx, r.Repository, j, restorer.Options{Target: dest.root, Within: dest.within,
			Include: o.include, Exclude: o.exclude, Reporter: rep, Stats: stats, Workers: e.readers(), FindMissing: findMissing,
			DryRun: o.dryRun, Delete: o.delete, Keep: keep})
		line.Stop()
		if err != nil {
			return results, fmt.Errorf("restore of job %d: %w", j.Number, err)
		}
		results = append(results, restoreResult{Job: j.Number, Project: j.Project, Location: dest.root, Result: res})
		where := dest.describe()
		if o.dryRun {
			g.printf("Dry run of the restore of project %q from job %d %s: nothing was changed.\n", j.Project, j.Number, where)
			g.printf("  would write %d files (%s) and leave %d already up to date; %d dirs", res.Files-res.Skipped,
				progress.Bytes(res.Bytes), res.Skipped, res.Dirs)
			if o.delete {
				g.printf("; would delete %d entries", res.Deleted)
			}
			g.printf("\n")
			failed += res.Errors
			damaged += res.Damaged
			continue
		}
		if res.Errors > 0 {
			failed += res.Errors
			damaged += res.Damaged
			g.printf("Project %q restored from job %d %s with %d errors (see above).\n", j.Project, j.Number, where, res.Errors)
		} else {
			g.printf("Project %q restored from job %d %s.\n", j.Project, j.Number, where)
		}
		g.printf("  %d files (%d already up to date), %d dirs, %s in %.1fs\n", res.Files, res.Skipped, res.Dirs,
			progress.Bytes(res.Bytes), time.Since(start).Seconds())
		if res.Deleted > 0 {
			g.printf("  %d entries the job does not have were deleted\n", res.Deleted)
		}
		if res.Outside > 0 {
			g.printf("  %d entries of the job lie outside what runup.yaml includes for %q today and were not restored (see the warnings; restore them with -l DIR)\n", res.Outside, j.Project)
		}
	}
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return results, err
		}
	}
	if damaged > 0 {
		return results, withCode(ExitDamaged, fmt.Errorf("%d entries could not be restored correctly, %d of them because of damaged repository data (named above; run 'runup check')", failed, damaged))
	}
	if failed > 0 {
		return results, fmt.Errorf("%d entries could not be restored correctly (named above)", failed)
	}
	return results, nil
}

// restoreDest is where a job is restored: the directory its root stands
// for, and for an in-place restore the paths the job may write.
type restoreDest struct {
	root   string
	within []string // nil: all of root (a location the user named)
	// location is what --clear-location empties, as the original RunUp
	// did: the location named, or the context for a restore in place.
	location string
}

func (d restoreDest) clear() []string { return []string{d.location} }

func (d restoreDest) describe() string {
	if d.within == nil {
		return "into " + d.root
	}
	return "in place, into " + strings.Join(d.within, ", ")
}

// restoreTarget decides where a job goes. The repository never decides:
// with -l, under the location the user names; in place, only inside what
// the local runup.yaml includes for the project today. The job's own record
// of where it came from (its base) is not trusted.
func (e *env) restoreTarget(j *repo.Job, location string) (restoreDest, error) {
	if location != "" {
		loc := location
		if !filepath.IsAbs(loc) {
			loc = filepath.Join(e.dir, loc)
		}
		return restoreDest{root: filepath.Clean(loc), location: filepath.Clean(loc)}, nil
	}
	if e.cfg == nil {
		return restoreDest{}, usageErr(errors.New("without a runup.yaml, a restore goes only where you say: name a location with -l DIR"))
	}
	plans, err := e.plans([]string{j.Project}, "", selectionFlags{})
	if err != nil {
		return restoreDest{}, usageErr(fmt.Errorf("job %d is of project %q, which %s does not name today: restore it with -l DIR", j.Number, j.Project, e.cfg.File))
	}
	// The job's tree stands for the context when it said so at backup
	// time, for / otherwise; today's includes confine it either way.
	root := fsRoot(e.dir)
	if len(plans[0].paths) > 0 {
		root = fsRoot(plans[0].paths[0])
	}
	if j.InContext {
		root = e.dir
	}
	var paths []string
	for _, p := range plans[0].paths {
		if within(p, root) {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return restoreDest{}, usageErr(fmt.Errorf("job %d holds files of %s, where project %q includes nothing today: restore it with -l DIR", j.Number, root, j.Project))
	}
	return restoreDest{root: root, within: paths, location: e.dir}, nil
}

// within reports whether path p is dir or lies below it.
func within(p, dir string) bool {
	return p == dir || dir == fsRoot(dir) && fsRoot(p) == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// fsRoot is the root of the filesystem tree an absolute path is in: / on
// Unix, its drive's root (C:\) on Windows. A job outside the context
// stands for it.
func fsRoot(p string) string { return filepath.VolumeName(p) + string(filepath.Separator) }

// selectJobs picks what to restore, as the original did: a project's latest
// job, a given job (which must belong to the named project), or the latest
// job of every project.
func (e *env) selectJobs(jobs []*repo.Job, args []string, num int) ([]*repo.Job, error) {
	byNum := map[int]*repo.Job{}
	for _, j := range jobs {
		byNum[j.Number] = j
	}
	host, _ := os.Hostname()
	if num > 0 {
		j, ok := byNum[num]
		if !ok {
			return nil, fmt.Errorf("job %d does not exist: %s", num, jobNumbers(jobs))
		}
		if len(args) == 1 && j.Project != args[0] {
			return nil, fmt.Errorf("job %d is a backup of project %q, not of %q", num, j.Project, args[0])
		}
		return []*repo.Job{j}, nil
	}
	var names []string
	switch {
	case len(args) == 1:
		names = args
		if e.cfg != nil {
			if _, ok := e.cfg.Projects[args[0]]; !ok && latestJob(jobs, args[0], host) == nil {
				return nil, usageErr(fmt.Errorf("unknown project %q: %s names %s", args[0], e.cfg.File, strings.Join(e.cfg.Order, ", ")))
			}
		}
	case e.cfg != nil:
		names = e.cfg.Order
	default:
		return nil, usageErr(errors.New("name a project or a job (-j N) to restore"))
	}
	var out []*repo.Job
	for _, name := range names {
		j := latestJob(jobs, name, host)
		if j == nil {
			return nil, fmt.Errorf("project %q has no backup yet: run 'runup backup %s' first", name, name)
		}
		out = append(out, j)
	}
	return out, nil
}

// confirm asks a yes/no question on stdin; an empty answer is def.
func confirm(g *globals, question string, def bool) (bool, error) {
	fmt.Fprint(g.stderr, question)
	// One reader for all questions: a new one per question would lose
	// the answers a pipe gave ahead, in its buffer.
	if g.answers == nil {
		g.answers = bufio.NewReader(g.stdin)
	}
	line, err := g.answers.ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(g.stderr)
		return false, errors.New("no answer to the question (no input); use -f to restore without asking")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "":
		return def, nil
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// restoreProgress is the restore's status line: files and bytes done of
// the totals, a percentage and an ETA when the totals are known.
func restoreProgress(project string, st *restorer.Stats, totalFiles, totalBytes int64, elapsed time.Duration) string {
	files, done := st.FilesDone.Load(), st.BytesDone.Load()
	if totalBytes <= 0 || totalFiles <= 0 {
		return fmt.Sprintf("%s: %d files, %s of %s+ written (%s)", project, files, progress.Bytes(st.BytesWritten.Load()),
			progress.Bytes(st.BytesTotal.Load()), progress.Rate(st.BytesWritten.Load(), elapsed))
	}
	totalFiles, totalBytes = max(totalFiles, files), max(totalBytes, done)
	line := fmt.Sprintf("%s: %d of %d files, %s of %s (%.0f%%), %s", project, files, totalFiles, progress.Bytes(done),
		progress.Bytes(totalBytes), progress.Percent(done, totalBytes), progress.Rate(st.BytesWritten.Load(), elapsed))
	if eta, ok := progress.ETA(done, totalBytes, elapsed); ok {
		line += ", ETA " + progress.Clock(eta)
	}
	return line
}
