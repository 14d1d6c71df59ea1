package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runup/runup/internal/scheduler"
)

// fakeRunner records runs; a task's work is a function of the test.
type fakeRunner struct {
	mu      sync.Mutex
	runs    []string
	active  int
	overlap bool
	last    map[string]time.Time
	work    func(ctx context.Context, t Task) error
}

func (f *fakeRunner) Run(ctx context.Context, t Task, log *slog.Logger, progress func(string)) (Outcome, error) {
	progress("working on " + t.String())
	f.mu.Lock()
	f.active++
	if f.active > 1 {
		f.overlap = true
	}
	f.runs = append(f.runs, t.String())
	n := len(f.runs)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()
	var err error
	if f.work != nil {
		err = f.work(ctx, t)
	}
	return Outcome{Job: n, Summary: "ok"}, err
}

func (f *fakeRunner) LastRun(ctx context.Context, t Task) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[t.String()], nil
}

func (f *fakeRunner) count(task string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.runs {
		if r == task {
			n++
		}
	}
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func entry(t *testing.T, kind Kind, project, spec string) Entry {
	s, err := scheduler.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Task: Task{Kind: kind, Project: project}, Schedule: s}
}

type harness struct {
	d      *Daemon
	log    *syncBuffer
	state  *StateFile
	cancel context.CancelFunc
	done   chan error
	reload chan os.Signal
	plan   Plan
	mu     sync.Mutex
}

func start(t *testing.T, r Runner, plan Plan, state *StateFile) *harness {
	t.Helper()
	if state == nil {
		state = OpenState(t.TempDir(), "/x/runup.yaml", func(err error) { t.Error(err) })
	}
	h := &harness{log: &syncBuffer{}, state: state, done: make(chan error, 1), reload: make(chan os.Signal, 1), plan: plan}
	h.d = New(r, slog.New(slog.NewTextHandler(h.log, nil)), state)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		h.done <- h.d.Run(ctx, func() (Plan, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.plan, nil
		}, h.reload)
	}()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Error(err)
		}
		h.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two projects due at once both run, one after the other, again and again.
func TestSchedulesRunSerially(t *testing.T) {
	r := &fakeRunner{work: func(ctx context.Context, t Task) error {
		time.Sleep(200 * time.Millisecond)
		return nil
	}}
	h := start(t, r, Plan{Entries: []Entry{entry(t, Backup, "a", "@every 1s"), entry(t, Backup, "b", "@every 1s")}}, nil)
	waitFor(t, "three runs of each", func() bool { return r.count("backup a") >= 3 && r.count("backup b") >= 3 })
	h.stop(t)
	if r.overlap {
		t.Fatal("two tasks ran at once")
	}
	st := h.state.Load()
	if ts := st.Tasks["backup a"]; ts.Result != ResultSuccess || ts.Job == 0 || ts.LastStart.IsZero() || ts.Running {
		t.Fatalf("state %+v", ts)
	}
	if st.Daemon != nil {
		t.Fatal("a stopped daemon still says it runs")
	}
	if !strings.Contains(h.log.String(), `msg=finished task="backup a"`) {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

// When a task last ran decides whether it runs at start: never (or before
// the last firing) means now; after it, at the next firing.
func TestMissedRuns(t *testing.T) {
	now := time.Now()
	state := OpenState(t.TempDir(), "/x/runup.yaml", nil)
	state.Update(func(s *State) {
		s.Tasks["backup missed"] = TaskState{LastStart: now.Add(-49 * time.Hour)}
		s.Tasks["backup fresh"] = TaskState{LastStart: now.Add(-time.Minute)}
	})
	r := &fakeRunner{last: map[string]time.Time{
		"backup repo-fresh": now.Add(-time.Minute), // known from its newest job
		"backup repo-old":   now.Add(-72 * time.Hour),
	}}
	h := start(t, r, Plan{Entries: []Entry{
		entry(t, Backup, "missed", "@daily"), entry(t, Backup, "fresh", "@daily"),
		entry(t, Backup, "repo-fresh", "@daily"), entry(t, Backup, "repo-old", "@daily"),
		entry(t, Backup, "never", "@daily"),
	}}, state)
	waitFor(t, "the missed runs", func() bool {
		return r.count("backup missed") == 1 && r.count("backup repo-old") == 1 && r.count("backup never") == 1
	})
	time.Sleep(300 * time.Millisecond)
	h.stop(t)
	for task, want := range map[string]int{"backup missed": 1, "backup repo-old": 1, "backup never": 1, "backup fresh": 0, "backup repo-fresh": 0} {
		if got := r.count(task); got != want {
			t.Errorf("%s ran %d times, want %d", task, got, want)
		}
	}
}

// SIGHUP (here: the reload channel) picks up a changed plan.
func TestReload(t *testing.T) {
	r := &fakeRunner{}
	now := time.Now()
	r.last = map[string]time.Time{"backup a": now, "backup b": now}
	h := start(t, r, Plan{Entries: []Entry{entry(t, Backup, "a", "@daily")}}, nil)
	time.Sleep(300 * time.Millisecond)
	if n := r.count("backup a"); n != 0 {
		t.Fatalf("ran %d times before due", n)
	}
	h.mu.Lock()
	h.plan = Plan{Entries: []Entry{entry(t, Backup, "b", "@every 1s")}}
	h.mu.Unlock()
	h.reload <- os.Interrupt
	waitFor(t, "the new schedule", func() bool { return r.count("backup b") >= 2 })
	if r.count("backup a") != 0 {
		t.Fatal("a task no longer scheduled ran")
	}
	if !strings.Contains(h.log.String(), "msg=reloaded") {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

// Stopping interrupts the running task and waits for it.
func TestStopInterrupts(t *testing.T) {
	started := make(chan struct{})
	var stoppedCleanly bool
	r := &fakeRunner{work: func(ctx context.Context, t Task) error {
		close(started)
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // cleaning up
		stoppedCleanly = true
		return ctx.Err()
	}}
	h := start(t, r, Plan{Entries: []Entry{entry(t, Backup, "a", "@every 1h")}}, nil)
	<-started
	h.stop(t)
	if !stoppedCleanly {
		t.Fatal("the daemon returned before its task stopped")
	}
	if ts := h.state.Load().Tasks["backup a"]; ts.Result != ResultInterrupted || ts.Running {
		t.Fatalf("state %+v", ts)
	}
}

// A failing or panicking task is logged and the schedule goes on.
func TestFailures(t *testing.T) {
	r := &fakeRunner{work: func(ctx context.Context, t Task) error {
		switch t.Project {
		case "fails":
			return errors.New("disk full")
		case "panics":
			panic("bug")
		}
		return nil
	}}
	h := start(t, r, Plan{Entries: []Entry{entry(t, Backup, "fails", "@every 1s"), entry(t, Backup, "panics", "@every 1s"),
		entry(t, Backup, "works", "@every 1s")}}, nil)
	waitFor(t, "runs after the failures", func() bool { return r.count("backup works") >= 2 })
	h.stop(t)
	st := h.state.Load().Tasks
	if st["backup fails"].Result != ResultFailure || st["backup fails"].Error != "disk full" ||
		!strings.Contains(st["backup panics"].Error, "internal error: bug") || st["backup works"].Result != ResultSuccess {
		t.Fatalf("state %+v", st)
	}
	if !strings.Contains(h.log.String(), `level=ERROR msg=failed task="backup fails"`) {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

func TestEnqueue(t *testing.T) {
	block := make(chan struct{})
	r := &fakeRunner{work: func(ctx context.Context, t Task) error {
		if t.Project == "slow" {
			<-block
		}
		return nil
	}}
	now := time.Now()
	r.last = map[string]time.Time{"backup slow": now, "backup quick": now}
	h := start(t, r, Plan{Entries: []Entry{entry(t, Backup, "slow", "@daily"), entry(t, Backup, "quick", "@daily")}}, nil)
	id, ok := h.d.Enqueue(Task{Kind: Backup, Project: "slow"})
	if !ok {
		t.Fatal("not queued")
	}
	waitFor(t, "the slow task to run", func() bool { return r.count("backup slow") == 1 })
	if again, ok := h.d.Enqueue(Task{Kind: Backup, Project: "slow"}); ok || again != id {
		t.Fatal("a running task was queued again")
	}
	checkID, ok := h.d.Enqueue(Task{Kind: Check})
	if _, again := h.d.Enqueue(Task{Kind: Check}); !ok || again {
		t.Fatal("check queued wrong")
	}
	restore := Task{Kind: Restore, Job: 3, Path: "www/index.html", Location: "/tmp/x"}
	if restore.String() != "restore job 3 www/index.html to /tmp/x" {
		t.Fatal(restore.String())
	}
	waitFor(t, "progress", func() bool {
		st := h.d.Status()
		return st.Running != nil && st.Running.Progress == "working on backup slow"
	})
	st := h.d.Status()
	if st.Running == nil || st.Running.ID != id || st.Running.Task.Project != "slow" || len(st.Queue) != 1 || len(st.Tasks) != 2 {
		t.Fatalf("status %+v", st)
	}
	close(block)
	waitFor(t, "the check", func() bool { return r.count("check") == 1 })
	waitFor(t, "the check's end", func() bool { run, ok := h.d.Lookup(checkID); return ok && run.Result == ResultSuccess })
	run, _ := h.d.Lookup(id)
	if run.Result != ResultSuccess || run.Ended.IsZero() || len(run.Lines) < 2 || run.Lines[0].Message != "started" ||
		!strings.HasPrefix(run.Lines[len(run.Lines)-1].Message, "finished") {
		t.Fatalf("run %+v", run)
	}
	if hist := h.d.Status().History; len(hist) != 2 || hist[0].ID != checkID {
		t.Fatalf("history %+v", hist)
	}
}
