package browse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runup/runup/internal/repo"
)

// jobs is a JobSource in memory.
type jobs struct {
	mu        sync.Mutex
	records   map[int]*repo.Job
	lists     int
	loads     int
	refreshes int
	fail      bool
}

func (j *jobs) JobNumbers(ctx context.Context) ([]int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lists++
	if j.fail {
		return nil, errors.New("storage down")
	}
	var out []int
	for n := range j.records {
		out = append(out, n)
	}
	return out, nil
}

func (j *jobs) LoadJob(ctx context.Context, n int) (*repo.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.loads++
	r, ok := j.records[n]
	if !ok {
		return nil, fmt.Errorf("job %d: %w", n, repo.ErrNoJob)
	}
	return r, nil
}

func (j *jobs) RefreshIndex(ctx context.Context) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.refreshes++
	return 0, nil
}

func TestJobCache(t *testing.T) {
	src := &jobs{records: map[int]*repo.Job{1: {Number: 1, Project: "a"}, 2: {Number: 2, Project: "b"}}}
	l := NewJobCache(src, 50*time.Millisecond)
	ctx := context.Background()
	got, err := l.Get(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	l.Get(ctx) // within the refresh interval: nothing read
	if src.lists != 1 || src.loads != 2 {
		t.Fatalf("lists %d loads %d", src.lists, src.loads)
	}
	src.mu.Lock()
	src.records[3] = &repo.Job{Number: 3, Project: "a"}
	delete(src.records, 1)
	src.mu.Unlock()
	time.Sleep(60 * time.Millisecond)
	got, _ = l.Get(ctx)
	if len(got) != 2 || got[3] == nil || got[1] != nil {
		t.Fatalf("after a new job and a forget: %v", got)
	}
	if src.loads != 3 || src.refreshes != 1 {
		t.Fatalf("loads %d (only the new record), refreshes %d (the new job's index)", src.loads, src.refreshes)
	}
	// Storage that fails keeps the last list.
	src.fail = true
	time.Sleep(60 * time.Millisecond)
	var problems []error
	l.OnProblem = func(err error) { problems = append(problems, err) }
	if got, err := l.Get(ctx); err != nil || len(got) != 2 || len(problems) != 1 {
		t.Fatalf("with storage down: %v %v %v", got, err, problems)
	}
}
