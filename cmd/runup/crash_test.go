//go:build unix

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runup/runup/internal/known"
)

// crashEnv is a project with one job, and a second job's worth of changes
// waiting: every crash is a crash of that second backup.
type crashEnv struct {
	dir   string
	base  string // repository after job 1, copied for every crash
	want1 map[string]entry
	want2 map[string]entry
	clean int64 // repository size after a crash-free second backup
}

func newCrashEnv(t *testing.T) *crashEnv {
	r := rand.New(rand.NewPCG(5, 5))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "sub"), 0o755)
	for i := range 30 {
		writeRandom(t, r, filepath.Join(data, "sub", fmt.Sprintf("small%d", i)), r.IntN(64<<10))
	}
	writeRandom(t, r, filepath.Join(data, "big1"), 20<<20)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	e := &crashEnv{dir: dir, base: filepath.Join(dir, "base")}
	runup(t, dir, 0, "--repo", e.base, "init")
	runup(t, dir, 0, "--repo", e.base, "backup")
	e.want1 = capture(t, data)
	// Job 2 adds ~40 MiB in several packs, changes and removes files.
	writeRandom(t, r, filepath.Join(data, "big2"), 24<<20)
	writeRandom(t, r, filepath.Join(data, "sub", "big3"), 16<<20)
	os.Remove(filepath.Join(data, "sub", "small3"))
	writeRandom(t, r, filepath.Join(data, "sub", "small4"), 1000)
	e.want2 = capture(t, data)
	clean := filepath.Join(dir, "clean")
	copyDir(t, e.base, clean)
	runup(t, dir, 0, "--repo", clean, "backup")
	e.clean = dirSize(t, clean)
	return e
}

// copyDir copies a repository over another location. The copy is a
// rollback this machine would notice (jobs it saw vanish), so it forgets
// what it knew of the location, as a user restoring an old copy would.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	os.RemoveAll(to)
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	abs, _ := filepath.Abs(to)
	if _, err := known.Open(os.Getenv("RUNUP_KNOWN_REPOSITORIES")).Forget(abs); err != nil {
		t.Fatal(err)
	}
}

// verify checks a repository after a crash: check --read-data passes, job 1
// restores exactly, the next backup completes and reuses what the crashed
// one wrote, and its job restores exactly.
func (e *crashEnv) verify(t *testing.T, repo, label string) {
	t.Helper()
	out := runup(t, e.dir, 0, "--repo", repo, "check", "--read-data")
	if !strings.Contains(out, "No problems found") {
		t.Fatalf("%s: check: %s", label, out)
	}
	r1 := filepath.Join(e.dir, "r1")
	os.RemoveAll(r1)
	runup(t, e.dir, 0, "--repo", repo, "restore", "-j", "1", "-l", r1, "-f")
	compareCapture(t, e.want1, capture(t, filepath.Join(r1, "data")), label+": job 1")
	runup(t, e.dir, 0, "--repo", repo, "backup")
	r2 := filepath.Join(e.dir, "r2")
	os.RemoveAll(r2)
	runup(t, e.dir, 0, "--repo", repo, "restore", "-l", r2, "-f")
	compareCapture(t, e.want2, capture(t, filepath.Join(r2, "data")), label+": after recovery")
	// Reuse: at most one pack more than a crash-free run (the pack being
	// written when the process died is written again).
	if size := dirSize(t, repo); size > e.clean+17<<20 {
		t.Fatalf("%s: repository is %d bytes, a crash-free one %d: packs were not reused", label, size, e.clean)
	}
	runup(t, e.dir, 0, "--repo", repo, "check")
}

func faultBin() string { return filepath.Join(binDir, "fault", "runup") }

// Kill the backup at every step of the commit order: before and after each
// file it writes (packs, index files, lock files, the job record).
func TestCrashAtEveryStep(t *testing.T) {
	slow(t)
	e := newCrashEnv(t)
	repo := filepath.Join(e.dir, "repo")
	steps := 0
	for _, action := range []string{"kill-before", "kill-after"} {
		for n := 1; ; n++ {
			copyDir(t, e.base, repo)
			cmd := exec.Command(faultBin(), "--repo", repo, "backup")
			cmd.Dir = e.dir
			cmd.Env = append(os.Environ(), fmt.Sprintf("RUNUP_FAULT=%s:%d", action, n))
			out, err := cmd.CombinedOutput()
			if err == nil {
				if n < 4 {
					t.Fatalf("%s:%d: backup finished: the fault never fired (%s)", action, n, out)
				}
				break // past the last write
			}
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("%s:%d: backup failed without being killed: %v\n%s", action, n, err, out)
			}
			e.verify(t, repo, fmt.Sprintf("%s:%d", action, n))
			steps++
		}
	}
	t.Logf("killed and recovered at %d steps", steps)
}

// Kill the backup with SIGKILL at random moments.
func TestCrashAtRandomTimes(t *testing.T) {
	slow(t)
	e := newCrashEnv(t)
	repo := filepath.Join(e.dir, "repo")
	// How long a backup takes here, to spread the kills over it.
	copyDir(t, e.base, repo)
	start := time.Now()
	runup(t, e.dir, 0, "--repo", repo, "backup")
	full := time.Since(start)
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 77))
		copyDir(t, e.base, repo)
		cmd := exec.Command(runupBin(), "--repo", repo, "backup")
		cmd.Dir = e.dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(r.Int64N(int64(full))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		e.verify(t, repo, fmt.Sprintf("seed %d", seed))
	}
}
