package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/archiver"
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
}

func newBackup(g *globals) *cobra.Command {
	var o backupOptions
	c := &cobra.Command{
		Use:   "backup [PROJECT...]",
		Short: "Back up one project, or every project when none is named",
		Long: `Back up projects of runup.yaml: one job per project. Files whose size,
times, inode and mode are unchanged since the project's last job are not
read again (--force reads everything).

Without a runup.yaml, 'runup --repo DIR backup PATH...' backs up the
given paths as project "default" (or --project NAME).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd, g, o, args)
		},
	}
	f := c.Flags()
	f.BoolVarP(&o.force, "force", "f", false, "read every file, even unchanged ones")
	f.StringSliceVar(&o.tags, "tag", nil, "label the job (repeatable)")
	f.StringVar(&o.host, "host", "", "host name recorded in the job (default: this machine's)")
	f.StringVar(&o.project, "project", "default", "project name for paths given without a runup.yaml")
	f.StringVar(&o.compression, "compression", "", "off, auto (= fastest), better or max (overrides runup.yaml)")
	f.StringVar(&o.when, "time", "", "record this time for the job instead of now (RFC 3339; for imports and tests)")
	return c
}

// plan is one project's backup, resolved against the context.
type plan struct {
	project string
	written []string
	paths   []string
	base    string
	inCtx   bool
	filter  *archiver.Filter
}

func (e *env) plans(args []string, adhocProject string) ([]plan, error) {
	var plans []plan
	if e.cfg == nil {
		if len(args) == 0 {
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
			p := plan{project: name, written: proj.Include}
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
			plans = append(plans, p)
		}
	}
	for i := range plans {
		p := &plans[i]
		// Paths given on the command line are kept whole, as they have no
		// config directory to be relative to.
		p.base, p.inCtx = e.dir, e.cfg != nil
		if e.cfg == nil {
			p.base = "/"
		}
		for _, abs := range p.paths {
			if rel, err := filepath.Rel(e.dir, abs); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				p.base, p.inCtx = "/", false
			}
		}
		if d := e.localRepoDir(); d != "" {
			p.filter.Never(d)
		}
	}
	return plans, nil
}

func runBackup(cmd *cobra.Command, g *globals, o backupOptions, args []string) error {
	ctx := cmd.Context()
	var when time.Time
	if o.when != "" {
		var err error
		if when, err = time.Parse(time.RFC3339, o.when); err != nil {
			return usageErr(fmt.Errorf("--time %q: want RFC 3339, like 2026-01-31T03:00:00Z", o.when))
		}
	}
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	plans, err := e.plans(args, o.project)
	if err != nil {
		return err
	}
	compSetting := o.compression
	if compSetting == "" && e.cfg != nil {
		compSetting = e.cfg.Compression
	}
	comp, err := repo.ParseCompression(compSetting)
	if err != nil {
		return usageErr(err)
	}
	r, err := e.open(ctx, repo.Options{Compression: comp, Uploads: e.uploads()}, sharedLock, "backup")
	if err != nil {
		return err
	}
	defer r.close()
	if n, problems, err := r.AdoptPacks(ctx); err != nil {
		return err
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
		return err
	}
	var results []*repo.Job
	incomplete := false
	for _, p := range plans {
		parent := latestJob(jobs, p.project, host)
		if parent != nil {
			g.verbosef("project %s: comparing with job %d\n", p.project, parent.Number)
		}
		stats := &archiver.Stats{}
		rep := &reporter{g: g}
		start := time.Now()
		line := progress.Start(g.stderr, !g.quiet && !g.json, func() string {
			return fmt.Sprintf("%s: %d files, %d dirs, %s read (%s), %s added", p.project, stats.Files.Load(), stats.Dirs.Load(),
				progress.Bytes(stats.BytesRead.Load()), progress.Rate(stats.BytesRead.Load(), time.Since(start)),
				progress.Bytes(stats.BytesAdded.Load()))
		})
		j, err := archiver.Backup(ctx, r.Repository, archiver.Options{
			Project: p.project, Base: p.base, Paths: p.paths, Written: p.written, Filter: p.filter,
			Parent: parent, Force: o.force, Tags: o.tags, Host: host, Program: "runup " + Version,
			Reporter: rep, Stats: stats, InContext: p.inCtx, Time: when,
		})
		line.Stop()
		if err != nil {
			return fmt.Errorf("backup of project %s: %w", p.project, err)
		}
		results = append(results, j)
		jobs = append(jobs, j)
		s := j.Summary
		if j.Incomplete {
			incomplete = true
			g.printf("New backup created, but incomplete: job %d of project %q is missing %d entries (see the errors above).\n", j.Number, j.Project, s.Errors)
		} else {
			g.printf("New backup created: job %d of project %q.\n", j.Number, j.Project)
		}
		g.printf("  %d new, %d changed, %d unchanged files, %d dirs; %s read, %s added to the repository in %.1fs\n",
			s.FilesNew, s.FilesChanged, s.FilesUnchanged, s.Dirs, progress.Bytes(s.BytesRead), progress.Bytes(s.BytesAdded), s.Seconds)
	}
	// What this backup indexed goes into the local store now, so that the
	// next command reads no index file.
	if err := r.PublishIndex(ctx); err != nil {
		fmt.Fprintf(g.stderr, "warning: local index store: %v\n", err)
	}
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	}
	if incomplete {
		return withCode(ExitIncomplete, errors.New("some files could not be backed up (the job is saved and marked incomplete)"))
	}
	return nil
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
