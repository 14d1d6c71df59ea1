package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/archiver"
	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/hooks"
	"github.com/runup/runup/internal/notify"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
)

type backupOptions struct {
	force       bool
	tags        []string
	host        string
	project     string
	compression string
	when        string
	// Backing up a stream without a config, restic's way.
	stdin            bool
	stdinFromCommand bool
	stdinFilename    string
	// noHooks skips hooks, notifications and copy-to (for a quick test).
	noHooks bool
	// What to leave out, restic's options; they add to runup.yaml's.
	exclude    []string
	sel        config.Selection
	largerThan string
	dryRun     bool
}

func newBackup(g *globals) *cobra.Command {
	var o backupOptions
	c := &cobra.Command{
		Use:   "backup [PROJECT...]",
		Short: "Back up one project, or every project when none is named",
		Long: `Back up projects of runup.yaml: one job per project. Files whose size,
times, inode and mode are unchanged since the project's last job are not
read again (--force reads everything).

A project's hooks, commands, notifications and copy-to (runup.yaml version
2) run here as they do under 'runup daemon': notify start, before hooks
(a failure skips the backup), the backup with each command's output stored
as a file, after hooks (always, once the before hooks ran), copies of the
new job to each copy-to repository, failure hooks if anything failed, and
notify success or failure. A notification that cannot be sent is a
warning, never a failure.

Without a runup.yaml, 'runup --repo DIR backup PATH...' backs up the
given paths as project "default" (or --project NAME).

--exclude and the other selection flags follow restic and add to what
runup.yaml leaves out; --dry-run says what would be read and added and
saves nothing.

'runup backup --stdin-from-command --stdin-filename site.sql -- pg_dump site'
stores a command's output as the file site.sql; if the command fails, no
job is saved. --stdin stores standard input the same way.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := runBackup(cmd.Context(), g, o, args, cmd.ArgsLenAtDash())
			return err
		},
	}
	f := c.Flags()
	f.BoolVarP(&o.force, "force", "f", false, "read every file, even unchanged ones")
	f.StringSliceVar(&o.tags, "tag", nil, "label the job (repeatable)")
	f.StringVar(&o.host, "host", "", "host name recorded in the job (default: this machine's)")
	f.StringVar(&o.project, "project", "default", "project name for paths or a stream given without a runup.yaml")
	f.StringVar(&o.compression, "compression", "", "off, auto (= fastest), better or max (overrides runup.yaml)")
	f.StringVar(&o.when, "time", "", "record this time for the job instead of now (RFC 3339; for imports and tests)")
	f.BoolVar(&o.stdin, "stdin", false, "back up standard input as one file (see --stdin-filename)")
	f.BoolVar(&o.stdinFromCommand, "stdin-from-command", false, "back up the standard output of the command given after -- as one file")
	f.StringVar(&o.stdinFilename, "stdin-filename", "stdin", "the file name for --stdin or --stdin-from-command")
	f.BoolVar(&o.noHooks, "no-hooks", false, "skip the projects' hooks, notifications and copy-to")
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "read and count what would be backed up and added; save nothing (no hooks, commands or copies)")
	f.StringArrayVarP(&o.exclude, "exclude", "e", nil, "leave out what matches `PATTERN` (repeatable; a name at any depth, or a path with /)")
	f.StringArrayVar(&o.sel.IExclude, "iexclude", nil, "like --exclude, ignoring case")
	f.StringArrayVar(&o.sel.ExcludeFile, "exclude-file", nil, "read exclude patterns from `FILE`, one per line (# comments)")
	f.StringArrayVar(&o.sel.IExcludeFile, "iexclude-file", nil, "like --exclude-file, ignoring case")
	f.StringArrayVar(&o.sel.ExcludeIfPresent, "exclude-if-present", nil, "leave out directories that hold `NAME[:HEADER]`")
	f.BoolVar(&o.sel.ExcludeCaches, "exclude-caches", false, "leave out directories marked with a CACHEDIR.TAG")
	f.StringVar(&o.largerThan, "exclude-larger-than", "", "leave out files larger than `SIZE` (e.g. 100M, 2G)")
	f.BoolVarP(&o.sel.OneFileSystem, "one-file-system", "x", false, "do not cross into other mounted filesystems")
	f.StringArrayVar(&o.sel.FilesFrom, "files-from", nil, "back up the paths listed in `FILE`, one per line, too")
	return c
}

// plan is one project's backup, resolved against the context.
type plan struct {
	project string
	proj    *config.Project // nil without a runup.yaml
	written []string
	paths   []string
	base    string
	inCtx   bool
	filter  *archiver.Filter
	streams []archiver.Stream
}

// commandStream is a command of runup.yaml whose output is stored as a file.
func (e *env) commandStream(proj *config.Project, c config.Command) archiver.Stream {
	return archiver.Stream{Name: c.Name, Open: func(ctx context.Context) (io.ReadCloser, error) {
		sh := hooks.Shell{Dir: e.dir, Timeout: proj.Hooks.Timeout, Output: e.g.stderr,
			Env: hooks.Env("RUNUP_PROJECT", proj.Name, "RUNUP_REPOSITORY", e.repoLoc, "RUNUP_CONTEXT", e.dir)}
		return sh.Start(ctx, c.Run)
	}}
}

// selectionFlags are backup's --exclude and the other selection flags,
// which add to what each project's runup.yaml entry says.
type selectionFlags struct {
	exclude []string
	sel     config.Selection
}

func (e *env) plans(args []string, adhocProject string, flags selectionFlags) ([]plan, error) {
	var plans []plan
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if e.cfg == nil {
		if len(args) == 0 && len(flags.sel.FilesFrom) == 0 {
			return nil, usageErr(errors.New("no runup.yaml here: name the paths to back up, or create runup.yaml"))
		}
		p := plan{project: adhocProject, written: args}
		for _, a := range args {
			abs, err := filepath.Abs(a)
			if err != nil {
				return nil, err
			}
			p.paths = append(p.paths, abs)
		}
		p.filter = archiver.NewFilter(e.dir, nil, false)
		plans = append(plans, p)
	} else {
		names := args
		if len(names) == 0 {
			names = e.cfg.Order
		}
		for _, name := range names {
			proj, ok := e.cfg.Projects[name]
			if !ok {
				return nil, usageErr(fmt.Errorf("unknown project %q: %s names %s", name, e.cfg.File, strings.Join(e.cfg.Order, ", ")))
			}
			p := plan{project: name, proj: proj, written: proj.Include}
			for _, inc := range proj.Include {
				abs := inc
				if !filepath.IsAbs(abs) {
					abs = filepath.Join(e.dir, inc)
				}
				p.paths = append(p.paths, filepath.Clean(abs))
			}
			p.filter = archiver.NewFilter(e.dir, proj.Exclude, e.cfg.Version >= 2)
			p.filter.IgnoreFiles = e.cfg.Version >= 2
			p.filter.Never(e.cfg.File)
			if err := applySelection(&p, e.dir, nil, proj.Select); err != nil {
				return nil, withCode(ExitUsage, fmt.Errorf("%s: project %s: %w", e.cfg.File, name, err))
			}
			for _, c := range proj.Commands {
				p.streams = append(p.streams, e.commandStream(proj, c))
			}
			plans = append(plans, p)
		}
	}
	for i := range plans {
		if err := applySelection(&plans[i], wd, flags.exclude, flags.sel); err != nil {
			return nil, usageErr(err)
		}
	}
	for i := range plans {
		p := &plans[i]
		// Paths given on the command line are kept whole, as they have no
		// config directory to be relative to.
		p.base, p.inCtx = e.dir, e.cfg != nil
		if e.cfg == nil {
			p.base = fsRoot(e.dir)
		}
		for _, abs := range p.paths {
			if rel, err := filepath.Rel(e.dir, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				p.base, p.inCtx = fsRoot(abs), false
			}
		}
		for _, abs := range p.paths {
			if fsRoot(abs) != fsRoot(p.base) {
				return nil, usageErr(fmt.Errorf("project %s includes %s and %s, on different drives: give each drive its own project", p.project, p.base, abs))
			}
		}
		if d := e.localRepoDir(); d != "" {
			p.filter.Never(d)
		}
	}
	return plans, nil
}

// runBackup backs up and returns the jobs saved. dashAt is where "--"
// stood among args (-1: nowhere).
func runBackup(ctx context.Context, g *globals, o backupOptions, args []string, dashAt int) ([]*repo.Job, error) {
	var when time.Time
	if o.when != "" {
		var err error
		if when, err = time.Parse(time.RFC3339, o.when); err != nil {
			return nil, usageErr(fmt.Errorf("--time %q: want RFC 3339, like 2026-01-31T03:00:00Z", o.when))
		}
	}
	e, err := g.loadEnv()
	if err != nil {
		return nil, err
	}
	var plans []plan
	if o.stdin || o.stdinFromCommand {
		p, err := e.streamPlan(o, args, dashAt)
		if err != nil {
			return nil, err
		}
		plans = []plan{p}
	} else {
		if o.largerThan != "" {
			if o.sel.ExcludeLargerThan, err = config.ParseSize(o.largerThan); err != nil || o.sel.ExcludeLargerThan == 0 {
				return nil, usageErr(fmt.Errorf("--exclude-larger-than %q: want a size such as 100M or 2G", o.largerThan))
			}
		}
		if plans, err = e.plans(args, o.project, selectionFlags{o.exclude, o.sel}); err != nil {
			return nil, err
		}
	}
	if o.dryRun {
		o.noHooks = true
		for i := range plans {
			plans[i].streams = nil
		}
	}
	compSetting := o.compression
	if compSetting == "" && e.cfg != nil {
		compSetting = e.cfg.Compression
	}
	comp, err := repo.ParseCompression(compSetting)
	if err != nil {
		return nil, usageErr(err)
	}
	for _, p := range plans {
		if p.proj != nil && !o.noHooks && (!p.proj.Hooks.Empty() || len(p.proj.Commands) > 0) {
			if err := config.SafeToRun(e.cfg.File, "hooks and commands"); err != nil {
				return nil, withCode(ExitUsage, err)
			}
			// After hooks run even when interrupted: give them time.
			g.setGrace(hooks.AfterGrace + interruptGrace)
		}
	}
	r, err := e.open(ctx, repo.Options{Compression: comp, Uploads: e.uploads()}, sharedLock, "backup")
	if err != nil {
		return nil, err
	}
	defer r.close()
	if o.dryRun {
		// Nothing is written: no packs adopted, no index published.
	} else if n, problems, err := r.AdoptPacks(ctx); err != nil {
		return nil, err
	} else {
		for _, p := range problems {
			fmt.Fprintf(g.stderr, "warning: %v (run 'runup check')\n", p)
		}
		if n > 0 {
			g.verbosef("reusing %d pack(s) left by an interrupted backup\n", n)
		}
	}
	host := o.host
	if host == "" {
		host, _ = os.Hostname()
	}
	jobs, _, err := r.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	var results []*repo.Job
	var failed []error
	for _, p := range plans {
		if ctx.Err() != nil {
			break
		}
		j, err := e.backupProject(ctx, r, p, o, host, when, &jobs)
		if j != nil {
			results = append(results, j)
		}
		if err != nil {
			if len(plans) > 1 {
				fmt.Fprintf(g.stderr, "error: project %s: %v\n", p.project, err)
			}
			failed = append(failed, err)
		}
	}
	// What this backup indexed goes into the local store now, so that the
	// next command reads no index file.
	if !o.dryRun {
		if err := r.PublishIndex(ctx); err != nil {
			fmt.Fprintf(g.stderr, "warning: local index store: %v\n", err)
		}
	}
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if results == nil {
			results = []*repo.Job{}
		}
		if err := enc.Encode(results); err != nil {
			return results, err
		}
	}
	switch {
	case ctx.Err() != nil:
		return results, context.Cause(ctx)
	case len(failed) == 1:
		return results, failed[0]
	case len(failed) > 1:
		// The first failure's exit code; every failure was printed.
		return results, withCode(exitCode(failed[0]), fmt.Errorf("%d of %d projects failed (see the errors above)", len(failed), len(plans)))
	}
	return results, nil
}

// backupProject backs up one project between its hooks and notifications,
// then copies the new job to the project's copy-to repositories. The job
// is returned when one was saved, even if something failed around it.
func (e *env) backupProject(ctx context.Context, r *session, p plan, o backupOptions, host string, when time.Time, jobs *[]*repo.Job) (*repo.Job, error) {
	g := e.g
	var hp hooks.Plan
	var targets []config.CopyTarget
	if p.proj != nil && !o.noHooks {
		hp = e.hookPlan(p.proj)
		targets = p.proj.CopyTo
	}
	var job *repo.Job
	err := hp.Around(ctx, func(ctx context.Context) (string, error) {
		j, err := e.backupOne(ctx, r, p, o, host, when, *jobs)
		if j == nil {
			return "", err
		}
		job = j
		*jobs = append(*jobs, j)
		s := j.Summary
		return fmt.Sprintf("job %d of project %s: %d new, %d changed, %d unchanged files; %s read, %s added in %.1fs",
			j.Number, j.Project, s.FilesNew, s.FilesChanged, s.FilesUnchanged, progress.Bytes(s.BytesRead),
			progress.Bytes(s.BytesAdded), s.Seconds), err
	}, func(ctx context.Context, _ error) error {
		if job == nil {
			return nil
		}
		var errs []error
		for _, t := range targets {
			var pw func() ([]byte, error)
			if t.Password != "" {
				pw = toPassword(e, "", t.Password)
			}
			target := e.targetEnv(t.Repository, true, pw)
			if _, err := copyJobs(ctx, g, r, target, []*repo.Job{job}); err != nil {
				errs = append(errs, fmt.Errorf("copy to %s: %w", target.repoLoc, err))
			}
		}
		return errors.Join(errs...)
	})
	return job, err
}

// hookPlan is what runs around a project's backup.
func (e *env) hookPlan(proj *config.Project) hooks.Plan {
	g := e.g
	hp := hooks.Plan{
		Shell: hooks.Shell{Dir: e.dir, Timeout: proj.Hooks.Timeout, Output: g.stderr,
			Env: hooks.Env("RUNUP_PROJECT", proj.Name, "RUNUP_REPOSITORY", e.repoLoc, "RUNUP_CONTEXT", e.dir)},
		Before: proj.Hooks.Before, After: proj.Hooks.After, Failure: proj.Hooks.Failure,
		Log: func(format string, args ...any) {
			if !g.quiet {
				fmt.Fprintf(g.stderr, "project %s: %s\n", proj.Name, fmt.Sprintf(format, args...))
			}
		},
	}
	if len(proj.Notify) > 0 {
		hp.Notify = newPinger(proj.Notify)
	}
	return hp
}

func newPinger(urls []string) *notify.Pinger {
	return &notify.Pinger{URLs: urls, UserAgent: "runup/" + Version}
}

// backupOne runs the backup of one plan and prints its result.
func (e *env) backupOne(ctx context.Context, r *session, p plan, o backupOptions, host string, when time.Time, jobs []*repo.Job) (*repo.Job, error) {
	g := e.g
	parent := latestJob(jobs, p.project, host)
	if parent != nil {
		g.verbosef("project %s: comparing with job %d\n", p.project, parent.Number)
	}
	stats := &archiver.Stats{}
	rep := &reporter{g: g}
	start := time.Now()
	ao := archiver.Options{
		Project: p.project, Base: p.base, Paths: p.paths, Written: p.written, Filter: p.filter,
		Parent: parent, Force: o.force, Tags: o.tags, Host: host, Program: "runup " + Version,
		Reporter: rep, Stats: stats, InContext: p.inCtx, Time: when, Streams: p.streams, DryRun: o.dryRun,
	}
	if g.showsProgress() { // the totals are worth counting only for a progress line
		scanCtx, stopScan := context.WithCancel(ctx)
		defer stopScan()
		go archiver.Scan(scanCtx, ao)
	}
	line := g.progressLine(func() string { return backupProgress(p.project, stats, time.Since(start)) })
	j, err := archiver.Backup(ctx, r.Repository, ao)
	line.Stop()
	if err != nil {
		return nil, fmt.Errorf("backup of project %s: %w", p.project, err)
	}
	s := j.Summary
	if o.dryRun {
		g.printf("Dry run of project %q: nothing was saved.\n", j.Project)
		g.printf("  would back up %d new, %d changed, %d unchanged files, %d dirs; %s read, at most %s would be added\n",
			s.FilesNew, s.FilesChanged, s.FilesUnchanged, s.Dirs, progress.Bytes(s.BytesRead), progress.Bytes(s.BytesAdded))
		return j, nil
	}
	if j.Incomplete {
		g.printf("New backup created, but incomplete: job %d of project %q is missing %d entries (see the errors above).\n", j.Number, j.Project, s.Errors)
	} else {
		g.printf("New backup created: job %d of project %q.\n", j.Number, j.Project)
	}
	g.printf("  %d new, %d changed, %d unchanged files, %d dirs; %s read, %s added to the repository in %.1fs\n",
		s.FilesNew, s.FilesChanged, s.FilesUnchanged, s.Dirs, progress.Bytes(s.BytesRead), progress.Bytes(s.BytesAdded), s.Seconds)
	if j.Incomplete {
		return j, withCode(ExitIncomplete, fmt.Errorf("job %d of project %s is incomplete: %d entries could not be backed up (the job is saved)", j.Number, j.Project, s.Errors))
	}
	return j, nil
}

// applySelection adds excludes and includes from s (and exclude patterns
// excl) to a plan; relative files are read from dir.
func applySelection(p *plan, dir string, excl []string, s config.Selection) error {
	f := p.filter
	if err := f.Exclude(excl, false); err != nil {
		return err
	}
	if err := f.Exclude(s.IExclude, true); err != nil {
		return err
	}
	for _, files := range []struct {
		names    []string
		caseless bool
	}{{s.ExcludeFile, false}, {s.IExcludeFile, true}} {
		for _, name := range files.names {
			lines, err := readLines(dir, name)
			if err != nil {
				return fmt.Errorf("exclude file: %w", err)
			}
			if err := f.Exclude(lines, files.caseless); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	f.ExcludeIfPresent(s.ExcludeIfPresent)
	if s.ExcludeCaches {
		f.ExcludeIfPresent([]string{archiver.CacheDirTag})
	}
	if s.ExcludeLargerThan > 0 {
		f.ExcludeLargerThan(s.ExcludeLargerThan)
	}
	f.OneFileSystem = f.OneFileSystem || s.OneFileSystem
	for _, name := range s.FilesFrom {
		lines, err := readLines(dir, name)
		if err != nil {
			return fmt.Errorf("files-from: %w", err)
		}
		for _, l := range lines {
			abs := l
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(dir, l)
			}
			p.paths = append(p.paths, filepath.Clean(abs))
			p.written = append(p.written, l)
		}
	}
	return nil
}

// readLines reads a list file: one entry per line, blank lines and lines
// starting with # skipped.
func readLines(dir, name string) ([]string, error) {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// backupProgress is the backup's status line: files and bytes done of the
// totals counted ahead, a percentage, the rate, an ETA, the current file.
func backupProgress(project string, st *archiver.Stats, elapsed time.Duration) string {
	done, files := st.Done(), st.FilesDone.Load()
	totalBytes, totalFiles := st.ScanBytes.Load(), st.ScanFiles.Load()
	more := "+" // still counting
	if st.ScanDone.Load() {
		more = ""
	}
	// Files that changed or appeared since they were counted: never show
	// more done than the total.
	totalBytes, totalFiles = max(totalBytes, done), max(totalFiles, files)
	line := fmt.Sprintf("%s: %d of %d%s files, %s of %s%s", project, files, totalFiles, more,
		progress.Bytes(done), progress.Bytes(totalBytes), more)
	if more == "" {
		line += fmt.Sprintf(" (%.0f%%)", progress.Percent(done, totalBytes))
	}
	line += ", " + progress.Rate(st.BytesRead.Load(), elapsed)
	if eta, ok := progress.ETA(done, totalBytes, elapsed); ok && more == "" {
		line += ", ETA " + progress.Clock(eta)
	}
	line += ", " + progress.Bytes(st.BytesAdded.Load()) + " added"
	if cur := st.Current.Load(); cur != nil {
		line += " · " + *cur
	}
	return line
}

// streamPlan is the plan of 'backup --stdin' and '--stdin-from-command':
// one file, read from standard input or a command's output, in a job whose
// root is the working directory.
func (e *env) streamPlan(o backupOptions, args []string, dashAt int) (plan, error) {
	if o.stdin && o.stdinFromCommand {
		return plan{}, usageErr(errors.New("give --stdin or --stdin-from-command, not both"))
	}
	if err := config.CheckStreamName(o.stdinFilename); err != nil {
		return plan{}, usageErr(fmt.Errorf("--stdin-filename %v", err))
	}
	wd, err := os.Getwd()
	if err != nil {
		return plan{}, err
	}
	st := archiver.Stream{Name: o.stdinFilename}
	if o.stdin {
		if len(args) > 0 {
			return plan{}, usageErr(errors.New("--stdin takes no paths or projects"))
		}
		st.Open = func(context.Context) (io.ReadCloser, error) { return io.NopCloser(e.g.stdin), nil }
	} else {
		if dashAt != 0 || len(args) == 0 {
			return plan{}, usageErr(errors.New("--stdin-from-command: give the command after --, as in 'runup backup --stdin-from-command --stdin-filename site.sql -- pg_dump site'"))
		}
		st.Open = func(ctx context.Context) (io.ReadCloser, error) {
			return hooks.Shell{Dir: wd, Output: e.g.stderr}.StartArgs(ctx, args)
		}
	}
	return plan{project: o.project, written: []string{o.stdinFilename}, base: wd, streams: []archiver.Stream{st},
		filter: archiver.NewFilter(wd, nil, false)}, nil
}

// latestJob is the project's newest job, from this host if it has one.
func latestJob(jobs []*repo.Job, project, host string) *repo.Job {
	var any, same *repo.Job
	for _, j := range jobs {
		if j.Project != project {
			continue
		}
		if any == nil || j.Number > any.Number {
			any = j
		}
		if j.Host == host && (same == nil || j.Number > same.Number) {
			same = j
		}
	}
	if same != nil {
		return same
	}
	return any
}
