package browse

import (
	"context"
	"sync"
	"time"

	"github.com/runup/runup/internal/repo"
)

// JobSource is what a JobCache reads jobs from: a repository.
type JobSource interface {
	JobNumbers(ctx context.Context) ([]int, error)
	LoadJob(ctx context.Context, n int) (*repo.Job, error)
	RefreshIndex(ctx context.Context) (int, error)
}

// JobCache keeps a repository's jobs for a front end that lives long (a
// mount, the web UI): it lists job numbers at most every refresh interval
// and loads only records it has not seen, so new jobs appear within
// seconds and an idle front end reads almost nothing. Every record is read
// again each minute, as tags change a record.
type JobCache struct {
	src     JobSource
	refresh time.Duration
	// reload is how often every record is read again (tags change a
	// job's record).
	reload time.Duration

	mu     sync.Mutex
	jobs   map[int]*repo.Job
	listed time.Time
	loaded time.Time
	// OnProblem hears of records that could not be read and listings
	// that failed (the last list is kept).
	OnProblem func(error)
}

// NewJobCache returns a cache of src's jobs.
func NewJobCache(src JobSource, refresh time.Duration) *JobCache {
	return &JobCache{src: src, refresh: refresh, reload: time.Minute, jobs: map[int]*repo.Job{}}
}

// Get returns the jobs by number, refreshed if the list is older than the
// refresh interval. The map must not be modified.
func (l *JobCache) Get(ctx context.Context) (map[int]*repo.Job, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.listed) < l.refresh {
		return l.jobs, nil
	}
	nums, err := l.src.JobNumbers(ctx)
	if err != nil {
		if len(l.jobs) > 0 {
			l.report(err)
			return l.jobs, nil
		}
		return nil, err
	}
	full := now.Sub(l.loaded) >= l.reload
	next := make(map[int]*repo.Job, len(nums))
	added := false
	for _, n := range nums {
		if j, ok := l.jobs[n]; ok && !full {
			next[n] = j
			continue
		}
		j, err := l.src.LoadJob(ctx, n)
		if err != nil {
			l.report(err)
			if old, ok := l.jobs[n]; ok {
				next[n] = old
			}
			continue
		}
		if _, ok := l.jobs[n]; !ok {
			added = true
		}
		next[n] = j
	}
	if added && len(l.jobs) > 0 {
		// Their trees and chunks are in index files read since.
		if _, err := l.src.RefreshIndex(ctx); err != nil {
			l.report(err)
		}
	}
	l.jobs, l.listed = next, now
	if full {
		l.loaded = now
	}
	return l.jobs, nil
}

// Invalidate makes the next Get list and read every job again (after a
// forget or prune).
func (l *JobCache) Invalidate() {
	l.mu.Lock()
	l.listed, l.loaded = time.Time{}, time.Time{}
	l.mu.Unlock()
}

func (l *JobCache) report(err error) {
	if l.OnProblem != nil {
		l.OnProblem(err)
	}
}
