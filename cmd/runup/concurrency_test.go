//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A command that needs the exclusive lock fails with exit 11, naming the
// holder, while a backup runs; it succeeds once the backup is done or
// when it waits long enough.
func TestLockConflict(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(1, 1))
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	writeRandom(t, r, filepath.Join(dir, "data", "f"), 1<<20)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	runup(t, dir, 0, "init")
	// The backup pauses before its second write (its lock is the first).
	bk := exec.Command(faultBin(), "backup")
	bk.Dir = dir
	bk.Env = append(os.Environ(), "RUNUP_FAULT=pause-before:2")
	var bout bytes.Buffer
	bk.Stdout, bk.Stderr = &bout, &bout
	if err := bk.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd := exec.Command(runupBin(), "repair", "index")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 11 || !strings.Contains(string(out), fmt.Sprintf(`shared lock held by "backup" (pid %d`, bk.Process.Pid)) {
		t.Fatalf("exclusive command during a backup: exit %d\n%s", exitCode(err), out)
	}
	// With --lock-wait it waits for the backup to finish.
	runup(t, dir, 0, "--lock-wait", "30s", "repair", "index")
	if err := bk.Wait(); err != nil {
		t.Fatalf("backup: %v\n%s", err, bout.String())
	}
	runup(t, dir, 0, "check", "--read-data")
}

// Two backups of different projects into one repository at the same time:
// both succeed, get distinct job numbers, and share their common data.
func TestConcurrentBackups(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(2, 2))
	dir := t.TempDir()
	for _, p := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(dir, p), 0o755)
		writeRandom(t, r, filepath.Join(dir, p, "own"), 4<<20)
	}
	shared := make([]byte, 24<<20)
	for i := range shared {
		shared[i] = byte(r.Uint32())
	}
	os.WriteFile(filepath.Join(dir, "a", "shared"), shared, 0o644)
	os.WriteFile(filepath.Join(dir, "b", "shared"), shared, 0o644)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  a:\n    include: ['./a']\n  b:\n    include: ['./b']\n"), 0o644)
	runup(t, dir, 0, "init")
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i, p := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(runupBin(), "backup", p, "--host", "host-"+p)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("backup %s: %v\n%s", p, err, out)
			}
			outs[i] = string(out)
		}()
	}
	wg.Wait()
	if !(strings.Contains(outs[0], "job 1") && strings.Contains(outs[1], "job 2") ||
		strings.Contains(outs[0], "job 2") && strings.Contains(outs[1], "job 1")) {
		t.Fatalf("job numbers: %q %q", outs[0], outs[1])
	}
	// Two writers reading the same data at the same instant cannot see each
	// other's unindexed chunks, so the shared data may be stored twice
	// (prune removes the extra copy); never more than that.
	if size := dirSize(t, filepath.Join(dir, ".runup")); size > 2*int64(len(shared))+9<<20 {
		t.Fatalf("repository holds %d MiB for 32 MiB of data of which 24 MiB shared", size>>20)
	}
	// Once both are done, each sees all the other stored.
	os.WriteFile(filepath.Join(dir, "a", "copy-of-b"), shared, 0o644)
	out := runup(t, dir, 0, "backup", "a", "--host", "host-a", "--json")
	var jobs []struct {
		Summary struct {
			BytesRead  int64 `json:"bytes_read"`
			BytesAdded int64 `json:"bytes_added"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("backup --json: %v\n%s", err, out)
	}
	if s := jobs[0].Summary; s.BytesRead != int64(len(shared)) || s.BytesAdded > 8<<10 {
		t.Fatalf("data stored by the other writer was stored again: read %d, added %d", s.BytesRead, s.BytesAdded)
	}
	runup(t, dir, 0, "check", "--read-data")
	runup(t, dir, 0, "restore", "-l", "out", "-f")
	for _, p := range []string{"a", "b"} {
		if err := compareTrees(filepath.Join(dir, p), filepath.Join(dir, "out", p)); err != nil {
			t.Fatal(err)
		}
	}
}
