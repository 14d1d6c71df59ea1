//go:build unix

// Unix only: a writer paused past its lock is SIGSTOPped; owners and modes are Unix ones.

package main

// The hostile-storage suite: someone who can write the repository's storage
// but holds no key, or who can plant files in a backed-up folder, or who
// pauses a process, plays against a real repository through the built
// binary. The rule: the machine and its runup.yaml are trusted, the storage
// is not (docs/design.md, threat model). Each test names the finding of the
// Trust II issue it pins.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/backend/s3"
	"github.com/runup/runup/internal/backend/sftp"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// project makes a context with a runup.yaml for project p including ./data,
// and returns it.
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, "data", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	return dir
}

// run runs the binary in dir with extra environment and returns exit code
// and combined output.
func run(t *testing.T, bin, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return exitCode(err), string(out)
}

// snapshot lists every file of a directory tree with its size and mtime:
// what a test compares to prove that nothing was written.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			lines = append(lines, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func replaceFile(t *testing.T, p string, data []byte) {
	t.Helper()
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// 1. A substituted repository is refused: its config and keys replaced by
// those of an unencrypted repository of the attacker's, the next backup
// with a password stores nothing, and restore reads nothing.
func TestHostileSubstitutedRepository(t *testing.T) {
	slow(t)
	dir := project(t, map[string]string{"a.txt": "secret data"})
	pw := []string{"RUNUP_PASSWORD=pw"}
	runIn(t, runupBin(), dir, pw, 0, "init")
	runIn(t, runupBin(), dir, pw, 0, "backup")
	attacker := t.TempDir()
	runIn(t, runupBin(), attacker, nil, 0, "--repo", filepath.Join(attacker, "r"), "init")
	victim := filepath.Join(dir, ".runup")
	os.RemoveAll(filepath.Join(victim, "keys"))
	os.Remove(filepath.Join(victim, "config"))
	exec.Command("cp", "-a", filepath.Join(attacker, "r", "keys"), filepath.Join(attacker, "r", "config"), victim+"/").Run()
	before := snapshot(t, victim)

	for _, args := range [][]string{{"backup"}, {"restore", "-f", "-l", "out"}, {"jobs"}} {
		code, out := run(t, runupBin(), dir, pw, args...)
		if code != 14 || !strings.Contains(out, "not the repository this machine knows") || !strings.Contains(out, "runup known --forget") {
			t.Fatalf("%v on a substituted repository: exit %d\n%s", args, code, out)
		}
	}
	// Without the password in the environment, this machine still knows
	// the repository was encrypted.
	if code, out := run(t, runupBin(), dir, nil, "backup"); code != 14 {
		t.Fatalf("backup without a password: exit %d\n%s", code, out)
	}
	// A machine that never saw it refuses it too, as a password is set.
	fresh := []string{"RUNUP_PASSWORD=pw", "RUNUP_KNOWN_REPOSITORIES=" + filepath.Join(t.TempDir(), "k.json")}
	if code, out := run(t, runupBin(), dir, fresh, "backup"); code != 14 || !strings.Contains(out, "not encrypted, but a password is set") {
		t.Fatalf("backup on a fresh machine: exit %d\n%s", code, out)
	}
	if after := snapshot(t, victim); after != before {
		t.Fatalf("the substituted repository was written:\n%s\n---\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Fatal("a restore from the substituted repository wrote files")
	}
	// An encrypted repository of the attacker's, with its own password,
	// is another repository too.
	runIn(t, runupBin(), attacker, pw, 0, "--repo", filepath.Join(attacker, "e"), "init")
	os.RemoveAll(filepath.Join(victim, "keys"))
	os.Remove(filepath.Join(victim, "config"))
	exec.Command("cp", "-a", filepath.Join(attacker, "e", "keys"), filepath.Join(attacker, "e", "config"), victim+"/").Run()
	if code, out := run(t, runupBin(), dir, pw, "backup"); code != 14 || !strings.Contains(out, "(encrypted), first seen") {
		t.Fatalf("backup into another encrypted repository: exit %d\n%s", code, out)
	}
}

// writeAs writes into a repository with what an attacker who can read its
// storage has: an unencrypted repository's keys are in its key file.
func attackerRepo(t *testing.T, dir string) *repo.Repository {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, nil, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// nested stores a chain of directories leading to leaf (absolute path
// components), as a job whose base is / records it.
func nested(t *testing.T, r *repo.Repository, path string, leaf []tree.Node) crypto.ID {
	t.Helper()
	ctx := context.Background()
	comps := strings.Split(strings.Trim(path, "/"), "/")
	tr := &tree.Tree{Nodes: leaf}
	tr.Sort()
	id, _, err := r.SaveTree(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(comps) - 1; i >= 0; i-- {
		mode := uint32(0o755)
		if i == len(comps)-1 {
			mode = 0o777 // "changed a directory's mode to 777"
		}
		id, _, err = r.SaveTree(ctx, &tree.Tree{Nodes: []tree.Node{{Name: comps[i], Type: tree.Dir, Mode: mode, Subtree: id}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// 1. The repository never decides where files go: a crafted job whose base
// is / and that holds an authorized_keys file and a directory of mode 777
// outside the project writes neither in place; what lies outside what
// runup.yaml includes today is skipped and reported.
func TestHostileJobStaysInside(t *testing.T) {
	slow(t)
	dir := project(t, map[string]string{"a.txt": "mine"})
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	victim := t.TempDir()
	os.Chmod(victim, 0o755)
	r := attackerRepo(t, filepath.Join(dir, ".runup"))
	ctx := context.Background()
	key := []byte("ssh-ed25519 AAAA attacker")
	id := r.Key().Hash(key)
	if _, err := r.SaveBlob(ctx, pack.Data, id, key); err != nil {
		t.Fatal(err)
	}
	root := nested(t, r, filepath.Join(victim, ".ssh"), []tree.Node{{Name: "authorized_keys", Type: tree.File, Mode: 0o600,
		Size: uint64(len(key)), Content: []crypto.ID{id}}})
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if err := r.SaveJob(ctx, &repo.Job{Project: "p", Time: time.Now(), Host: host, Base: "/", Tree: root}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	out := runup(t, dir, 0, "restore", "-f")
	if _, err := os.Stat(filepath.Join(victim, ".ssh")); err == nil {
		t.Fatal("an in-place restore wrote outside what runup.yaml includes")
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o755 {
		t.Fatalf("a directory outside the project changed mode: %v", fi.Mode())
	}
	if !strings.Contains(out, "outside what runup.yaml includes") {
		t.Fatalf("the skipped entries were not reported:\n%s", out)
	}
	// The prompt names the absolute target.
	cmd := exec.Command(runupBin(), "restore")
	cmd.Dir, cmd.Stdin = dir, strings.NewReader("n\n")
	b, _ := cmd.CombinedOutput()
	if !strings.Contains(string(b), "in place, into "+filepath.Join(dir, "data")+"?") {
		t.Fatalf("the question does not name the target:\n%s", b)
	}
	// Without a runup.yaml, a restore goes only where the user says.
	os.Rename(filepath.Join(dir, "runup.yaml"), filepath.Join(dir, "moved.yaml"))
	if code, out := run(t, runupBin(), dir, nil, "--repo", filepath.Join(dir, ".runup"), "restore", "-j", "2", "-f"); code != 2 || !strings.Contains(out, "-l DIR") {
		t.Fatalf("restore in place without a runup.yaml: exit %d\n%s", code, out)
	}
}

// 2. A planted file whose bytes are an empty directory's tree neither
// breaks restore, check or prune, nor stands in for the tree.
func TestHostilePlantedTreeBytes(t *testing.T) {
	slow(t)
	dir := project(t, map[string]string{"planted-v1": "\x01\x00", "planted-v2": "\x02\x00", "x": "x"})
	os.MkdirAll(filepath.Join(dir, "data", "empty"), 0o755)
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	os.WriteFile(filepath.Join(dir, "data", "x"), []byte("changed"), 0o644)
	runup(t, dir, 0, "backup")
	runup(t, dir, 0, "check", "--read-data")
	for _, job := range []string{"1", "2"} {
		out := filepath.Join(t.TempDir(), "out")
		runup(t, dir, 0, "restore", "-j", job, "-l", out, "-f")
		if b, _ := os.ReadFile(filepath.Join(out, "data", "planted-v2")); string(b) != "\x02\x00" {
			t.Fatalf("job %s: planted file %q", job, b)
		}
		if fi, err := os.Stat(filepath.Join(out, "data", "empty")); err != nil || !fi.IsDir() {
			t.Fatalf("job %s: empty directory: %v", job, err)
		}
	}
	runup(t, dir, 0, "forget", "1", "--prune")
	runup(t, dir, 0, "check", "--read-data")
	runup(t, dir, 0, "restore", "-l", filepath.Join(t.TempDir(), "out"), "-f")
}

// 3. Files that change meaning without a key: a forged tombstone hides no
// job (check reports it, prune refuses), and neither does a deleted job
// record.
func TestHostileJobFiles(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(4, 4))
	dir := project(t, nil)
	writeRandom(t, r, filepath.Join(dir, "data", "one"), 300<<10)
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	writeRandom(t, r, filepath.Join(dir, "data", "two"), 300<<10)
	runup(t, dir, 0, "backup")
	jobs := filepath.Join(dir, ".runup", "jobs")
	size := dirSize(t, filepath.Join(dir, ".runup", "data"))

	os.WriteFile(filepath.Join(jobs, "0000000001.forgotten"), []byte("junk"), 0o400)
	if out := runup(t, dir, 0, "jobs"); !strings.Contains(out, "\n  1  ") && !strings.Contains(out, " 1 ") {
		t.Fatalf("a forged tombstone hid job 1:\n%s", out)
	}
	if code, out := run(t, runupBin(), dir, nil, "check"); code != 13 || !strings.Contains(out, "tombstone of job 1") {
		t.Fatalf("check with a forged tombstone: exit %d\n%s", code, out)
	}
	if code, out := run(t, runupBin(), dir, nil, "prune"); code != 13 || !strings.Contains(out, "prune refuses") {
		t.Fatalf("prune with a forged tombstone: exit %d\n%s", code, out)
	}
	if dirSize(t, filepath.Join(dir, ".runup", "data")) != size {
		t.Fatal("prune deleted data")
	}
	runup(t, dir, 0, "restore", "-j", "1", "-l", "out1", "-f")
	os.Remove(filepath.Join(jobs, "0000000001.forgotten"))

	// A job record deleted (no tombstone), the newest too.
	for _, n := range []string{"0000000001", "0000000002"} {
		saved, _ := os.ReadFile(filepath.Join(jobs, n))
		os.Remove(filepath.Join(jobs, n))
		if code, out := run(t, runupBin(), dir, nil, "check"); code != 13 || !strings.Contains(out, "missing without a tombstone") {
			t.Fatalf("check with job %s deleted: exit %d\n%s", n, code, out)
		}
		if code, out := run(t, runupBin(), dir, nil, "prune"); code != 13 || !strings.Contains(out, "missing without a tombstone") {
			t.Fatalf("prune with job %s deleted: exit %d\n%s", n, code, out)
		}
		os.WriteFile(filepath.Join(jobs, n), saved, 0o400)
	}
	runup(t, dir, 0, "check")
	// Forgetting a missing job on purpose lets prune go on.
	os.Remove(filepath.Join(jobs, "0000000001"))
	runup(t, dir, 0, "forget", "1")
	runup(t, dir, 0, "prune")
	runup(t, dir, 0, "check", "--read-data")
}

// 3. A lock file that cannot be verified is held: junk written over a
// running backup's lock stops prune, and the backup, finding its lock
// replaced, stops too.
func TestHostileJunkLock(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(5, 5))
	dir := project(t, nil)
	runup(t, dir, 0, "init")
	writeRandom(t, r, filepath.Join(dir, "data", "one"), 1<<20)
	runup(t, dir, 0, "backup")
	writeRandom(t, r, filepath.Join(dir, "data", "big"), 40<<20)
	bk := exec.Command(faultBin(), "backup")
	bk.Dir = dir
	bk.Env = append(os.Environ(), "RUNUP_FAULT=pause-before:3")
	var bout bytes.Buffer
	bk.Stdout, bk.Stderr = &bout, &bout
	if err := bk.Start(); err != nil {
		t.Fatal(err)
	}
	locks := filepath.Join(dir, ".runup", "locks")
	var lock string
	for deadline := time.Now().Add(10 * time.Second); lock == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if e, _ := os.ReadDir(locks); len(e) == 1 {
			lock = filepath.Join(locks, e[0].Name())
		}
	}
	if lock == "" {
		t.Fatal("the backup took no lock")
	}
	replaceFile(t, lock, []byte("junk"))
	code, out := run(t, runupBin(), dir, nil, "prune")
	if code != 13 || !strings.Contains(out, "unlock --remove-all") {
		t.Fatalf("prune over a junk lock: exit %d\n%s", code, out)
	}
	err := bk.Wait()
	if exitCode(err) != 11 || !strings.Contains(bout.String(), "lock was lost") {
		t.Fatalf("backup whose lock was replaced: exit %d\n%s", exitCode(err), bout.String())
	}
	runup(t, dir, 0, "unlock", "--remove-all")
	runup(t, dir, 0, "check", "--read-data")
}

// 4. A writer that lost its lock stops: a backup stopped (SIGSTOP) past the
// stale time, while a prune runs, writes no job when it continues, and the
// repository stays valid.
func TestHostileSuspendedWriter(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(6, 6))
	dir := project(t, nil)
	env := []string{"RUNUP_LOCK_STALE=2s"}
	runIn(t, faultBin(), dir, env, 0, "init")
	writeRandom(t, r, filepath.Join(dir, "data", "one"), 1<<20)
	runIn(t, faultBin(), dir, env, 0, "backup")
	for i := range 6 {
		writeRandom(t, r, filepath.Join(dir, "data", fmt.Sprint("big", i)), 40<<20)
	}
	bk := exec.Command(faultBin(), "backup")
	bk.Dir = dir
	bk.Env = append(os.Environ(), env...)
	var bout bytes.Buffer
	bk.Stdout, bk.Stderr = &bout, &bout
	if err := bk.Start(); err != nil {
		t.Fatal(err)
	}
	// Stop it once it has written a pack (each is 16 MiB).
	before := dirSize(t, filepath.Join(dir, ".runup", "data"))
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if dirSize(t, filepath.Join(dir, ".runup", "data")) > before+8<<20 {
			break
		}
	}
	bk.Process.Signal(syscall.SIGSTOP)
	if jobs, _ := filepath.Glob(filepath.Join(dir, ".runup", "jobs", "0*2")); len(jobs) > 0 {
		t.Fatal("the backup finished before it could be stopped: give it more data")
	}
	time.Sleep(3 * time.Second) // past the stale age and the grace period
	out := runIn(t, faultBin(), dir, env, 0, "prune")
	bk.Process.Signal(syscall.SIGCONT)
	err := bk.Wait()
	if exitCode(err) != 11 || !strings.Contains(bout.String(), "lock was lost") {
		t.Fatalf("a suspended backup went on after losing its lock (prune: %s): exit %d\n%s", out, exitCode(err), bout.String())
	}
	if code, out := run(t, runupBin(), dir, nil, "jobs", "--json"); code != 0 || strings.Count(out, `"number"`) != 1 {
		t.Fatalf("jobs after the stopped backup: %s", out)
	}
	runup(t, dir, 0, "check", "--read-data")
	runup(t, dir, 0, "restore", "-l", filepath.Join(t.TempDir(), "out"), "-f")
}

// 7. Telling damage from user error: a damaged key file is damage (13) and
// named; a lost config is reported as such and init refuses to write over
// the repository's data.
func TestHostileDamageIsNotUserError(t *testing.T) {
	slow(t)
	dir := project(t, map[string]string{"a": "a"})
	pw := []string{"RUNUP_PASSWORD=pw"}
	runIn(t, runupBin(), dir, pw, 0, "init")
	runIn(t, runupBin(), dir, pw, 0, "backup")
	keys, _ := filepath.Glob(filepath.Join(dir, ".runup", "keys", "*"))
	good, _ := os.ReadFile(keys[0])
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	replaceFile(t, keys[0], bad)
	if code, out := run(t, runupBin(), dir, pw, "jobs"); code != 13 || !strings.Contains(out, "keys/"+filepath.Base(keys[0])[:8]) {
		t.Fatalf("damaged key file: exit %d\n%s", code, out)
	}
	replaceFile(t, keys[0], good)
	if code, out := run(t, runupBin(), dir, []string{"RUNUP_PASSWORD=wrong"}, "jobs"); code != 12 {
		t.Fatalf("wrong password: exit %d\n%s", code, out)
	}
	os.Remove(filepath.Join(dir, ".runup", "config"))
	for _, args := range [][]string{{"init"}, {"backup"}} {
		if code, out := run(t, runupBin(), dir, pw, args...); code != 13 || !strings.Contains(out, "config is missing") {
			t.Fatalf("%v without a config: exit %d\n%s", args, code, out)
		}
	}
	if k, _ := filepath.Glob(filepath.Join(dir, ".runup", "keys", "*")); len(k) != 1 {
		t.Fatalf("init added a key: %d key files", len(k))
	}
}

// 7. A read-only repository (a mounted snapshot) can be read: without a
// lock, with a warning; writing to it is an error, never "locked".
func TestHostileReadOnlyRepository(t *testing.T) {
	slow(t)
	if os.Geteuid() != 0 {
		t.Skip("a read-only bind mount needs root (CI runs as root)")
	}
	dir := project(t, map[string]string{"a": "hello"})
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	repoDir := filepath.Join(dir, ".runup")
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o755)
	if out, err := exec.Command("mount", "--bind", "-o", "ro", repoDir, ro).CombinedOutput(); err != nil {
		t.Skipf("bind mount: %v %s", err, out)
	}
	defer exec.Command("umount", ro).Run()
	if f, err := os.Create(filepath.Join(ro, "probe")); err == nil {
		f.Close()
		t.Skip("the bind mount is not read-only here")
	}
	out := runup(t, dir, 0, "--repo", ro, "restore", "-l", filepath.Join(t.TempDir(), "out"), "-f")
	if !strings.Contains(out, "reading without a lock") {
		t.Fatalf("restore from a read-only repository:\n%s", out)
	}
	runup(t, dir, 0, "--repo", ro, "check")
	runup(t, dir, 0, "--repo", ro, "jobs")
	if code, out := run(t, runupBin(), dir, nil, "--repo", ro, "backup"); code == 11 || code == 0 || !strings.Contains(out, "read-only") {
		t.Fatalf("backup into a read-only repository: exit %d\n%s", code, out)
	}
}

// 8. Special files never hang a backup, and Ctrl-C ends one within seconds.
func TestHostileSpecialFiles(t *testing.T) {
	slow(t)
	if _, err := os.Stat("/proc/kmsg"); err != nil || os.Geteuid() != 0 {
		t.Skip("/proc/kmsg is readable by root only")
	}
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	runup(t, dir, 0, "--repo", repoDir, "init")
	start := time.Now()
	code, out := run(t, runupBin(), dir, nil, "--repo", repoDir, "backup", "/proc/kmsg")
	if code != 3 || time.Since(start) > 20*time.Second {
		t.Fatalf("backup of /proc/kmsg: exit %d after %v\n%s", code, time.Since(start), out)
	}
	cmd := exec.Command(runupBin(), "--repo", repoDir, "backup", "/proc/kmsg")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	start = time.Now()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if exitCode(err) != 130 || time.Since(start) > 4*time.Second {
		t.Fatalf("Ctrl-C: exit %d after %v", exitCode(err), time.Since(start))
	}
	runup(t, dir, 0, "--repo", repoDir, "check")
}

// 8. Every time a filesystem holds comes back exactly, beyond 2262 too, and
// sparse files restore sparse.
func TestHostileTimesAndHoles(t *testing.T) {
	slow(t)
	dir := project(t, map[string]string{"future": "from the future"})
	future := time.Date(2400, 3, 1, 12, 0, 0, 123456789, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, "data", "future"), future, future); err != nil {
		t.Skipf("this filesystem cannot hold %v: %v", future, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "data", "future")); !fi.ModTime().Equal(future) {
		t.Skipf("this filesystem cannot hold %v", future)
	}
	sparse := filepath.Join(dir, "data", "sparse")
	f, _ := os.Create(sparse)
	f.Truncate(1 << 30)
	f.WriteAt(bytes.Repeat([]byte("x"), 12<<10), 500<<20)
	f.Close()
	head := filepath.Join(dir, "data", "head")
	f, _ = os.Create(head)
	f.Truncate(10 << 20)
	f.WriteAt([]byte("abcd"), 0)
	f.Close()
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	out := filepath.Join(t.TempDir(), "out")
	runup(t, dir, 0, "restore", "-l", out, "-f")
	if fi, _ := os.Stat(filepath.Join(out, "data", "future")); !fi.ModTime().Equal(future) {
		t.Fatalf("mtime %v came back as %v", future, fi.ModTime())
	}
	for _, tc := range []struct {
		name string
		max  int64
	}{{"sparse", 1 << 20}, {"head", 64 << 10}} {
		var st syscall.Stat_t
		syscall.Stat(filepath.Join(out, "data", tc.name), &st)
		if st.Blocks*512 > tc.max {
			t.Errorf("%s restored with %d KiB allocated, want at most %d", tc.name, st.Blocks/2, tc.max>>10)
		}
	}
	cmp := exec.Command("cmp", sparse, filepath.Join(out, "data", "sparse"))
	if b, err := cmp.CombinedOutput(); err != nil {
		t.Fatalf("sparse file content: %s", b)
	}
}

// 9. password: command: from a runup.yaml that others can write is refused.
func TestHostileLooseConfig(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	cfg := filepath.Join(dir, "runup.yaml")
	os.WriteFile(cfg, []byte("version: '2'\npassword: 'command:echo pw'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	os.Chmod(cfg, 0o666)
	if code, out := run(t, runupBin(), dir, nil, "init"); code != 12 || !strings.Contains(out, "chmod go-w") {
		t.Fatalf("a password command in a world-writable config: exit %d\n%s", code, out)
	}
	os.Chmod(cfg, 0o644)
	runup(t, dir, 0, "init")
}

// storageOf opens a remote repository's storage directly, as someone who
// can write it but holds no key would.
func storageOf(t *testing.T, kind, url string, env []string) backend.Backend {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	switch kind {
	case "s3":
		cfg, err := s3.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		be, err := s3.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return be
	default:
		cfg, err := sftp.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		be, err := sftp.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Close() })
		return be
	}
}

// 1. and 6. over the network: a substituted repository is refused on S3 and
// SFTP alike, and a server that stops answering ends a command within the
// timeout and the retry budget, never hangs it.
func TestHostileRemote(t *testing.T) {
	slow(t)
	for kind, rm := range remotes(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := project(t, map[string]string{"a": "secret"})
			env := append(append([]string{}, rm.env...), "RUNUP_PASSWORD=pw")
			url := rm.url("victim")
			runIn(t, runupBin(), dir, env, 0, "--repo", url, "init")
			runIn(t, runupBin(), dir, env, 0, "--repo", url, "backup")
			runIn(t, runupBin(), dir, rm.env, 0, "--repo", rm.url("other"), "init", "--no-encryption")
			victim, other := storageOf(t, kind, url, rm.env), storageOf(t, kind, rm.url("other"), rm.env)
			for _, t2 := range []backend.FileType{backend.Config, backend.Keys} {
				var names []string
				if t2 == backend.Config {
					names = []string{""}
				} else {
					victim.List(ctx, t2, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil })
					for _, n := range names {
						victim.Remove(ctx, backend.Handle{Type: t2, Name: n})
					}
					names = nil
					other.List(ctx, t2, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil })
				}
				for _, n := range names {
					h := backend.Handle{Type: t2, Name: n}
					b, err := backend.LoadAll(ctx, other, h)
					if err != nil {
						t.Fatal(err)
					}
					victim.Remove(ctx, h)
					if err := victim.Save(ctx, h, b); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, cache := range []string{"--no-cache", "--cache-dir=" + t.TempDir()} {
				if code, out := run(t, runupBin(), dir, env, "--repo", url, cache, "backup"); code != 14 {
					t.Fatalf("backup into a substituted %s repository (%s): exit %d\n%s", kind, cache, code, out)
				}
			}

			// A frozen server: the command fails within the timeout and the
			// retry budget, with a message, instead of waiting forever.
			frozen := rm.url("frozen")
			runIn(t, runupBin(), dir, env, 0, "--repo", frozen, "init")
			runIn(t, runupBin(), dir, env, 0, "--repo", frozen, "backup")
			rm.freeze()
			start := time.Now()
			code, out := run(t, runupBin(), dir, env, "--repo", frozen, "--timeout", "2s", "--no-cache", "restore", "-l", "out", "-f")
			rm.thaw()
			if code == 0 || time.Since(start) > 60*time.Second || !strings.Contains(out, "no progress") {
				t.Fatalf("restore from a frozen %s server: exit %d after %v\n%s", kind, code, time.Since(start), out)
			}
			runIn(t, runupBin(), dir, env, 0, "--repo", frozen, "restore", "-l", "out", "-f")
		})
	}
}

// 7. An unknown file in a folder of the repository that RunUp reads is
// damage that check names (exit 13), and crashes nothing. (Files outside the
// layout, such as data/x, are never read.)
func TestHostileUnknownFiles(t *testing.T) {
	slow(t)
	for _, p := range []string{"index/x", "keys/x", "locks/x", "jobs/x", "data/ab/x", "index/" + strings.Repeat("f", 64)} {
		t.Run(strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			dir := project(t, map[string]string{"a": "a"})
			runup(t, dir, 0, "init")
			runup(t, dir, 0, "backup")
			f := filepath.Join(dir, ".runup", p)
			os.MkdirAll(filepath.Dir(f), 0o700)
			os.WriteFile(f, []byte("planted"), 0o600)
			code, out := run(t, runupBin(), dir, nil, "check")
			if code != 13 || strings.Contains(out, "panic") {
				t.Fatalf("check: exit %d\n%s", code, out)
			}
			if strings.HasPrefix(p, "locks/") {
				return // a lock that cannot be verified is held: see TestHostileJunkLock
			}
			out = runup(t, dir, 0, "restore", "-l", "out", "-f")
			if strings.Contains(out, "panic") {
				t.Fatal(out)
			}
		})
	}
}

// Commands that do not need the index do not read it: jobs never, and
// after a backup has published what it indexed to the local store, ls and
// diff read no index file either.
func TestIndexNotLoaded(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(10, 10))
	dir := project(t, nil)
	for i := range 20 {
		writeRandom(t, r, filepath.Join(dir, "data", fmt.Sprint("f", i)), 200<<10)
	}
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	writeRandom(t, r, filepath.Join(dir, "data", "new"), 100<<10)
	runup(t, dir, 0, "backup")
	for _, args := range [][]string{{"jobs"}, {"ls", "latest", "-r"}, {"diff", "1", "2"}, {"tag", "1", "--add", "x"}, {"forget", "1"}} {
		out := runup(t, dir, 0, append([]string{"--verbose"}, args...)...)
		if !strings.Contains(out, "index: 0 index file(s) read") {
			t.Errorf("%v read index files:\n%s", args, out)
		}
	}
}
