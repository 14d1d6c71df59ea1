//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

type jobJSON struct {
	Number int       `json:"number"`
	Time   time.Time `json:"time"`
}

func listJobs(t *testing.T, dir string) []jobJSON {
	t.Helper()
	var jobs []jobJSON
	if err := json.Unmarshal([]byte(runup(t, dir, 0, "jobs", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	return jobs
}

// A year of daily jobs with keep daily 7 / weekly 4 / monthly 12 from
// runup.yaml keeps exactly the expected jobs; after prune every kept job
// restores exactly, and find and diff agree with the trees.
func TestYearOfDailyJobs(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte(`version: '2'
project:
  p:
    include: ['./data']
    keep: {daily: 7, weekly: 4, monthly: 12}
`), 0o644)
	runup(t, dir, 0, "init")
	start := time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC)
	content := func(d int) string { return fmt.Sprintf("day %d\n", d) }
	for d := range 365 {
		day := start.AddDate(0, 0, d)
		os.WriteFile(filepath.Join(dir, "data", "today.txt"), []byte(content(d)), 0o644)
		if d%30 == 0 {
			os.WriteFile(filepath.Join(dir, "data", fmt.Sprintf("month-%02d.txt", d/30)), []byte("m"), 0o644)
		}
		runup(t, dir, 0, "backup", "-q", "--time", day.Format(time.RFC3339))
	}
	out := runup(t, dir, 0, "forget", "--dry-run")
	if !strings.Contains(out, "(daily, weekly, monthly)") {
		t.Fatalf("dry run does not say which rules keep the newest job:\n%s", out)
	}
	if n := len(listJobs(t, dir)); n != 365 {
		t.Fatalf("dry run removed jobs: %d left", n)
	}
	runup(t, dir, 0, "forget", "--prune")
	want := map[string]bool{}
	for d := 25; d <= 31; d++ {
		want[fmt.Sprintf("2025-12-%02d", d)] = true
	}
	for _, d := range []string{"2025-12-14", "2025-12-21", "2025-12-28"} {
		want[d] = true
	}
	for m := time.January; m <= time.December; m++ {
		want[time.Date(2025, m+1, 0, 0, 0, 0, 0, time.UTC).Format("2006-01-02")] = true
	}
	jobs := listJobs(t, dir)
	var got []string
	for _, j := range jobs {
		got = append(got, j.Time.UTC().Format("2006-01-02"))
	}
	var wantList []string
	for d := range want {
		wantList = append(wantList, d)
	}
	slices.Sort(got)
	slices.Sort(wantList)
	if !slices.Equal(got, wantList) {
		t.Fatalf("kept %v\nwant %v", got, wantList)
	}
	runup(t, dir, 0, "check", "--read-data")
	for _, j := range jobs {
		d := int(j.Time.Sub(start).Hours() / 24)
		b := runup(t, dir, 0, "dump", fmt.Sprint(j.Number), "data/today.txt")
		if b != content(d) {
			t.Fatalf("job %d (day %d) holds %q", j.Number, d, b)
		}
	}
	last := jobs[len(jobs)-1]
	dst := t.TempDir()
	runup(t, dir, 0, "restore", "-j", fmt.Sprint(last.Number), "-l", dst, "-f")
	if err := compareTrees(filepath.Join(dir, "data"), filepath.Join(dst, "data")); err != nil {
		t.Fatal(err)
	}
	// find and diff agree with the trees: month-11 appeared on day 330.
	found := runup(t, dir, 0, "find", "month-11.txt")
	for _, j := range jobs {
		has := j.Time.After(start.AddDate(0, 0, 329))
		if strings.Contains(found, fmt.Sprintf("job %d ", j.Number)) != has {
			t.Errorf("find month-11.txt and job %d (%s) disagree:\n%s", j.Number, j.Time, found)
		}
	}
	diff := runup(t, dir, 0, "diff", fmt.Sprint(jobs[0].Number), fmt.Sprint(last.Number))
	if !strings.Contains(diff, "+ data/month-11.txt") || !strings.Contains(diff, "M data/today.txt (content)") {
		t.Errorf("diff of first and last kept job:\n%s", diff)
	}
}

// After forgetting all but the last job and pruning, the repository is at
// most 5% larger than a fresh repository holding only that job.
func TestPruneReclaims(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(4, 4))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	runup(t, dir, 0, "init")
	for i := range 40 {
		writeRandom(t, r, filepath.Join(data, fmt.Sprintf("f%d", i)), r.IntN(1<<20))
	}
	for round := range 5 {
		for i := range 40 {
			if r.IntN(3) == 0 {
				writeRandom(t, r, filepath.Join(data, fmt.Sprintf("f%d", i)), r.IntN(1<<20))
			}
		}
		writeRandom(t, r, filepath.Join(data, fmt.Sprintf("big%d", round)), 5<<20)
		os.Remove(filepath.Join(data, fmt.Sprintf("big%d", round-1)))
		runup(t, dir, 0, "backup")
	}
	before := dirSize(t, filepath.Join(dir, ".runup"))
	runup(t, dir, 0, "forget", "--keep-last", "1", "--prune")
	after := dirSize(t, filepath.Join(dir, ".runup"))
	fresh := filepath.Join(t.TempDir(), "fresh")
	runup(t, dir, 0, "--repo", fresh, "init")
	runup(t, dir, 0, "--repo", fresh, "backup", "p")
	freshSize := dirSize(t, fresh)
	t.Logf("before %d, after prune %d, fresh %d (%.2f×)", before, after, freshSize, float64(after)/float64(freshSize))
	if float64(after) > 1.05*float64(freshSize) {
		t.Fatalf("pruned repository is %d bytes, a fresh one %d: more than 5%% larger", after, freshSize)
	}
	runup(t, dir, 0, "check", "--read-data")
	dst := t.TempDir()
	runup(t, dir, 0, "restore", "-l", dst, "-f")
	if err := compareTrees(data, filepath.Join(dst, "data")); err != nil {
		t.Fatal(err)
	}
}

// Kill forget --prune at every step: every kept job still restores, check
// passes, and a later prune finishes the work.
func TestPruneCrashAtEveryStep(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(6, 6))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	base := filepath.Join(dir, "base")
	runup(t, dir, 0, "--repo", base, "init")
	for round := range 3 {
		for i := range 8 {
			writeRandom(t, r, filepath.Join(data, fmt.Sprintf("f%d", i)), 1+r.IntN(3<<20))
		}
		runup(t, dir, 0, "--repo", base, "backup", "--time", time.Date(2026, 1, 1+round, 0, 0, 0, 0, time.UTC).Format(time.RFC3339))
	}
	want := capture(t, data)
	repo := filepath.Join(dir, "repo")
	steps := 0
	for _, action := range []string{"kill-before", "kill-after"} {
		for n := 1; ; n++ {
			copyDir(t, base, repo)
			cmd := exec.Command(faultBin(), "--repo", repo, "forget", "--keep-last", "1", "--prune", "--max-unused", "0%")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), fmt.Sprintf("RUNUP_FAULT=%s:%d", action, n))
			out, err := cmd.CombinedOutput()
			if err == nil {
				if n < 4 {
					t.Fatalf("%s:%d: prune finished: the fault never fired (%s)", action, n, out)
				}
				break
			}
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("%s:%d: failed without being killed: %v\n%s", action, n, err, out)
			}
			label := fmt.Sprintf("%s:%d", action, n)
			if out := runup(t, dir, 0, "--repo", repo, "check", "--read-data"); !strings.Contains(out, "No problems found") {
				t.Fatalf("%s: check: %s", label, out)
			}
			dst := filepath.Join(t.TempDir(), "out")
			runup(t, dir, 0, "--repo", repo, "restore", "p", "-l", dst, "-f")
			compareCapture(t, want, capture(t, filepath.Join(dst, "data")), label)
			runup(t, dir, 0, "--repo", repo, "forget", "--keep-last", "1", "--prune", "--max-unused", "0%")
			runup(t, dir, 0, "--repo", repo, "check", "--read-data")
			if jobs := runup(t, dir, 0, "--repo", repo, "jobs", "--json"); strings.Count(jobs, `"number"`) != 1 {
				t.Fatalf("%s: after finishing, jobs: %s", label, jobs)
			}
			steps++
		}
	}
	t.Logf("killed and recovered at %d steps", steps)
}
