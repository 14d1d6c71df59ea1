package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/crypto"
)

// Job is the record of one backup of one project. It is written last, so a
// job that can be listed is complete and durable.
type Job struct {
	Number   int       `json:"number"`
	Project  string    `json:"project"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host"`
	Username string    `json:"username,omitempty"`
	Base     string    `json:"base"` // the directory the tree's root stood for
	// InContext says Base was the config's directory: an in-place restore
	// goes to the context of the day, wherever the project has moved.
	InContext  bool      `json:"in_context,omitempty"`
	Paths      []string  `json:"paths"`
	Tree       crypto.ID `json:"-"`
	TreeHex    string    `json:"tree"`
	Tags       []string  `json:"tags,omitempty"`
	Parent     int       `json:"parent,omitempty"`
	Incomplete bool      `json:"incomplete,omitempty"`
	Program    string    `json:"program,omitempty"`
	Summary    Summary   `json:"summary"`
}

// Summary holds a backup's figures.
type Summary struct {
	FilesNew       int     `json:"files_new"`
	FilesChanged   int     `json:"files_changed"`
	FilesUnchanged int     `json:"files_unchanged"`
	Dirs           int     `json:"dirs"`
	Others         int     `json:"others"`
	Errors         int     `json:"errors"`
	BytesTotal     int64   `json:"bytes_total"` // size of all files in the job
	BytesRead      int64   `json:"bytes_read"`
	BytesAdded     int64   `json:"bytes_added"` // stored after dedup, compression and sealing
	BlobsAdded     int     `json:"blobs_added"`
	Seconds        float64 `json:"seconds"`
}

func jobName(n int) string { return fmt.Sprintf("%010d", n) }

// JobForgotten reports whether job n was removed by forget, which leaves a
// tombstone so that its number is never reused nor taken for lost.
func (r *Repository) JobForgotten(ctx context.Context, n int) bool {
	_, err := r.be.Stat(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(n) + tombstoneSuffix})
	return err == nil
}

const tombstoneSuffix = ".forgotten"

// ErrNoJob is returned for a job number that does not exist.
var ErrNoJob = errors.New("no such job")

// JobNumbers lists the numbers of all jobs, ascending.
func (r *Repository) JobNumbers(ctx context.Context) ([]int, error) {
	var nums []int
	err := r.be.List(ctx, backend.Jobs, func(fi backend.FileInfo) error {
		if n, err := strconv.Atoi(fi.Name); err == nil && n > 0 && jobName(n) == fi.Name {
			nums = append(nums, n)
		}
		return nil
	})
	slices.Sort(nums)
	return nums, err
}

// LoadJob reads and verifies a job record.
func (r *Repository) LoadJob(ctx context.Context, n int) (*Job, error) {
	plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(n)})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("job %d: %w", n, ErrNoJob)
		}
		return nil, fmt.Errorf("job %d: %w", n, err)
	}
	return decodeJob(plain, n)
}

// decodeJob parses a job record's plaintext; n is the number its file name
// gives, which the record must repeat.
func decodeJob(plain []byte, n int) (*Job, error) {
	var j Job
	if err := json.Unmarshal(plain, &j); err != nil {
		return nil, fmt.Errorf("%w: job %d: %v", ErrDamaged, n, err)
	}
	var err error
	if j.Tree, err = crypto.ParseID(j.TreeHex); err != nil || j.Number != n {
		return nil, fmt.Errorf("%w: job %d: bad record", ErrDamaged, n)
	}
	return &j, nil
}

// Jobs loads every job record. Damaged records are returned as problems,
// not failures, so that one bad file does not hide the others.
func (r *Repository) Jobs(ctx context.Context) ([]*Job, []error, error) {
	nums, err := r.JobNumbers(ctx)
	if err != nil {
		return nil, nil, err
	}
	var (
		jobs     []*Job
		problems []error
	)
	for _, n := range nums {
		j, err := r.LoadJob(ctx, n)
		if err != nil {
			if errors.Is(err, ErrNoJob) {
				continue // forgotten meanwhile
			}
			problems = append(problems, err)
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs, problems, nil
}

// SaveJob gives the job the next free number and writes it. Numbers are
// claimed by creating the file, which fails if another writer got there
// first; then the next number is tried. All blobs must be flushed first.
func (r *Repository) SaveJob(ctx context.Context, j *Job) error {
	nums, err := r.JobNumbers(ctx)
	if err != nil {
		return err
	}
	next := 1
	if len(nums) > 0 {
		next = nums[len(nums)-1] + 1
	}
	j.TreeHex = j.Tree.String()
	for range 1000 {
		j.Number = next
		plain, err := json.Marshal(j)
		if err != nil {
			return err
		}
		err = r.be.Save(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(next)}, r.key.Seal(nil, plain))
		if err == nil {
			return nil
		}
		if !errors.Is(err, backend.ErrExists) {
			return fmt.Errorf("write job: %w", err)
		}
		next++
	}
	return errors.New("write job: could not claim a job number")
}
