//go:build unix

// Unix only: FUSE.

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// canMount says why FUSE cannot be tested here, or "".
func canMount() string {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "no /dev/fuse on this machine"
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			return "not root and no fusermount3 (apt install fuse3)"
		}
	}
	return ""
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return bytes.Contains(b, []byte(" "+dir+" "))
}

// mountProc is a running 'runup mount'.
type mountProc struct {
	cmd  *exec.Cmd
	dir  string
	out  *syncBuf
	done chan error
}

func startMount(t *testing.T, dir, mnt string, args ...string) *mountProc {
	t.Helper()
	cmd := exec.Command(runupBin(), append([]string{"mount", mnt}, args...)...)
	cmd.Dir = dir
	out := &syncBuf{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mountProc{cmd: cmd, dir: mnt, out: out, done: make(chan error, 1)}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			out.write(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Mounted ") {
				close(ready)
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-scanned // all output is in out before done says the process ended
		m.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if mounted(mnt) {
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
	})
	select {
	case <-ready:
	case err := <-m.done:
		t.Fatalf("mount ended at once: %v\n%s", err, out.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("mount did not come up:\n%s", out.String())
	}
	return m
}

func (m *mountProc) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-m.done:
		if err != nil {
			t.Fatalf("mount exited with %v:\n%s", err, m.out.String())
		}
	case <-time.After(within):
		t.Fatalf("mount did not exit within %v:\n%s", within, m.out.String())
	}
	if mounted(m.dir) {
		t.Fatalf("%s is still mounted", m.dir)
	}
}

// The repository mounted with FUSE: every job's files as they were, links
// by project, tag and host, random reads of a large file, a new job
// appearing while mounted, and unmounting while a reader is busy.
func TestMount(t *testing.T) {
	slow(t)
	if why := canMount(); why != "" {
		t.Skip("FUSE: " + why)
	}
	r := rand.New(rand.NewPCG(21, 21))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "sub", "deep"), 0o755)
	for i := range 30 {
		writeRandom(t, r, filepath.Join(data, "sub", fmt.Sprintf("f%02d", i)), r.IntN(80<<10))
	}
	writeRandom(t, r, filepath.Join(data, "big"), 24<<20)
	writeRandom(t, r, filepath.Join(data, "sub", "deep", "x"), 10)
	os.WriteFile(filepath.Join(data, "empty"), nil, 0o600)
	os.Symlink("sub/deep/x", filepath.Join(data, "link"))
	os.Chmod(filepath.Join(data, "sub", "f03"), 0o751)
	xattr := unix.Setxattr(filepath.Join(data, "sub", "f01"), "user.comment", []byte("kept"), 0) == nil
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '1'\nproject:\n  site:\n    include: ['./data']\n"), 0o644)
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup", "--tag", "first")
	want1 := capture(t, data)
	big1, _ := os.ReadFile(filepath.Join(data, "big"))
	writeRandom(t, r, filepath.Join(data, "sub", "f05"), 5000)
	os.Remove(filepath.Join(data, "sub", "f06"))
	runup(t, dir, 0, "backup")
	want2 := capture(t, data)

	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	m := startMount(t, dir, mnt)
	for job, want := range map[string]map[string]entry{"1": want1, "2": want2} {
		compareCapture(t, want, capture(t, filepath.Join(mnt, "jobs", job, "data")), "jobs/"+job)
	}
	if out, err := exec.Command("diff", "-r", filepath.Join(mnt, "jobs", "2", "data"), data).CombinedOutput(); err != nil {
		t.Fatalf("diff -r: %v\n%s", err, out)
	}
	host, _ := os.Hostname()
	for link, target := range map[string]string{"projects/site/latest": "../../jobs/2", "projects/site/1": "../../jobs/1",
		"tags/first/1": "../../jobs/1", "hosts/" + host + "/2": "../../jobs/2"} {
		if got, err := os.Readlink(filepath.Join(mnt, link)); err != nil || got != target {
			t.Errorf("%s -> %q, %v; want %q", link, got, err, target)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "tags", "first", "2")); err == nil {
		t.Error("tags/first/2 exists: job 2 has no tag")
	}
	if xattr {
		buf := make([]byte, 64)
		n, err := unix.Getxattr(filepath.Join(mnt, "jobs", "1", "data", "sub", "f01"), "user.comment", buf)
		if err != nil || string(buf[:n]) != "kept" {
			t.Errorf("xattr: %q %v", buf[:n], err)
		}
	}
	// Random reads of the large file, through the projects link.
	f, err := os.Open(filepath.Join(mnt, "projects", "site", "1", "data", "big"))
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		off := r.Int64N(int64(len(big1)))
		buf := make([]byte, 1+r.IntN(300<<10))
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], big1[off:off+int64(n)]) || n != min(len(buf), len(big1)-int(off)) {
			t.Fatalf("read of %d at %d differs", len(buf), off)
		}
	}
	f.Close()
	// Writing is refused.
	if err := os.WriteFile(filepath.Join(mnt, "jobs", "1", "data", "new"), []byte("x"), 0o644); err == nil {
		t.Fatal("wrote into the mount")
	}
	// A new job appears without a remount.
	writeRandom(t, r, filepath.Join(data, "third"), 1000)
	runup(t, dir, 0, "backup")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(mnt, "projects", "site", "latest", "data", "third")); err == nil {
			want, _ := os.ReadFile(filepath.Join(data, "third"))
			if !bytes.Equal(b, want) {
				t.Fatal("the new job's file differs")
			}
			break
		}
		if time.Now().After(deadline) {
			jobs, _ := os.ReadDir(filepath.Join(mnt, "jobs"))
			var names []string
			for _, j := range jobs {
				names = append(names, j.Name())
			}
			target, err := os.Readlink(filepath.Join(mnt, "projects", "site", "latest"))
			_, serr := os.Stat(filepath.Join(mnt, "jobs", "3", "data", "third"))
			t.Fatalf("job 3 did not appear: jobs %v, latest -> %s %v, %v\n%s", names, target, err, serr, m.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Unmount while a reader is busy: one holds a file open mid-read,
	// another has its working directory inside.
	busy, err := os.Open(filepath.Join(mnt, "jobs", "2", "data", "big"))
	if err != nil {
		t.Fatal(err)
	}
	busy.Read(make([]byte, 1<<20))
	shell := exec.Command("sleep", "30")
	shell.Dir = filepath.Join(mnt, "jobs", "2", "data", "sub")
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	defer shell.Process.Kill()
	m.cmd.Process.Signal(syscall.SIGINT)
	m.wait(t, 10*time.Second)
	if !strings.Contains(m.out.String(), "Unmounted") {
		t.Errorf("output:\n%s", m.out.String())
	}
	busy.Close()

	// umount from outside ends the command too.
	shell.Process.Kill()
	shell.Wait()
	m = startMount(t, dir, mnt, "--no-lock")
	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v %s", err, out)
	}
	m.wait(t, 10*time.Second)

	// Mistakes get one clear line.
	if out := runup(t, dir, 2, "mount", filepath.Join(dir, "nowhere")); !strings.Contains(out, "does not exist: create it first") {
		t.Errorf("missing mountpoint: %s", out)
	}
}
