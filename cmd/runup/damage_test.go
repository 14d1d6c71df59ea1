//go:build unix

// Unix only: a full disk is a small tmpfs, and damage is checked with statfs.

package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
)

type damage struct {
	kind string // which repository file
	how  string // flip, truncate, delete
}

// repoFiles lists a repository's files of one kind, sorted.
func repoFiles(t *testing.T, repo, kind string) []string {
	var out []string
	filepath.WalkDir(filepath.Join(repo, kind), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if kind == "config" {
		out = []string{filepath.Join(repo, "config")}
	}
	sort.Strings(out)
	return out
}

// treePack finds the pack that holds trees: the smallest one.
func treePack(t *testing.T, repo string) string {
	packs := repoFiles(t, repo, "data")
	sort.Slice(packs, func(i, j int) bool {
		a, _ := os.Stat(packs[i])
		b, _ := os.Stat(packs[j])
		return a.Size() < b.Size()
	})
	return packs[0]
}

func harm(t *testing.T, path, how string, r *rand.Rand) {
	t.Helper()
	os.Chmod(path, 0o600)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch how {
	case "flip":
		b[r.IntN(len(b))] ^= 0x10
		err = os.WriteFile(path, b, 0o600)
	case "truncate":
		err = os.WriteFile(path, b[:len(b)/2], 0o600)
	case "delete":
		err = os.Remove(path)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// checkFound is check's summary of damage: "check found 1 problem and 2
// files damaged in 1 job (listed above): ...".
var checkFound = regexp.MustCompile(`check found (\d+ problems?|\d+ files? damaged in \d+ jobs?)( and \d+ files? damaged in \d+ jobs?)? \(listed above\)`)

func TestDamagedRepository(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(11, 11))
	src := t.TempDir()
	data := filepath.Join(src, "data")
	os.MkdirAll(filepath.Join(data, "d"), 0o755)
	for i := range 6 {
		writeRandom(t, r, filepath.Join(data, fmt.Sprintf("big%d", i)), 6<<20)
	}
	for i := range 20 {
		writeRandom(t, r, filepath.Join(data, "d", fmt.Sprintf("small%d", i)), r.IntN(100<<10))
	}
	os.WriteFile(filepath.Join(src, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	want := capture(t, data)
	pristine := filepath.Join(t.TempDir(), "repo")
	runup(t, src, 0, "--repo", pristine, "init")
	runup(t, src, 0, "--repo", pristine, "backup")
	runup(t, src, 0, "--repo", pristine, "backup", "--force")

	var cases []damage
	for _, kind := range []string{"data", "tree", "index", "jobs", "keys", "config"} {
		for _, how := range []string{"flip", "truncate", "delete"} {
			cases = append(cases, damage{kind, how})
		}
	}
	for _, c := range cases {
		t.Run(c.kind+"-"+c.how, func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "repo")
			copyDir(t, pristine, repo)
			var victim string
			switch c.kind {
			case "tree":
				victim = treePack(t, repo)
			case "data":
				packs := repoFiles(t, repo, "data")
				tp := treePack(t, repo)
				for _, p := range packs {
					if p != tp {
						victim = p
						break
					}
				}
			case "jobs":
				victim = repoFiles(t, repo, "jobs")[0] // job 1; job 2 must stay fine
			default:
				victim = repoFiles(t, repo, c.kind)[0]
			}
			harm(t, victim, c.how, r)

			// check finds it: exit 13 for damage, 12 for an unusable key.
			cmd := exec.Command(runupBin(), "--repo", repo, "check", "--read-data")
			out, err := cmd.CombinedOutput()
			code := exitCode(err)
			switch c.kind {
			case "keys":
				if code != 12 && code != 13 {
					t.Fatalf("check with a damaged key file: exit %d, want 12 or 13\n%s", code, out)
				}
				return
			case "config":
				if code != 13 && code != 10 {
					t.Fatalf("check with a damaged config: exit %d, want 13 (10 when deleted)\n%s", code, out)
				}
				if strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
					t.Fatalf("more than one line for a damaged config:\n%s", out)
				}
				return
			}
			if code != 13 {
				t.Fatalf("check: exit %d, want 13\n%s", code, out)
			}
			// The report counts in words ("4 packs are", not "4 pack(s)"),
			// and the last line says what was found: never "0 problem(s)"
			// beside damaged files.
			if !checkFound.Match(out) || strings.Contains(string(out), "(s)") || strings.Contains(string(out), "found 0 ") {
				t.Fatalf("check's summary:\n%s", out)
			}
			// What check says is affected, per job: everything else must
			// restore exactly.
			affected := map[string]bool{}
			for _, line := range strings.Split(string(out), "\n") {
				var job int
				var rest string
				if n, _ := fmt.Sscanf(line, "damaged: job %d: %s", &job, &rest); n == 2 {
					affected[fmt.Sprintf("%d:%s", job, rest)] = true
				}
			}
			isAffected := func(job, p string) bool {
				for q := "data/" + p; q != "."; q = filepath.Dir(q) {
					if affected[job+":"+q] || affected[job+":/"] {
						return true
					}
				}
				return false
			}

			// A restore of every job either writes the right bytes or names
			// the file; files the damage does not touch restore exactly.
			for _, job := range []string{"1", "2"} {
				dst := filepath.Join(t.TempDir(), "out")
				cmd := exec.Command(runupBin(), "--repo", repo, "restore", "-j", job, "-l", dst, "-f")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				err := cmd.Run()
				if c.kind == "jobs" && job == "1" {
					if exitCode(err) == 0 {
						t.Fatalf("restore of a damaged job succeeded")
					}
					continue
				}
				if _, serr := os.Stat(filepath.Join(dst, "data")); serr != nil {
					// Nothing restored: that must be an error that says why.
					if exitCode(err) == 0 || stderr.Len() == 0 {
						t.Fatalf("job %s: nothing restored, exit %d: %s", job, exitCode(err), stderr.String())
					}
					continue
				}
				got := capture(t, filepath.Join(dst, "data"))
				restored := 0
				for p, w := range want {
					g, ok := got[p]
					named := false // the file, or a directory above it, is named
					for q := p; q != "." && !named; q = filepath.Dir(q) {
						named = strings.Contains(stderr.String(), filepath.Join("data", q)+":")
					}
					if ok && g.sum == w.sum && g.mode == w.mode {
						restored++
						continue
					}
					if !named && !w.mode.IsDir() {
						t.Errorf("job %s: %s is wrong or missing and the restore did not say so\n%s", job, p, stderr.String())
					}
					if !isAffected(job, p) && !w.mode.IsDir() && c.kind == "data" {
						t.Errorf("job %s: %s does not depend on the damage (check says) but did not restore", job, p)
					}
				}
				if exitCode(err) == 0 && restored != len(want) {
					t.Errorf("job %s: restore exited 0 with %d of %d entries right", job, restored, len(want))
				}

			}
			// repair index mends a lost or damaged index completely.
			if c.kind == "index" {
				runup(t, src, 0, "--repo", repo, "repair", "index")
				runup(t, src, 0, "--repo", repo, "check", "--read-data")
			}
		})
	}
}

// A full disk ends the backup with a clear error and leaves a valid
// repository whose earlier jobs restore.
func TestFullDisk(t *testing.T) {
	slow(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	r := rand.New(rand.NewPCG(3, 3))
	src := t.TempDir()
	data := filepath.Join(src, "data")
	os.MkdirAll(data, 0o755)
	writeRandom(t, r, filepath.Join(data, "first"), 4<<20)
	os.WriteFile(filepath.Join(src, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
	repo := filepath.Join(mnt, "repo")
	runup(t, src, 0, "--repo", repo, "init")
	runup(t, src, 0, "--repo", repo, "backup")
	want := capture(t, data)
	writeRandom(t, r, filepath.Join(data, "too-big"), 40<<20)
	cmd := exec.Command(runupBin(), "--repo", repo, "backup")
	cmd.Dir = src
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "no space left on device") {
		t.Fatalf("backup onto a full disk: exit %d\n%s", exitCode(err), out)
	}
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	os.Remove(filepath.Join(data, "too-big"))
	runup(t, src, 0, "--repo", repo, "check", "--read-data")
	dst := t.TempDir()
	runup(t, src, 0, "--repo", repo, "restore", "-l", dst, "-f")
	compareCapture(t, want, capture(t, filepath.Join(dst, "data")), "after a full disk")
	runup(t, src, 0, "--repo", repo, "backup")
}
