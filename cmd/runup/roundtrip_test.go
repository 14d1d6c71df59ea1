//go:build unix

package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runup runs the built binary in dir and fails the test on an unexpected
// exit code.
func runup(t *testing.T, dir string, wantCode int, args ...string) string {
	t.Helper()
	cmd := exec.Command(runupBin(), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != wantCode {
		t.Fatalf("runup %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
	}
	return out.String() + errb.String()
}

// entry is what a test remembers of one path.
type entry struct {
	mode   fs.FileMode
	mtime  time.Time
	sum    [32]byte
	target string
	ino    uint64
}

func capture(t *testing.T, root string) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{mode: fi.Mode(), ino: fi.Sys().(*syscall.Stat_t).Ino}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.sum = sha256.Sum256(b)
			e.mtime = fi.ModTime()
		case fi.Mode()&fs.ModeSymlink != 0:
			e.target, _ = os.Readlink(p)
			e.mtime = fi.ModTime()
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func compareCapture(t *testing.T, want, got map[string]entry, label string) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s: %s missing", label, p)
		case g.mode != w.mode:
			t.Errorf("%s: %s mode %v, want %v", label, p, g.mode, w.mode)
		case g.sum != w.sum:
			t.Errorf("%s: %s content differs", label, p)
		case g.target != w.target:
			t.Errorf("%s: %s link target %q, want %q", label, p, g.target, w.target)
		case !g.mtime.Equal(w.mtime):
			t.Errorf("%s: %s mtime %v, want %v", label, p, g.mtime, w.mtime)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %s is extra", label, p)
		}
	}
	// Hard links: paths sharing an inode before must share one after.
	groups := map[uint64][]string{}
	for p, w := range want {
		if w.mode.IsRegular() {
			groups[w.ino] = append(groups[w.ino], p)
		}
	}
	for _, g := range groups {
		for _, p := range g[1:] {
			if got[p].ino != got[g[0]].ino {
				t.Errorf("%s: %s and %s were hard links and are not", label, g[0], p)
			}
		}
	}
}

func writeRandom(t *testing.T, r *rand.Rand, path string, size int) {
	t.Helper()
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if r.IntN(3) == 0 && size > 100 {
		// Long runs of zeros, stored cheaply and restored as holes.
		clear(b[size/4 : size/2])
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var sizes = []int{0, 1, 100, 4096, 512<<10 - 1, 512 << 10, 512<<10 + 1, 1 << 20, 3<<20 + 17, 9 << 20}

func randomTree(t *testing.T, r *rand.Rand, root string) {
	t.Helper()
	dirs := []string{root}
	for i := range 12 {
		d := filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("dir %d 'q\"", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	var files []string
	for i := range 40 {
		p := filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("f%d-ü.bin", i))
		size := sizes[r.IntN(len(sizes))]
		if size > 1<<20 && r.IntN(2) == 0 {
			size = r.IntN(1 << 20)
		}
		writeRandom(t, r, p, size)
		files = append(files, p)
	}
	os.WriteFile(filepath.Join(root, "zeros"), make([]byte, 20<<20), 0o600)
	os.Chmod(files[0], 0o755)
	os.Chmod(files[1], 0o600)
	os.Chmod(dirs[1], 0o700)
	os.Symlink("../target", filepath.Join(dirs[2], "rel-link"))
	os.Symlink("/nonexistent/dangling", filepath.Join(root, "dangling"))
	os.Link(files[2], filepath.Join(root, "hardlink"))
	os.Mkdir(filepath.Join(root, "empty"), 0o750)
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	setTimes(t, r, root)
}

// setTimes gives every entry a distinct past mtime, deepest first.
func setTimes(t *testing.T, r *rand.Rand, root string) {
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return nil
	})
	for i := len(paths) - 1; i >= 0; i-- {
		ts := time.Unix(1_500_000_000+r.Int64N(100_000_000), r.Int64N(1e9))
		if fi, err := os.Lstat(paths[i]); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			os.Chtimes(paths[i], ts, ts)
		}
	}
}

func mutate(t *testing.T, r *rand.Rand, root string) {
	t.Helper()
	var files []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() && filepath.Base(p) != "hardlink" {
			files = append(files, p)
		}
		return nil
	})
	r.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	// change one byte, append, truncate, rename, duplicate, delete
	b, _ := os.ReadFile(files[0])
	if len(b) > 0 {
		b[len(b)/2] ^= 0xff
		os.WriteFile(files[0], b, 0o644)
	}
	f, _ := os.OpenFile(files[1], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("appended"))
	f.Close()
	os.Truncate(files[2], 10)
	os.Rename(files[3], files[3]+".renamed")
	c, _ := os.ReadFile(files[4])
	os.WriteFile(filepath.Join(root, "copy-of-4"), c, 0o644)
	os.Remove(files[5])
	os.Chmod(files[6], 0o711)
	writeRandom(t, r, filepath.Join(root, "new-file"), 2<<20)
	os.MkdirAll(filepath.Join(root, "new", "dir"), 0o755)
	ts := time.Unix(1_700_000_000, 0)
	os.Chtimes(files[7], ts, ts)
}

func TestRandomRoundTrip(t *testing.T) {
	slow(t)
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			os.Mkdir(data, 0o755)
			os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data']\n"), 0o644)
			randomTree(t, r, data)
			want1 := capture(t, data)
			runup(t, dir, 0, "init")
			runup(t, dir, 0, "backup")
			mutate(t, r, data)
			want2 := capture(t, data)
			out := runup(t, dir, 0, "backup")
			if !strings.Contains(out, "job 2") {
				t.Fatalf("second backup: %s", out)
			}
			runup(t, dir, 0, "restore", "-j", "1", "-l", "r1", "-f")
			runup(t, dir, 0, "restore", "-j", "2", "-l", "r2", "-f")
			compareCapture(t, want1, capture(t, filepath.Join(dir, "r1", "data")), "job 1")
			compareCapture(t, want2, capture(t, filepath.Join(dir, "r2", "data")), "job 2")
			// The file of zeros is restored sparse.
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dir, "r1", "data", "zeros"), &st); err != nil || st.Blocks*512 > 1<<20 {
				t.Errorf("20 MiB of zeros restored using %d bytes of disk", st.Blocks*512)
			}
			// Restoring job 1 over job 2's files brings job 1 back.
			runup(t, dir, 0, "restore", "-j", "1", "-l", "r2", "-f")
			got := capture(t, filepath.Join(dir, "r2", "data"))
			for p := range got {
				if _, ok := want1[p]; !ok {
					delete(got, p) // files created after job 1 stay, as in the original
				}
			}
			compareCapture(t, want1, got, "job 1 over job 2")
		})
	}
}

// dirSize sums a tree's files, leaving out temporary files (".*.tmp-*")
// that writers killed mid-write leave and prune removes.
func dirSize(t *testing.T, root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".tmp-") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// Copying and renaming a 100 MiB tree must grow the repository by under 1%.
func TestDedupCopyRename(t *testing.T) {
	slow(t)
	r := rand.New(rand.NewPCG(9, 9))
	dir := t.TempDir()
	orig := filepath.Join(dir, "tree", "orig")
	os.MkdirAll(orig, 0o755)
	total := 0
	for i := 0; total < 100<<20; i++ {
		size := 1 << (10 + r.IntN(14)) // 1 KiB .. 8 MiB
		sub := filepath.Join(orig, fmt.Sprint(i%7))
		os.MkdirAll(sub, 0o755)
		writeRandom(t, r, filepath.Join(sub, fmt.Sprintf("file%d", i)), size)
		total += size
	}
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./tree']\n"), 0o644)
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	before := dirSize(t, filepath.Join(dir, ".runup"))
	if err := exec.Command("cp", "-a", orig, filepath.Join(dir, "tree", "copy")).Run(); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "tree", "orig", "3"), filepath.Join(dir, "tree", "orig", "three"))
	runup(t, dir, 0, "backup")
	after := dirSize(t, filepath.Join(dir, ".runup"))
	growth := float64(after-before) / float64(total)
	t.Logf("tree %d MiB, repository %d → %d bytes (+%.3f%%)", total>>20, before, after, 100*growth)
	if growth >= 0.01 {
		t.Fatalf("copy and rename grew the repository by %.2f%% of the tree", 100*growth)
	}
	runup(t, dir, 0, "restore", "-l", "out", "-f")
	if err := compareTrees(filepath.Join(dir, "tree"), filepath.Join(dir, "out", "tree")); err != nil {
		t.Fatal(err)
	}
}

// An unreadable file is reported by path, the rest is backed up, the job is
// saved as incomplete and the exit code is 3.
func TestUnreadableFile(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data", "closed"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "ok.txt"), []byte("fine"), 0o644)
	os.WriteFile(filepath.Join(dir, "data", "secret.txt"), []byte("no"), 0o000)
	os.WriteFile(filepath.Join(dir, "data", "closed", "inner"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(dir, "data", "closed"), 0o000)
	defer os.Chmod(filepath.Join(dir, "data", "closed"), 0o755)
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: ['./data', './missing']\n"), 0o644)
	run := func(want int, args ...string) string {
		cmd := exec.Command(runupBin(), args...)
		cmd.Dir = dir
		if os.Geteuid() == 0 {
			// root reads everything: run as nobody so permissions bite.
			for p := dir; p != "/"; p = filepath.Dir(p) {
				os.Chmod(p, 0o777|fs.ModeSticky)
			}
			os.Chmod(binDir, 0o755)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != want {
			t.Fatalf("runup %v: exit %d, want %d: %s", args, code, want, out)
		}
		return string(out)
	}
	run(0, "init")
	out := run(3, "backup")
	for _, want := range []string{"secret.txt: permission denied", "closed: permission denied", "missing: include not found", "incomplete"} {
		if !strings.Contains(out, want) {
			t.Errorf("backup output lacks %q:\n%s", want, out)
		}
	}
	run(0, "restore", "-l", "out", "-f")
	if b, err := os.ReadFile(filepath.Join(dir, "out", "data", "ok.txt")); err != nil || string(b) != "fine" {
		t.Fatalf("readable file not restored: %v", err)
	}

	// A context folder that cannot be read says so, not "no runup.yaml".
	closed := filepath.Join(dir, "closed-context")
	os.Mkdir(closed, 0o755)
	os.WriteFile(filepath.Join(closed, "runup.yaml"), []byte("version: '1'\nproject:\n  p:\n    include: [x]\n"), 0o644)
	os.Chmod(closed, 0o000)
	defer os.Chmod(closed, 0o755)
	if out := run(1, "-c", closed, "jobs"); !strings.Contains(out, "permission denied") || strings.Contains(out, "no runup.yaml") {
		t.Errorf("unreadable context: %s", out)
	}
}
