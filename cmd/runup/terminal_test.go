//go:build unix

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyRun runs runup on a new terminal (its controlling one, so /dev/tty
// works), types each answer when the output so far contains its prompt,
// and returns everything the terminal showed and the exit code.
func ptyRun(t *testing.T, dir string, answers [][2]string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(runupBin(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RUNUP_PASSWORD=")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	for _, a := range answers {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			seen := strings.Contains(out.String(), a[0])
			mu.Unlock()
			if seen {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no prompt %q on the terminal:\n%s", a[0], out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		io.WriteString(tty, a[1])
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("runup %v did not finish:\n%s", args, out.String())
	}
	tty.Close()
	<-done
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	}
	mu.Lock()
	defer mu.Unlock()
	return out.String(), code
}

// What only a terminal shows: a password typed empty, a tar stream that
// would go to the screen, and the line-erasing codes that never reach a
// log file.
func TestTerminal(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, data string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("runup.yaml", "version: '1'\nproject:\n  p:\n    include: [./data, ./gone]\n")
	writeFile("data/a.txt", "a\n")

	// An empty password at init --encrypt's prompt: said as such, nothing made.
	out, code := ptyRun(t, dir, [][2]string{{"password", "\r"}}, "init", "--encrypt")
	if code != 12 || !strings.Contains(out, "the password is empty") || strings.Contains(out, "needs a terminal") {
		t.Fatalf("empty password: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, ".runup")); err == nil {
		t.Fatal("init made a repository with an empty password")
	}

	runup(t, dir, 0, "init")
	// A missing include is an error line: on a terminal it first erases the
	// progress line; in a pipe, plain text.
	out, code = ptyRun(t, dir, nil, "backup")
	if code != 3 || !strings.Contains(out, "\r\x1b[Kerror: ") {
		t.Fatalf("backup on a terminal: exit %d\n%q", code, out)
	}
	piped := runup(t, dir, 3, "backup")
	if strings.Contains(piped, "\x1b") || !strings.Contains(piped, "error: ") {
		t.Fatalf("backup into a pipe: %q", piped)
	}

	// dump of a folder refuses the terminal, as tar does.
	out, code = ptyRun(t, dir, nil, "dump", "latest", "data")
	if code != 2 || !strings.Contains(out, "refusing to write it to a terminal") {
		t.Fatalf("dump of a folder to a terminal: exit %d\n%s", code, out)
	}
	if tarOut := runup(t, dir, 0, "dump", "latest", "data"); !strings.Contains(tarOut, "a.txt") {
		t.Fatalf("dump of a folder into a pipe gave no tar stream")
	}
}
