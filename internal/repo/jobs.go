package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// jobFiles is what jobs/ holds: for each number its newest record's file
// and revision, and the numbers forgotten.
type jobFiles struct {
	latest    map[int]jobFile
	all       map[int][]string
	forgotten map[int]bool
}

type jobFile struct {
	name string
	rev  int
}

// parseJobName reads "0000000042" (revision 0), "0000000042.r3" and
// "0000000042.forgotten".
func parseJobName(name string) (n, rev int, forgotten, ok bool) {
	base, suffix, hasSuffix := strings.Cut(name, ".")
	n, err := strconv.Atoi(base)
	if err != nil || n <= 0 || jobName(n) != base {
		return 0, 0, false, false
	}
	switch {
	case !hasSuffix:
		return n, 0, false, true
	case suffix == "forgotten":
		return n, 0, true, true
	case strings.HasPrefix(suffix, "r"):
		rev, err := strconv.Atoi(suffix[1:])
		if err != nil || rev <= 0 || fmt.Sprintf("r%d", rev) != suffix {
			return 0, 0, false, false
		}
		return n, rev, false, true
	}
	return 0, 0, false, false
}

func (r *Repository) listJobFiles(ctx context.Context) (*jobFiles, error) {
	jf := &jobFiles{latest: map[int]jobFile{}, all: map[int][]string{}, forgotten: map[int]bool{}}
	err := r.be.List(ctx, backend.Jobs, func(fi backend.FileInfo) error {
		n, rev, forgotten, ok := parseJobName(fi.Name)
		switch {
		case !ok:
		case forgotten:
			jf.forgotten[n] = true
		default:
			jf.all[n] = append(jf.all[n], fi.Name)
			if cur, seen := jf.latest[n]; !seen || rev > cur.rev {
				jf.latest[n] = jobFile{fi.Name, rev}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A forgotten job whose record removal was interrupted is gone all the same.
	for n := range jf.forgotten {
		delete(jf.latest, n)
	}
	return jf, nil
}

// JobNumbers lists the numbers of all jobs, ascending.
func (r *Repository) JobNumbers(ctx context.Context) ([]int, error) {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, err
	}
	nums := make([]int, 0, len(jf.latest))
	for n := range jf.latest {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

// JobForgotten reports whether job n was removed by forget, which leaves a
// tombstone so that its number is never reused nor taken for lost.
func (r *Repository) JobForgotten(ctx context.Context, n int) bool {
	_, err := r.be.Stat(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(n) + ".forgotten"})
	return err == nil
}

// ForgetJob removes a job: first its tombstone is written, then its records.
// Interrupted, the job is already gone for readers; a later forget or prune
// removes the leftover records.
func (r *Repository) ForgetJob(ctx context.Context, n int) error {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return err
	}
	if !jf.forgotten[n] {
		if err := r.save(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(n) + ".forgotten"}, r.key.Seal(nil, []byte(jobName(n)))); err != nil && !errors.Is(err, backend.ErrExists) {
			return fmt.Errorf("forget job %d: %w", n, err)
		}
	}
	for _, name := range jf.all[n] {
		if err := r.Remove(ctx, backend.Handle{Type: backend.Jobs, Name: name}); err != nil {
			return fmt.Errorf("forget job %d: %w", n, err)
		}
	}
	return nil
}

// UpdateJob writes a new revision of a job's record (for new tags), then
// removes the older revisions: records are never rewritten in place.
func (r *Repository) UpdateJob(ctx context.Context, j *Job) error {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return err
	}
	cur, ok := jf.latest[j.Number]
	if !ok {
		return fmt.Errorf("job %d: %w", j.Number, ErrNoJob)
	}
	j.TreeHex = j.Tree.String()
	plain, err := json.Marshal(j)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s.r%d", jobName(j.Number), cur.rev+1)
	if err := r.save(ctx, backend.Handle{Type: backend.Jobs, Name: name}, r.key.Seal(nil, plain)); err != nil {
		if errors.Is(err, backend.ErrExists) {
			return fmt.Errorf("job %d was changed by another process meanwhile; try again", j.Number)
		}
		return err
	}
	for _, old := range jf.all[j.Number] {
		if err := r.Remove(ctx, backend.Handle{Type: backend.Jobs, Name: old}); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoJob is returned for a job number that does not exist.
var ErrNoJob = errors.New("no such job")

// LoadJob reads and verifies a job record.
func (r *Repository) LoadJob(ctx context.Context, n int) (*Job, error) {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, err
	}
	f, ok := jf.latest[n]
	if !ok {
		return nil, fmt.Errorf("job %d: %w", n, ErrNoJob)
	}
	return r.loadJobFile(ctx, n, f.name)
}

func (r *Repository) loadJobFile(ctx context.Context, n int, name string) (*Job, error) {
	plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.Jobs, Name: name})
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
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	nums := make([]int, 0, len(jf.latest))
	for n := range jf.latest {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var (
		jobs     []*Job
		problems []error
	)
	for _, n := range nums {
		j, err := r.loadJobFile(ctx, n, jf.latest[n].name)
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
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return err
	}
	// Numbers are never reused: forgotten jobs count too.
	next := 1
	for n := range jf.all {
		next = max(next, n+1)
	}
	for n := range jf.forgotten {
		next = max(next, n+1)
	}
	j.TreeHex = j.Tree.String()
	for range 1000 {
		j.Number = next
		plain, err := json.Marshal(j)
		if err != nil {
			return err
		}
		err = r.save(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(next)}, r.key.Seal(nil, plain))
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

// CleanForgotten removes records of forgotten jobs that an interrupted
// forget left behind.
func (r *Repository) CleanForgotten(ctx context.Context) error {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return err
	}
	for n := range jf.forgotten {
		for _, name := range jf.all[n] {
			if err := r.Remove(ctx, backend.Handle{Type: backend.Jobs, Name: name}); err != nil {
				return err
			}
		}
	}
	return nil
}
