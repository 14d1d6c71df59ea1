package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Notifier that remembers what it was told.
type recorder struct {
	mu     sync.Mutex
	events []string
	fail   bool
}

func (r *recorder) Notify(ctx context.Context, ev Event, body string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev.String())
	if r.fail {
		return errors.New("server down")
	}
	return nil
}

func TestAround(t *testing.T) {
	tests := []struct {
		name            string
		before, after   []string
		failure         []string
		workErr         error
		wantTrace       string // what the hooks and the work wrote, in order
		wantEvents      string
		wantErr         string
		notifyFails     bool
		wantLogContains string
	}{
		{name: "all succeed", before: []string{"echo before1 >>trace", "echo before2 >>trace"}, after: []string{"echo after:$RUNUP_RESULT >>trace"},
			failure: []string{"echo failure >>trace"}, wantTrace: "before1 before2 work after:success", wantEvents: "start success"},
		{name: "a before hook fails: work skipped, after and failure run", before: []string{"echo before1 >>trace", "exit 4", "echo never >>trace"},
			after: []string{"echo after:$RUNUP_RESULT >>trace"}, failure: []string{"echo failure:$RUNUP_HOOK >>trace"},
			wantTrace: "before1 after:failure failure:failure", wantEvents: "start failure", wantErr: "before hook \"exit 4\" failed: exit status 4: the backup was skipped"},
		{name: "the work fails", after: []string{"echo after >>trace"}, failure: []string{`echo "failure:$RUNUP_ERROR" >>trace`},
			workErr: errors.New("disk full"), wantTrace: "work after failure:disk full", wantEvents: "start failure", wantErr: "disk full"},
		{name: "an after hook fails", after: []string{"false", "echo after2 >>trace"}, failure: []string{"echo failure >>trace"},
			wantTrace: "work after2 failure", wantEvents: "start failure", wantErr: "after hook \"false\" failed"},
		{name: "a failing notification does not fail the backup", notifyFails: true, wantTrace: "work", wantEvents: "start success",
			wantLogContains: "notification (success) failed: server down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &recorder{fail: tt.notifyFails}
			var log bytes.Buffer
			p := Plan{Shell: Shell{Dir: dir, Timeout: 10 * time.Second}, Before: tt.before, After: tt.after, Failure: tt.failure,
				Notify: rec, Log: func(f string, a ...any) { log.WriteString(strings.TrimSpace(fmtS(f, a...)) + "\n") }}
			err := p.Around(context.Background(), func(ctx context.Context) (string, error) {
				f, _ := os.OpenFile(filepath.Join(dir, "trace"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				f.WriteString("work\n")
				f.Close()
				return "job 1", tt.workErr
			}, nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			trace, _ := os.ReadFile(filepath.Join(dir, "trace"))
			if got := strings.Join(strings.Fields(strings.ReplaceAll(string(trace), "disk full", "disk_full")), " "); got != strings.ReplaceAll(tt.wantTrace, "disk full", "disk_full") {
				t.Errorf("trace %q, want %q", got, tt.wantTrace)
			}
			if got := strings.Join(rec.events, " "); got != tt.wantEvents {
				t.Errorf("events %q, want %q", got, tt.wantEvents)
			}
			if !strings.Contains(log.String(), tt.wantLogContains) {
				t.Errorf("log %q lacks %q", log.String(), tt.wantLogContains)
			}
		})
	}
}

func fmtS(f string, a ...any) string { return fmt.Sprintf(f, a...) }

// An interrupted backup still runs its after hooks: a service stopped
// before must be started again.
func TestAroundInterrupted(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	p := Plan{Shell: Shell{Dir: dir}, After: []string{"echo after >trace"}}
	err := p.Around(ctx, func(ctx context.Context) (string, error) {
		cancel()
		<-ctx.Done()
		return "", ctx.Err()
	}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "trace")); string(b) != "after\n" {
		t.Fatalf("after hook did not run: %q", b)
	}
}

// Later work (copies) runs after the after hooks, and its failure is the
// backup's.
func TestAroundLater(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	p := Plan{Shell: Shell{Dir: dir}, After: []string{"echo after >>trace"}, Failure: []string{"echo failure >>trace"}, Notify: rec}
	var told error
	err := p.Around(context.Background(), func(ctx context.Context) (string, error) {
		return "job 1", errors.New("incomplete")
	}, func(ctx context.Context, workErr error) error {
		told = workErr
		f, _ := os.OpenFile(filepath.Join(dir, "trace"), os.O_APPEND|os.O_WRONLY, 0o644)
		f.WriteString("copy\n")
		f.Close()
		return errors.New("copy failed")
	})
	if err == nil || err.Error() != "incomplete" || told == nil || told.Error() != "incomplete" {
		t.Fatalf("error %v, later told %v", err, told)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "trace")); string(b) != "after\ncopy\nfailure\n" {
		t.Fatalf("trace %q", b)
	}
	// A later failure alone fails the backup.
	err = p.Around(context.Background(), func(ctx context.Context) (string, error) { return "", nil },
		func(ctx context.Context, _ error) error { return errors.New("copy failed") })
	if err == nil || err.Error() != "copy failed" || strings.Join(rec.events, " ") != "start failure start failure" {
		t.Fatalf("error %v, events %v", err, rec.events)
	}
}

func TestTimeoutStopsTheGroup(t *testing.T) {
	dir := t.TempDir()
	s := Shell{Dir: dir, Timeout: 300 * time.Millisecond}
	start := time.Now()
	// The shell's child ignores nothing, but only a group kill reaches it.
	err := s.Run(context.Background(), "sleep 30 & echo $! >child; wait")
	if err == nil || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	pid, _ := os.ReadFile(filepath.Join(dir, "child"))
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pid))); err == nil {
		if st, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat"); !bytes.Contains(st, []byte(") Z")) {
			t.Fatalf("the hook's child %s outlived it", pid)
		}
	}
}

func TestStream(t *testing.T) {
	tests := []struct {
		name, line, want, wantErr string
		readAll                   bool
	}{
		{"output and success", "printf 'a\\nb\\n'", "a\nb\n", "", true},
		{"a failing command fails after its output", "printf partial; exit 3", "partial", "failed: exit status 3", true},
		{"environment", "printf %s \"$RUNUP_PROJECT\"", "site", "", true},
		{"a reader that gives up stops the command", "yes", "", "not read to the end", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			s := Shell{Dir: t.TempDir(), Env: Env("RUNUP_PROJECT", "site"), Output: &stderr, Timeout: 10 * time.Second}
			st, err := s.Start(context.Background(), tt.line)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			if tt.readAll {
				got, _ = io.ReadAll(st)
			} else {
				got = make([]byte, 10)
				io.ReadFull(st, got)
				got = nil
			}
			start := time.Now()
			err = st.Close()
			if string(got) != tt.want {
				t.Errorf("output %q, want %q", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("close: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("close: %v, want %q", err, tt.wantErr)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("close took %v", d)
			}
		})
	}
}
