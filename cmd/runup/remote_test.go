//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/runup/runup/internal/testservers"
)

// remote is a repository location on a real server, with the environment a
// client needs (credentials, HOME with SSH keys) and a way to cut it off.
type remote struct {
	url          func(name string) string
	env          []string
	stop, start  func()
	freeze, thaw func()
}

func remotes(t *testing.T) map[string]remote {
	s3 := testservers.StartS3(t)
	sshd := testservers.StartSSHD(t)
	base := t.TempDir()
	return map[string]remote{
		"s3": {url: func(name string) string { return s3.URL("runup", name) }, env: s3.Env(), stop: s3.Stop, start: s3.Start,
			freeze: s3.Freeze, thaw: s3.Thaw},
		"sftp": {url: func(name string) string { return sshd.URL(filepath.Join(base, name)) },
			env: []string{"HOME=" + sshd.Home, "SSH_AUTH_SOCK="}, stop: sshd.Stop, start: sshd.Start,
			freeze: sshd.Freeze, thaw: sshd.Thaw},
	}
}

// runIn runs a binary in dir with extra environment and checks its exit code.
func runIn(t *testing.T, bin, dir string, env []string, want int, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if got := exitCode(err); got != want {
		t.Fatalf("runup %s: exit %d, want %d\n%s", strings.Join(args, " "), got, want, out.String())
	}
	return out.String()
}

func TestRemoteRepositories(t *testing.T) {
	slow(t)
	for kind, rm := range remotes(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel() // each kind has its own server, folders and repository
			r := rand.New(rand.NewPCG(8, 8))
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			os.MkdirAll(filepath.Join(data, "sub"), 0o755)
			for i := range 12 {
				writeRandom(t, r, filepath.Join(data, "sub", fmt.Sprintf("f%d", i)), r.IntN(2<<20))
			}
			writeRandom(t, r, filepath.Join(data, "big"), 20<<20)
			os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
			env := append(rm.env, "RUNUP_PASSWORD=remote secret")
			loc := rm.url("repo")
			run := func(want int, args ...string) string {
				t.Helper()
				return runIn(t, runupBin(), dir, env, want, append([]string{"--repo", loc}, args...)...)
			}

			// Data leaves the machine encrypted unless the user says otherwise.
			out := runIn(t, runupBin(), dir, rm.env, 12, "--repo", rm.url("plain"), "init")
			if !strings.Contains(out, "--no-encryption") {
				t.Fatalf("unencrypted remote init: %s", out)
			}
			runIn(t, runupBin(), dir, rm.env, 0, "--repo", rm.url("plain"), "init", "--no-encryption")

			run(0, "init")
			run(0, "backup")
			want1 := capture(t, data)
			writeRandom(t, r, filepath.Join(data, "sub", "f3"), 3<<20)
			os.Rename(filepath.Join(data, "sub", "f4"), filepath.Join(data, "f4-moved"))
			run(0, "backup")
			want2 := capture(t, data)
			if out := run(0, "check", "--read-data"); !strings.Contains(out, "No problems found") {
				t.Fatal(out)
			}
			for job, want := range map[string]map[string]entry{"1": want1, "2": want2} {
				dst := t.TempDir()
				run(0, "restore", "-j", job, "-l", dst, "-f")
				compareCapture(t, want, capture(t, filepath.Join(dst, "data")), kind+" job "+job)
			}
			run(0, "forget", "--keep-last", "1", "--prune")
			run(0, "check", "--read-data")
			dst := t.TempDir()
			run(0, "restore", "-l", dst, "-f")
			compareCapture(t, want2, capture(t, filepath.Join(dst, "data")), kind+" after prune")

			// The crash test of the trust issue, against the server: kill at
			// every step of a backup's commit order.
			writeRandom(t, r, filepath.Join(data, "new"), 18<<20)
			want3 := capture(t, data)
			for n := 1; ; n++ {
				cmd := exec.Command(faultBin(), "--repo", loc, "backup")
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), append(env, fmt.Sprintf("RUNUP_FAULT=kill-after:%d", n))...)
				if out, err := cmd.CombinedOutput(); err == nil {
					if n < 3 {
						t.Fatalf("the fault never fired: %s", out)
					}
					break
				}
				if out := run(0, "check", "--read-data"); !strings.Contains(out, "No problems found") {
					t.Fatalf("after a kill at step %d: %s", n, out)
				}
			}
			dst = t.TempDir()
			run(0, "restore", "-l", dst, "-f")
			compareCapture(t, want3, capture(t, filepath.Join(dst, "data")), kind+" after crashes")

			// The server goes away in the middle of a backup: a clear error,
			// a valid repository, and a rerun completes once it is back.
			writeRandom(t, r, filepath.Join(data, "during-outage"), 20<<20)
			want4 := capture(t, data)
			cmd := exec.Command(faultBin(), "--repo", loc, "backup")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), append(env, "RUNUP_FAULT=pause-before:3")...)
			var bout bytes.Buffer
			cmd.Stdout, cmd.Stderr = &bout, &bout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(800 * time.Millisecond)
			rm.stop()
			err := cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); exitCode(err) != 1 || ok && ws.Signaled() {
				t.Fatalf("backup during an outage: exit %d\n%s", exitCode(err), bout.String())
			}
			if lines := strings.Count(strings.TrimSpace(bout.String()), "\n"); lines > 2 {
				t.Errorf("the outage is not reported in a line or two:\n%s", bout.String())
			}
			rm.start()
			run(0, "check", "--read-data")
			run(0, "backup")
			dst = t.TempDir()
			run(0, "restore", "-l", dst, "-f")
			compareCapture(t, want4, capture(t, filepath.Join(dst, "data")), kind+" after the outage")
		})
	}
}

// The metadata of a remote repository is cached: listing and browsing jobs
// and an incremental backup do not download it again, and a damaged cache
// file is noticed and fetched again.
func TestRemoteCache(t *testing.T) {
	slow(t)
	s3 := testservers.StartS3(t)
	r := rand.New(rand.NewPCG(9, 1))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "a", "b"), 0o755)
	for i := range 30 {
		writeRandom(t, r, filepath.Join(data, "a", "b", fmt.Sprintf("f%d", i)), r.IntN(100<<10))
	}
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	cacheDir := t.TempDir()
	env := append(s3.Env(), "RUNUP_PASSWORD=pw")
	loc := s3.URL("cached", "repo")
	run := func(args ...string) string {
		t.Helper()
		return runIn(t, runupBin(), dir, env, 0, append([]string{"--repo", loc, "--cache-dir", cacheDir, "--verbose"}, args...)...)
	}
	misses := func(out string) int {
		t.Helper()
		var h, m int
		i := strings.LastIndex(out, "cache: ")
		if i < 0 {
			t.Fatalf("no cache report in:\n%s", out)
		}
		fmt.Sscanf(out[i:], "cache: %d hits, %d misses", &h, &m)
		return m
	}
	run("init")
	run("backup")
	writeRandom(t, r, filepath.Join(data, "a", "new"), 1000)
	run("backup")
	run("jobs") // fills the cache with what the backups did not write themselves
	for _, args := range [][]string{{"jobs"}, {"ls", "latest", "data/a/b"}, {"diff", "1", "2"}} {
		if m := misses(run(args...)); m != 0 {
			t.Errorf("%v downloaded %d metadata files again", args, m)
		}
	}
	run("ls", "1", "-r")
	os.WriteFile(filepath.Join(data, "a", "newer"), []byte("x"), 0o644)
	if m := misses(run("backup")); m != 0 {
		t.Errorf("an incremental backup downloaded %d metadata files again", m)
	}
	// Damage every cached file: each is fetched again, and the results stay right.
	n := 0
	filepath.Walk(cacheDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && !strings.HasSuffix(p, "config.sum") {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
			n++
		}
		return nil
	})
	out := run("ls", "latest", "data/a", "-r")
	if misses(out) == 0 || !strings.Contains(out, "data/a/newer") {
		t.Errorf("damaged cache (%d files): %s", n, out)
	}
	dst := t.TempDir()
	run("restore", "-l", dst, "-f")
	if err := compareTrees(data, filepath.Join(dst, "data")); err != nil {
		t.Fatal(err)
	}
}

// Two hosts back up into one S3 repository at the same time: both jobs
// restore exactly, and their common data ends up stored once (at once when
// one has indexed it before the other reads it; after prune otherwise).
func TestConcurrentS3Backups(t *testing.T) {
	slow(t)
	s3 := testservers.StartS3(t)
	r := rand.New(rand.NewPCG(12, 12))
	shared := make([]byte, 20<<20)
	for i := range shared {
		shared[i] = byte(r.Uint32())
	}
	var dirs []string
	for _, h := range []string{"alpha", "beta"} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "data"), 0o755)
		writeRandom(t, r, filepath.Join(dir, "data", "own-"+h), 6<<20)
		os.WriteFile(filepath.Join(dir, "data", "shared"), shared, 0o644)
		os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
		dirs = append(dirs, dir)
	}
	loc := s3.URL("shared", "repo")
	env := append(s3.Env(), "RUNUP_PASSWORD=pw")
	runIn(t, runupBin(), dirs[0], env, 0, "--repo", loc, "init")
	errs := make(chan error, 2)
	for i, h := range []string{"alpha", "beta"} {
		go func() {
			cmd := exec.Command(runupBin(), "--repo", loc, "--no-cache", "backup", "--host", h)
			cmd.Dir = dirs[i]
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%s: %v\n%s", h, err, out)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	out := runIn(t, runupBin(), dirs[0], env, 0, "--repo", loc, "jobs")
	if !strings.Contains(out, "alpha") || !strings.Contains(out, "beta") {
		t.Fatalf("jobs: %s", out)
	}
	runIn(t, runupBin(), dirs[0], env, 0, "--repo", loc, "prune")
	runIn(t, runupBin(), dirs[0], env, 0, "--repo", loc, "check", "--read-data")
	for i := range dirs {
		dst := t.TempDir()
		runIn(t, runupBin(), dirs[i], env, 0, "--repo", loc, "restore", "-j", fmt.Sprint(i+1), "-l", dst, "-f")
		j := runIn(t, runupBin(), dirs[i], env, 0, "--repo", loc, "ls", fmt.Sprint(i+1), "data")
		host := strings.TrimPrefix(strings.TrimSpace(strings.Split(j, "\n")[0]), "data/own-")
		src := dirs[0]
		if host == "beta" {
			src = dirs[1]
		}
		if err := compareTrees(filepath.Join(src, "data"), filepath.Join(dst, "data")); err != nil {
			t.Fatal(err)
		}
	}
	var st struct {
		PackSize int64 `json:"pack_size"`
	}
	if err := json.Unmarshal([]byte(runIn(t, runupBin(), dirs[0], env, 0, "--repo", loc, "stats", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if unique := int64(len(shared) + 12<<20); st.PackSize > unique+unique/50 {
		t.Fatalf("stored %d bytes for %d bytes of unique data: the shared data is stored twice", st.PackSize, unique)
	}
}

// Eight hosts back up the same new 20 MiB into one bucket, started two
// seconds apart: each publishes what it stored as it goes and reads what
// the others published, so the data is stored at most twice before any
// prune (it was stored by every host).
func TestEightHostsDeduplicate(t *testing.T) {
	slow(t)
	s3 := testservers.StartS3(t)
	r := rand.New(rand.NewPCG(13, 13))
	shared := make([]byte, 20<<20)
	for i := range shared {
		shared[i] = byte(r.Uint32())
	}
	loc := s3.URL("eight", "repo")
	env := append(s3.Env(), "RUNUP_PASSWORD=pw")
	var dirs []string
	for range 8 {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "data"), 0o755)
		os.WriteFile(filepath.Join(dir, "data", "shared"), shared, 0o644)
		os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
		dirs = append(dirs, dir)
	}
	runIn(t, runupBin(), dirs[0], env, 0, "--repo", loc, "init")
	errs := make(chan error, len(dirs))
	for i, dir := range dirs {
		time.Sleep(2 * time.Second)
		go func() {
			cmd := exec.Command(runupBin(), "--repo", loc, "--cache-dir", t.TempDir(), "backup", "--host", fmt.Sprint("host", i))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("host %d: %v\n%s", i, err, out)
			}
			errs <- err
		}()
	}
	for range dirs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	cli, err := minio.New(s3.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3.Access, s3.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	for obj := range cli.ListObjects(context.Background(), "eight", minio.ListObjectsOptions{Prefix: "repo/data/", Recursive: true}) {
		total += obj.Size
	}
	if total > 2*int64(len(shared))+2<<20 {
		t.Fatalf("8 hosts stored %d bytes of packs for %d bytes of data: more than twice", total, len(shared))
	}
	t.Logf("8 hosts, 2 s apart: %d MiB of packs for %d MiB of data", total>>20, len(shared)>>20)
}
