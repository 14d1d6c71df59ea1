// Package daemon runs a runup.yaml by itself: each project's backup on its
// schedule, and the repository's maintenance (forget and prune, check).
//
// The daemon is a front end like the command line: it decides when, and a
// Runner (the command line's operations) does the work. It runs one task
// at a time, in the order they fell due: the repository lock would refuse
// a prune beside a backup, and one at a time also bounds memory. A task
// that falls due while queued or running is not queued twice. A run missed
// while the machine was off happens once at start-up, as anacron does;
// when each task last started is kept in a state file, which is also what
// 'runup schedule status' reads.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/runup/runup/internal/scheduler"
)

// Kind is what a task does.
type Kind string

const (
	Backup Kind = "backup"
	Forget Kind = "forget" // every project's keep:, then prune
	Check  Kind = "check"
)

// Restore puts a job's files back; only the web UI queues it.
const Restore Kind = "restore"

// Task is one unit of work.
type Task struct {
	Kind    Kind
	Project string // for Backup
	// For Restore: the job, the path in it ("": all of it) and where to
	// ("": in place).
	Job      int
	Path     string
	Location string
}

func (t Task) String() string {
	switch {
	case t.Kind == Restore:
		s := fmt.Sprintf("restore job %d", t.Job)
		if t.Path != "" {
			s += " " + t.Path
		}
		if t.Location != "" {
			s += " to " + t.Location
		}
		return s
	case t.Project != "":
		return string(t.Kind) + " " + t.Project
	}
	return string(t.Kind)
}

// Entry is a task on a schedule.
type Entry struct {
	Task     Task
	Schedule scheduler.Schedule
}

// Plan is what the daemon runs: read from runup.yaml at start and on
// reload.
type Plan struct {
	Entries []Entry
	// Warnings are problems of the plan worth a log line (a maintenance
	// forget while no project has a keep policy).
	Warnings []string
}

// Outcome is what a finished task reports.
type Outcome struct {
	Job     int    // the job a backup made (0: none)
	Summary string // one line
}

// Runner does the work.
type Runner interface {
	// Run runs a task to its end; ctx ends when the daemon is stopped,
	// and the task should then stop cleanly and soon. It may report its
	// progress as one line, as often as it likes.
	Run(ctx context.Context, t Task, log *slog.Logger, progress func(string)) (Outcome, error)
	// LastRun is when the task last ran according to the repository (a
	// backup's newest job), for a task the state file does not know.
	// Zero means never: it is due at once.
	LastRun(ctx context.Context, t Task) (time.Time, error)
}

// Daemon schedules and runs tasks.
type Daemon struct {
	runner Runner
	log    *slog.Logger
	state  *StateFile

	mu      sync.Mutex
	plan    Plan
	last    map[string]time.Time // by Task.String(): when it last started
	queue   []*Run
	running *Run
	history []*Run // finished, newest last
	nextID  int
	wake    chan struct{}
	started time.Time
}

// Run is one run of a task: queued, running or finished.
type Run struct {
	ID        int
	Task      Task
	Requested bool // queued by Enqueue, not by the schedule
	Queued    time.Time
	Started   time.Time // zero while queued
	Ended     time.Time // zero until finished
	Result    string    // ResultSuccess, …; "" until finished
	Error     string
	Job       int
	Summary   string
	Progress  string    // the last progress line, while running
	Lines     []LogLine // what it logged (at most maxLines, the last ones)
}

// LogLine is one event a run logged.
type LogLine struct {
	Time    time.Time
	Level   string
	Message string
}

const (
	maxLines   = 300 // of a run kept for the web UI
	maxHistory = 50  // finished runs kept
)

// New returns a daemon; state may be nil (nothing remembered).
func New(runner Runner, log *slog.Logger, state *StateFile) *Daemon {
	return &Daemon{runner: runner, log: log, state: state, last: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

// maxSleep bounds a wait for the next run: the wall clock is read again at
// least this often, so a suspended laptop or a changed clock is noticed.
const maxSleep = time.Minute

// heartbeat is how often the state file says the daemon is alive.
const heartbeat = 30 * time.Second

// Run schedules and runs tasks until ctx ends; then the running task is
// interrupted and waited for. load reads the plan; it is called at start
// and whenever reload receives (SIGHUP). A plan that fails to load at start
// is an error; on reload it is logged and the old plan kept.
func (d *Daemon) Run(ctx context.Context, load func() (Plan, error), reload <-chan os.Signal) error {
	plan, err := load()
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.started = time.Now()
	d.mu.Unlock()
	d.setPlan(ctx, plan)
	d.log.Info("daemon started", "pid", os.Getpid(), "tasks", len(plan.Entries))
	d.logNext()
	d.beat()
	done := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	lastBeat := time.Now()
	for {
		now := time.Now()
		if now.Sub(lastBeat) >= heartbeat {
			d.beat()
			lastBeat = now
		}
		d.queueDue(now)
		if run, ok := d.next(); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.run(ctx, run)
				done <- struct{}{}
			}()
		}
		wait := min(d.untilNext(time.Now()), maxSleep, heartbeat)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			d.mu.Lock()
			r := d.running
			d.mu.Unlock()
			if r != nil {
				d.log.Info("stopping: interrupting the running task", "task", r.Task.String())
			} else {
				d.log.Info("stopping")
			}
			wg.Wait()
			d.beatStopped()
			return nil
		case <-reload:
			timer.Stop()
			p, err := load()
			if err != nil {
				d.log.Error("reload failed: keeping the schedule in use", "error", err.Error())
				continue
			}
			d.setPlan(ctx, p)
			d.log.Info("reloaded", "tasks", len(p.Entries))
			d.logNext()
		case <-done:
			timer.Stop()
		case <-d.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// setPlan adopts a plan: tasks it no longer has leave the queue, and each
// task's last run comes from the state file or, failing that, the runner.
func (d *Daemon) setPlan(ctx context.Context, p Plan) {
	for _, w := range p.Warnings {
		d.log.Warn(w)
	}
	known := map[string]bool{}
	var ask []Task
	st := d.state.Load()
	d.mu.Lock()
	for _, e := range p.Entries {
		k := e.Task.String()
		known[k] = true
		if _, ok := d.last[k]; ok {
			continue
		}
		if ts, ok := st.Tasks[k]; ok && !ts.LastStart.IsZero() {
			d.last[k] = ts.LastStart
			continue
		}
		ask = append(ask, e.Task)
	}
	d.plan = p
	// Scheduled tasks no longer in the plan leave the queue; tasks queued
	// by request stay.
	d.queue = slices.DeleteFunc(d.queue, func(r *Run) bool { return !r.Requested && !known[r.Task.String()] })
	d.mu.Unlock()
	for _, t := range ask {
		last, err := d.runner.LastRun(ctx, t)
		if err != nil {
			d.log.Warn("could not tell when the task last ran; running it now", "task", t.String(), "error", err.Error())
		}
		d.mu.Lock()
		d.last[t.String()] = last
		d.mu.Unlock()
	}
}

func (d *Daemon) logNext() {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.plan.Entries {
		next := e.Schedule.NextRun(d.last[e.Task.String()], now)
		d.log.Info("scheduled", "task", e.Task.String(), "schedule", e.Schedule.String(), "next", next.Round(time.Second).Format(time.RFC3339))
	}
}

// queueDue queues every task that is due and not queued or running.
func (d *Daemon) queueDue(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.plan.Entries {
		if d.pending(e.Task) != nil || !e.Schedule.Due(d.last[e.Task.String()], now) {
			continue
		}
		d.nextID++
		d.queue = append(d.queue, &Run{ID: d.nextID, Task: e.Task, Queued: now})
		d.log.Info("due", "task", e.Task.String(), "queued", len(d.queue))
	}
}

// pending is t's run if t is queued or running; d.mu is held.
func (d *Daemon) pending(t Task) *Run {
	for _, r := range d.queue {
		if r.Task == t {
			return r
		}
	}
	if d.running != nil && d.running.Task == t {
		return d.running
	}
	return nil
}

// next takes the first queued task if none is running.
func (d *Daemon) next() (*Run, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running != nil || len(d.queue) == 0 {
		return nil, false
	}
	r := d.queue[0]
	d.queue = d.queue[1:]
	r.Started = time.Now()
	d.running = r
	d.last[r.Task.String()] = r.Started
	return r, true
}

// untilNext is how long until the next task falls due.
func (d *Daemon) untilNext(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	wait := maxSleep
	for _, e := range d.plan.Entries {
		if d.pending(e.Task) != nil {
			continue
		}
		wait = min(wait, e.Schedule.NextRun(d.last[e.Task.String()], now).Sub(now))
	}
	return max(wait, 0)
}

// Enqueue queues a task now (the web UI's "back up now") and returns its
// run's ID; false if the task is already queued or running (the ID is
// then that run's).
func (d *Daemon) Enqueue(t Task) (int, bool) {
	d.mu.Lock()
	if r := d.pending(t); r != nil {
		d.mu.Unlock()
		return r.ID, false
	}
	d.nextID++
	r := &Run{ID: d.nextID, Task: t, Queued: time.Now(), Requested: true}
	d.queue = append(d.queue, r)
	d.mu.Unlock()
	d.log.Info("queued by request", "task", t.String())
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return r.ID, true
}

func (d *Daemon) run(ctx context.Context, r *Run) {
	t := r.Task
	start := r.Started
	log := slog.New(&teeHandler{inner: d.log.Handler(), d: d, run: r}).With("task", t.String())
	log.Info("started")
	d.state.Update(func(s *State) {
		ts := s.Tasks[t.String()]
		ts.LastStart = start
		ts.Running = true
		s.Tasks[t.String()] = ts
	})
	out, err := d.safeRun(ctx, t, log, func(line string) {
		d.mu.Lock()
		r.Progress = line
		d.mu.Unlock()
	})
	took := time.Since(start).Round(time.Millisecond)
	result := ResultSuccess
	switch {
	case err != nil && ctx.Err() != nil:
		result = ResultInterrupted
		log.Warn("interrupted", "duration", took.String(), "error", err.Error())
	case err != nil:
		result = ResultFailure
		log.Error("failed", "duration", took.String(), "error", err.Error())
	default:
		attrs := []any{"duration", took.String()}
		if out.Job > 0 {
			attrs = append(attrs, "job", out.Job)
		}
		if out.Summary != "" {
			attrs = append(attrs, "summary", out.Summary)
		}
		log.Info("finished", attrs...)
	}
	d.state.Update(func(s *State) {
		ts := s.Tasks[t.String()]
		ts.Running = false
		ts.LastEnd = time.Now()
		ts.Result = result
		ts.Error = ""
		if err != nil {
			ts.Error = err.Error()
		}
		if out.Job > 0 {
			ts.Job = out.Job
		}
		ts.Summary = out.Summary
		s.Tasks[t.String()] = ts
	})
	d.mu.Lock()
	r.Ended, r.Result, r.Job, r.Summary, r.Progress = time.Now(), result, out.Job, out.Summary, ""
	if err != nil {
		r.Error = err.Error()
	}
	d.running = nil
	d.history = append(d.history, r)
	if len(d.history) > maxHistory {
		d.history = slices.Delete(d.history, 0, len(d.history)-maxHistory)
	}
	d.mu.Unlock()
}

// safeRun turns a panic in a task into its failure: one bad task must not
// end the schedule of the others.
func (d *Daemon) safeRun(ctx context.Context, t Task, log *slog.Logger, progress func(string)) (out Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	out, err = d.runner.Run(ctx, t, log, progress)
	if err == nil && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	return out, err
}

func (d *Daemon) beat() {
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	d.state.Update(func(s *State) {
		s.Daemon = &DaemonState{PID: os.Getpid(), Started: started, Heartbeat: time.Now()}
	})
}

func (d *Daemon) beatStopped() {
	d.state.Update(func(s *State) { s.Daemon = nil })
}

// Status is the daemon's view of its tasks, for the web UI.
type Status struct {
	Started time.Time
	Running *Run
	Queue   []Run
	History []Run // newest first
	Tasks   []TaskStatus
}

// TaskStatus is one scheduled task.
type TaskStatus struct {
	Task     Task
	Schedule string
	Next     time.Time
	TaskState
}

// Status reports the schedule and what runs.
func (d *Daemon) Status() Status {
	st := d.state.Load()
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Started: d.started}
	for _, r := range d.queue {
		s.Queue = append(s.Queue, r.copy())
	}
	if d.running != nil {
		r := d.running.copy()
		s.Running = &r
	}
	for i := len(d.history) - 1; i >= 0; i-- {
		s.History = append(s.History, d.history[i].copy())
	}
	for _, e := range d.plan.Entries {
		ts := TaskStatus{Task: e.Task, Schedule: e.Schedule.String(), TaskState: st.Tasks[e.Task.String()]}
		ts.Next = e.Schedule.NextRun(d.last[e.Task.String()], now)
		s.Tasks = append(s.Tasks, ts)
	}
	return s
}

// copy is a snapshot of the run; d.mu is held.
func (r *Run) copy() Run {
	c := *r
	c.Lines = slices.Clone(r.Lines)
	return c
}

// Lookup returns the run with the given ID, queued, running or recent.
func (d *Daemon) Lookup(id int) (Run, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running != nil && d.running.ID == id {
		return d.running.copy(), true
	}
	for _, r := range d.queue {
		if r.ID == id {
			return r.copy(), true
		}
	}
	for _, r := range d.history {
		if r.ID == id {
			return r.copy(), true
		}
	}
	return Run{}, false
}

// teeHandler logs a run's events and keeps them with the run.
type teeHandler struct {
	inner slog.Handler
	d     *Daemon
	run   *Run
}

// Enabled is true for every level: a run keeps all its events, whatever
// the daemon's log shows.
func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	msg := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key != "task" {
			msg += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	h.d.mu.Lock()
	h.run.Lines = append(h.run.Lines, LogLine{Time: rec.Time, Level: rec.Level.String(), Message: msg})
	if len(h.run.Lines) > maxLines {
		h.run.Lines = slices.Delete(h.run.Lines, 0, len(h.run.Lines)-maxLines)
	}
	h.d.mu.Unlock()
	if !h.inner.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.inner.Handle(ctx, rec)
}

func (h *teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &teeHandler{inner: h.inner.WithAttrs(attrs), d: h.d, run: h.run}
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{inner: h.inner.WithGroup(name), d: h.d, run: h.run}
}
