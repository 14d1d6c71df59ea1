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
	// Revision repeats the record's file revision (tags written later), so
	// that an old revision copied under a newer name is refused.
	Revision int     `json:"revision,omitempty"`
	Program  string  `json:"program,omitempty"`
	Summary  Summary `json:"summary"`
	// Origin is set on a job copied from another repository.
	Origin *Origin `json:"origin,omitempty"`
}

// Origin names where a copied job was first made: that repository's ID and
// the job's number there. A copy of a copy keeps the first origin, so that
// a job reaches a target once, whatever way it took.
type Origin struct {
	Repository string `json:"repository"`
	Job        int    `json:"job"`
}

// OriginIn is the job's identity across repositories: its Origin, or, for a
// job made in the repository with ID repoID, that ID and its number.
func (j *Job) OriginIn(repoID string) Origin {
	if j.Origin != nil {
		return *j.Origin
	}
	return Origin{Repository: repoID, Job: j.Number}
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

// jobFiles is what jobs/ holds: for each number its record files, newest
// revision first, the numbers forgotten (with a tombstone that verified),
// and the tombstones that did not verify.
type jobFiles struct {
	records   map[int][]jobFile
	forgotten map[int]bool
	forged    []error
	highest   int // over every job file name, for numbering
}

type jobFile struct {
	name string
	rev  int
}

// live lists the numbers of jobs that have a record and no tombstone.
func (jf *jobFiles) live() []int {
	nums := make([]int, 0, len(jf.records))
	for n := range jf.records {
		if !jf.forgotten[n] {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	return nums
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

// maxJobFile bounds a job record or tombstone.
const maxJobFile = 16 << 20

// tombstone verifies a tombstone: sealed with the repository's key and
// naming its own job. A file of the right name is not enough: anyone who
// can write the storage could hide jobs, and the next prune would delete
// their data.
func (r *Repository) tombstone(ctx context.Context, n int) error {
	name := jobName(n) + ".forgotten"
	r.jobsMu.Lock()
	ok := r.tombstones[name]
	r.jobsMu.Unlock()
	if ok {
		return nil
	}
	sealed, err := backend.LoadAtMost(ctx, r.be, backend.Handle{Type: backend.Jobs, Name: name}, 4096)
	if err != nil {
		return err
	}
	plain, err := r.key.Open(nil, sealed)
	if err != nil || string(plain) != jobName(n) {
		return fmt.Errorf("tombstone of job %d: %w: forged or damaged (not sealed with the repository's key for this job)", n, ErrDamaged)
	}
	r.jobsMu.Lock()
	r.tombstones[name] = true
	r.jobsMu.Unlock()
	return nil
}

func (r *Repository) listJobFiles(ctx context.Context) (*jobFiles, error) {
	jf := &jobFiles{records: map[int][]jobFile{}, forgotten: map[int]bool{}}
	var stones []int
	err := r.be.List(ctx, backend.Jobs, func(fi backend.FileInfo) error {
		n, rev, forgotten, ok := parseJobName(fi.Name)
		if !ok {
			jf.forged = append(jf.forged, fmt.Errorf("jobs/%s: %w: not a job record or tombstone (an unknown file)", fi.Name, ErrDamaged))
			return nil
		}
		jf.highest = max(jf.highest, n)
		if forgotten {
			stones = append(stones, n)
		} else {
			jf.records[n] = append(jf.records[n], jobFile{fi.Name, rev})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, files := range jf.records {
		slices.SortFunc(files, func(a, b jobFile) int { return b.rev - a.rev })
	}
	for _, n := range stones {
		err := r.tombstone(ctx, n)
		switch {
		case err == nil:
			jf.forgotten[n] = true
		case errors.Is(err, backend.ErrNotExist):
		case errors.Is(err, ErrDamaged) || errors.Is(err, backend.ErrTooLarge):
			jf.forged = append(jf.forged, err)
		default:
			return nil, err
		}
	}
	r.noteJob(jf.highest)
	return jf, nil
}

// noteJob records the highest job number seen, for the caller to remember.
func (r *Repository) noteJob(n int) {
	r.jobsMu.Lock()
	r.highestJob = max(r.highestJob, n)
	r.jobsMu.Unlock()
}

// HighestJob is the highest job number this process has seen in the
// repository (records and tombstones alike). A machine that remembers it
// notices jobs that vanished without a tombstone.
func (r *Repository) HighestJob() int {
	r.jobsMu.Lock()
	defer r.jobsMu.Unlock()
	return r.highestJob
}

// JobNumbers lists the numbers of all jobs, ascending.
func (r *Repository) JobNumbers(ctx context.Context) ([]int, error) {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, err
	}
	return jf.live(), nil
}

// MissingJobs lists the job numbers up to the highest seen (including
// Options.HighestJob, what this machine remembers) that have neither a
// record nor a verified tombstone: job records deleted or lost. Numbers are never
// reused and only forget removes jobs, leaving a tombstone, so each is
// damage; deleting data on such knowledge could lose the missing jobs'.
// Forged tombstones and unknown files in jobs/ are returned as problems.
func (r *Repository) MissingJobs(ctx context.Context) (missing []int, forged []error, err error) {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	for n := 1; n <= r.HighestJob(); n++ {
		if len(jf.records[n]) == 0 && !jf.forgotten[n] {
			missing = append(missing, n)
		}
	}
	return missing, jf.forged, nil
}

// ForgetJob removes a job: first its tombstone is written, then its records.
// Interrupted, the job is already gone for readers; a later forget or prune
// removes the leftover records. A job whose record is already missing can
// be forgotten too, which tells check and prune that it is gone on purpose.
func (r *Repository) ForgetJob(ctx context.Context, n int) error {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return err
	}
	if !jf.forgotten[n] {
		h := backend.Handle{Type: backend.Jobs, Name: jobName(n) + ".forgotten"}
		err := r.save(ctx, h, r.key.Seal(nil, []byte(jobName(n))))
		if errors.Is(err, backend.ErrExists) {
			// A forged tombstone is in the way: replace it with a real one.
			if err = r.Remove(ctx, h); err == nil {
				err = r.save(ctx, h, r.key.Seal(nil, []byte(jobName(n))))
			}
		}
		if err != nil {
			return fmt.Errorf("forget job %d: %w", n, err)
		}
	}
	for _, f := range jf.records[n] {
		if err := r.Remove(ctx, backend.Handle{Type: backend.Jobs, Name: f.name}); err != nil {
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
	files := jf.records[j.Number]
	if len(files) == 0 || jf.forgotten[j.Number] {
		return fmt.Errorf("job %d: %w", j.Number, ErrNoJob)
	}
	j.Revision = files[0].rev + 1
	j.TreeHex = j.Tree.String()
	plain, err := json.Marshal(j)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s.r%d", jobName(j.Number), j.Revision)
	if err := r.save(ctx, backend.Handle{Type: backend.Jobs, Name: name}, r.key.Seal(nil, plain)); err != nil {
		if errors.Is(err, backend.ErrExists) {
			return fmt.Errorf("job %d was changed by another process meanwhile; try again", j.Number)
		}
		return err
	}
	for _, old := range files {
		if err := r.Remove(ctx, backend.Handle{Type: backend.Jobs, Name: old.name}); err != nil {
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
	if jf.forgotten[n] || len(jf.records[n]) == 0 {
		return nil, fmt.Errorf("job %d: %w", n, ErrNoJob)
	}
	j, _, err := r.loadNewest(ctx, n, jf.records[n])
	return j, err
}

// LoadJobRevisions is LoadJob for check: it also returns the newer
// revisions of the record that failed to verify.
func (r *Repository) LoadJobRevisions(ctx context.Context, n int) (*Job, []error, error) {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	if jf.forgotten[n] || len(jf.records[n]) == 0 {
		return nil, nil, fmt.Errorf("job %d: %w", n, ErrNoJob)
	}
	return r.loadNewest(ctx, n, jf.records[n])
}

// loadNewest reads the newest revision of a job that verifies. Revisions
// that do not are returned as problems: a damaged or forged newest
// revision must not hide the job.
func (r *Repository) loadNewest(ctx context.Context, n int, files []jobFile) (*Job, []error, error) {
	var problems []error
	for _, f := range files {
		j, err := r.loadJobFile(ctx, n, f)
		if err == nil {
			return j, problems, nil
		}
		if !errors.Is(err, ErrDamaged) {
			return nil, problems, err
		}
		problems = append(problems, err)
	}
	return nil, problems, problems[0]
}

func (r *Repository) loadJobFile(ctx context.Context, n int, f jobFile) (*Job, error) {
	h := backend.Handle{Type: backend.Jobs, Name: f.name}
	sealed, err := backend.LoadAtMost(ctx, r.be, h, maxJobFile)
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("job %d: %w", n, ErrNoJob)
		}
		if errors.Is(err, backend.ErrTooLarge) {
			return nil, fmt.Errorf("job %d: %w: %v", n, ErrDamaged, err)
		}
		return nil, fmt.Errorf("job %d: %w", n, err)
	}
	plain, err := r.key.Open(nil, sealed)
	if err != nil {
		return nil, fmt.Errorf("job %d: %w: %v: %v", n, ErrDamaged, h, err)
	}
	j, err := decodeJob(plain, n)
	if err != nil {
		return nil, err
	}
	if j.Revision != 0 && j.Revision != f.rev {
		return nil, fmt.Errorf("job %d: %w: %v holds revision %d", n, ErrDamaged, h, j.Revision)
	}
	return j, nil
}

// decodeJob parses a job record's plaintext; n is the number its file name
// gives, which the record must repeat.
func decodeJob(plain []byte, n int) (*Job, error) {
	var j Job
	if err := json.Unmarshal(plain, &j); err != nil {
		return nil, fmt.Errorf("job %d: %w: %v", n, ErrDamaged, err)
	}
	var err error
	if j.Tree, err = crypto.ParseID(j.TreeHex); err != nil || j.Number != n {
		return nil, fmt.Errorf("job %d: %w: bad record", n, ErrDamaged)
	}
	return &j, nil
}

// Jobs loads every job record. Damaged records and forged tombstones are
// returned as problems, not failures, so that one bad file does not hide
// the others.
func (r *Repository) Jobs(ctx context.Context) ([]*Job, []error, error) {
	jf, err := r.listJobFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	var jobs []*Job
	problems := slices.Clone(jf.forged)
	for _, n := range jf.live() {
		j, probs, err := r.loadNewest(ctx, n, jf.records[n])
		problems = append(problems, probs...)
		if err != nil {
			if errors.Is(err, ErrNoJob) {
				continue // forgotten meanwhile
			}
			if !errors.Is(err, ErrDamaged) {
				return nil, nil, err
			}
			continue // its problems are reported
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
	// Everything the job references was written under our lock: make sure
	// it is still ours before the job makes others depend on it.
	if err := r.guard.verify(ctx); err != nil {
		return fmt.Errorf("write job: %w", err)
	}
	// Numbers are never reused: forgotten jobs count too, and so do jobs
	// this machine saw that have vanished since.
	next := max(jf.highest, r.HighestJob()) + 1
	j.TreeHex = j.Tree.String()
	j.Revision = 0
	for range 1000 {
		j.Number = next
		plain, err := json.Marshal(j)
		if err != nil {
			return err
		}
		err = r.save(ctx, backend.Handle{Type: backend.Jobs, Name: jobName(next)}, r.key.Seal(nil, plain))
		if err == nil {
			r.noteJob(next)
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
		for _, f := range jf.records[n] {
			if err := r.Remove(ctx, backend.Handle{Type: backend.Jobs, Name: f.name}); err != nil {
				return err
			}
		}
	}
	return nil
}
