package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/daemon"
	"github.com/runup/runup/internal/hooks"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
)

// daemonLockWait is how long the daemon's tasks wait for a lock another
// process holds (a prune run by hand) when --lock-wait is not given.
const daemonLockWait = 10 * time.Minute

func newDaemon(g *globals) *cobra.Command {
	var ui string
	var uf uiFlags
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run the schedules of runup.yaml: backups, maintenance, hooks, notifications",
		Long: `Run in the foreground (for systemd, launchd, a container or a terminal)
and back up each project of runup.yaml on its cron: schedule, run the
repository's maintenance (forget and prune, check), with each project's
hooks, commands, notifications and copy-to, as 'runup backup' does.

One task runs at a time, in the order they fall due; a task already queued
is not queued twice. A run missed while the machine was off runs once at
start-up. Each event is one log line on standard output (JSON lines with
--json). SIGHUP reloads runup.yaml; SIGTERM or Ctrl-C interrupts the running
task cleanly (its after hooks still run) and exits.

'runup schedule install' makes the system start the daemon at boot;
'runup schedule status' shows each task's last run and next run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemon(cmd.Context(), g, ui, uf)
		},
	}
	c.Flags().StringVar(&ui, "ui", "", "also serve the web UI on this address (e.g. "+DefaultUIAddr+"), with the schedules' state")
	uf.add(c)
	return c
}

func runDaemon(ctx context.Context, g *globals, ui string, uf uiFlags) error {
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	if e.cfg == nil {
		return usageErr(errors.New("the daemon runs what runup.yaml schedules: there is none here (use -c DIR)"))
	}
	var h slog.Handler
	if g.json {
		h = slog.NewJSONHandler(g.stdout, nil)
	} else {
		h = slog.NewTextHandler(g.stdout, nil)
	}
	log := slog.New(h)
	load := func() (daemon.Plan, error) {
		cfg, err := config.LoadFile(e.cfg.File)
		if err != nil {
			return daemon.Plan{}, err
		}
		return planOf(cfg)
	}
	plan, err := load()
	if err != nil {
		return err
	}
	if len(plan.Entries) == 0 {
		return usageErr(fmt.Errorf("%s schedules nothing: add cron: to a project (version '2'), e.g. cron: '0 3 * * *'", e.cfg.File))
	}
	dir, err := daemon.StateDir()
	var state *daemon.StateFile
	if err != nil {
		log.Warn("no place for the state file: missed runs cannot be told after a restart", "error", err.Error())
	} else {
		state = daemon.OpenState(dir, e.cfg.File, func(err error) { log.Warn(err.Error()) })
	}
	// The running task's after hooks still run when stopped.
	g.setGrace(hooks.AfterGrace + 2*interruptGrace)
	d := daemon.New(&taskRunner{g: g}, log, state)
	if ui != "" {
		b, err := newUIBackend(ctx, g, e)
		if err != nil {
			return err
		}
		defer b.close()
		b.d = d
		stop, err := serveUI(ctx, g, b, d, ui, uf, true)
		if err != nil {
			return err
		}
		defer stop()
	}
	reload := make(chan os.Signal, 1)
	stop := notifyReload(reload)
	defer stop()
	err = d.Run(ctx, load, reload)
	if err == nil && ctx.Err() != nil {
		return nil // stopped as asked: not a failure
	}
	return err
}

// planOf turns a config into the daemon's tasks.
func planOf(cfg *config.Config) (daemon.Plan, error) {
	var p daemon.Plan
	anyKeep := false
	for _, name := range cfg.Order {
		proj := cfg.Projects[name]
		if proj.Keep != nil {
			anyKeep = true
		}
		if !proj.Cron.IsZero() {
			p.Entries = append(p.Entries, daemon.Entry{Task: daemon.Task{Kind: daemon.Backup, Project: name}, Schedule: proj.Cron})
		}
	}
	m := cfg.Maintenance
	if !m.Forget.IsZero() {
		p.Entries = append(p.Entries, daemon.Entry{Task: daemon.Task{Kind: daemon.Forget}, Schedule: m.Forget})
		if !anyKeep {
			p.Warnings = append(p.Warnings, "maintenance.forget is scheduled but no project has keep:, so it removes nothing (it still prunes)")
		}
	}
	if !m.Check.IsZero() {
		p.Entries = append(p.Entries, daemon.Entry{Task: daemon.Task{Kind: daemon.Check}, Schedule: m.Check})
	}
	return p, nil
}

// taskRunner runs the daemon's tasks as the command line runs them, with
// their output turned into log lines.
type taskRunner struct {
	g *globals
}

// child is a copy of the daemon's flags for one task: its output goes to
// the log, and it waits for locks held by others.
func (r *taskRunner) child(log *slog.Logger) *globals {
	p := r.g
	lockWait := p.lockWait
	if lockWait == 0 {
		lockWait = daemonLockWait
	}
	return &globals{
		context: p.context, verbose: p.verbose, repo: p.repo, passwordFile: p.passwordFile, passwordOverride: p.passwordOverride,
		lockWait: lockWait, timeout: p.timeout, connections: p.connections, cacheDir: p.cacheDir, noCache: p.noCache,
		stdin: bytes.NewReader(nil), stdout: io.Discard, stderr: &logWriter{log: log},
	}
}

func (r *taskRunner) Run(ctx context.Context, t daemon.Task, log *slog.Logger, onProgress func(string)) (daemon.Outcome, error) {
	g := r.child(log)
	g.onProgress = onProgress
	defer g.stderr.(*logWriter).Flush()
	if t.Kind != daemon.Backup {
		// What forget removed and what check found belong in the log; a
		// backup's result is the "finished" line.
		out := &logWriter{log: log}
		defer out.Flush()
		g.stdout = out
	}
	switch t.Kind {
	case daemon.Backup:
		jobs, err := runBackup(ctx, g, backupOptions{}, []string{t.Project}, -1)
		var out daemon.Outcome
		if len(jobs) > 0 {
			j := jobs[0]
			s := j.Summary
			out = daemon.Outcome{Job: j.Number, Summary: fmt.Sprintf("%d new, %d changed, %d unchanged files; %s read, %s added",
				s.FilesNew, s.FilesChanged, s.FilesUnchanged, progress.Bytes(s.BytesRead), progress.Bytes(s.BytesAdded))}
		}
		return out, err
	case daemon.Forget:
		cfg, err := config.Load(g.context)
		if err != nil {
			return daemon.Outcome{}, err
		}
		err = r.maintain(ctx, cfg, func() error {
			return runForget(ctx, g, keepFlags{}, pruneFlags{maxUnused: "5%"}, false, true, nil)
		})
		if errors.Is(err, errNoPolicy) {
			err = runPrune2(ctx, g)
		}
		return daemon.Outcome{}, err
	case daemon.Restore:
		o := restoreOptions{job: t.Job, location: t.Location, force: true}
		if t.Path != "" {
			// The path itself and, for a folder, what is below it.
			o.include = []string{globEscape(t.Path)}
		}
		res, err := runRestore(ctx, g, o, nil)
		var out daemon.Outcome
		for _, r := range res {
			out.Summary = fmt.Sprintf("%d files (%d already up to date), %d folders, %s restored into %s",
				r.Files, r.Skipped, r.Dirs, progress.Bytes(r.Bytes), r.Location)
		}
		return out, err
	case daemon.Check:
		cfg, err := config.Load(g.context)
		if err != nil {
			return daemon.Outcome{}, err
		}
		var rep string
		err = r.maintain(ctx, cfg, func() error {
			res, err := runCheck(ctx, g, false, cfg.Maintenance.ReadDataSubset)
			if res != nil && err == nil {
				rep = "no problems found"
			}
			return err
		})
		return daemon.Outcome{Summary: rep}, err
	}
	return daemon.Outcome{}, fmt.Errorf("unknown task %v", t)
}

// maintain runs a maintenance task with maintenance.notify's pings.
func (r *taskRunner) maintain(ctx context.Context, cfg *config.Config, work func() error) error {
	hp := hooks.Plan{}
	if len(cfg.Maintenance.Notify) > 0 {
		hp.Notify = newPinger(cfg.Maintenance.Notify)
	}
	return hp.Around(ctx, func(context.Context) (string, error) { return "", work() }, nil)
}

// runPrune2 prunes (forget found no keep policy to apply).
func runPrune2(ctx context.Context, g *globals) error {
	po, err := (&pruneFlags{maxUnused: "5%"}).options(false)
	if err != nil {
		return err
	}
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	s, err := e.open(ctx, repo.Options{Uploads: e.uploads()}, exclusiveLock, "prune")
	if err != nil {
		return err
	}
	defer s.close()
	return runPrune(ctx, g, s, po)
}

// LastRun is the time of the project's newest job from this host: a
// backup missed since then runs at once. Maintenance starts counting when
// the daemon first starts.
func (r *taskRunner) LastRun(ctx context.Context, t daemon.Task) (time.Time, error) {
	if t.Kind != daemon.Backup {
		return time.Now(), nil
	}
	g := r.child(slog.New(slog.DiscardHandler))
	e, err := g.loadEnv()
	if err != nil {
		return time.Time{}, err
	}
	s, err := e.lockedRepo(ctx, repo.Options{}, noLock, "daemon")
	if err != nil {
		return time.Time{}, err
	}
	defer s.close()
	jobs, _, err := s.Jobs(ctx)
	if err != nil {
		return time.Time{}, err
	}
	host, _ := os.Hostname()
	var last time.Time
	for _, j := range jobs {
		if j.Project == t.Project && j.Host == host && j.Time.After(last) {
			last = j.Time
		}
	}
	return last, nil
}

// logWriter turns a task's output into log lines: "error: …" lines are
// errors, "warning: …" warnings, the rest (hooks' output) information.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a line without end: log what came
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// Flush logs a last line without a newline.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

func (w *logWriter) line(s string) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\x1b[K", ""))
	switch {
	case s == "":
	case strings.HasPrefix(s, "error: "):
		w.log.Error(strings.TrimPrefix(s, "error: "))
	case strings.HasPrefix(s, "warning: "):
		w.log.Warn(strings.TrimPrefix(s, "warning: "))
	case strings.Contains(s, ": warning: "):
		w.log.Warn(s)
	default:
		w.log.Info(s)
	}
}

// globEscape makes a path a pattern that matches only itself.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[]{}\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
