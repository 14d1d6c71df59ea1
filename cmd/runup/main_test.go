//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// binDir holds the runup binary built once for all end-to-end tests: the
// tests drive the real program, not functions behind it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runup-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range [][]string{
		{"build", "-o", filepath.Join(dir, "runup"), "."},
		// The same program with the fault injector, for crash tests.
		{"build", "-tags", "faultinject", "-o", filepath.Join(dir, "fault", "runup"), "."},
	} {
		build := exec.Command("go", b...)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building runup:", err)
			os.Exit(1)
		}
	}
	binDir = dir
	// What the binary remembers of repositories goes to a file of the
	// tests', never to the user's config.
	os.Setenv("RUNUP_KNOWN_REPOSITORIES", filepath.Join(dir, "known-repositories.json"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runupBin() string { return filepath.Join(binDir, "runup") }

// slow marks an end-to-end scenario (servers, crashes, browsers, many
// processes): 'go test -short' runs only the scripts of the command line,
// and the packages' own tests.
func slow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
			e.Setenv("HOME", e.WorkDir)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// exit N cmd args...: run cmd, expect exit status N, keep its output.
			"exit": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: exit CODE command [args...]")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exit code %q: %v", args[0], err)
				}
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("%v", err)
				}
				if (got == want) == neg {
					ts.Fatalf("exit status %d, want %d\nstderr:\n%s", got, want, ts.ReadFile("stderr"))
				}
			},
			// jsonok [key...]: the last command's stdout is one JSON document
			// (or, with -lines, JSON lines), holding the top-level keys given.
			"jsonok": func(ts *testscript.TestScript, neg bool, args []string) {
				out := ts.ReadFile("stdout")
				docs := []string{out}
				if len(args) > 0 && args[0] == "-lines" {
					docs, args = strings.Split(strings.TrimSpace(out), "\n"), args[1:]
				}
				for _, d := range docs {
					var v any
					if err := json.Unmarshal([]byte(d), &v); err != nil {
						ts.Fatalf("not JSON (%v):\n%s", err, d)
					}
					m, _ := v.(map[string]any)
					for _, k := range args {
						if _, ok := m[k]; !ok {
							ts.Fatalf("JSON has no key %q:\n%s", k, d)
						}
					}
				}
			},
			// cmptree a b: same entries, types, modes, contents, link targets and file mtimes.
			"cmptree": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: cmptree dir1 dir2")
				}
				err := compareTrees(ts.MkAbs(args[0]), ts.MkAbs(args[1]))
				if (err == nil) == neg {
					ts.Fatalf("cmptree %s %s: %v", args[0], args[1], err)
				}
			},
		},
	})
}

// compareTrees compares two directory trees: entry names and types, modes,
// file contents and mtimes, and symbolic link targets.
func compareTrees(a, b string) error {
	seen := map[string]bool{}
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		q := filepath.Join(b, rel)
		fa, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fb, err := os.Lstat(q)
		if err != nil {
			return fmt.Errorf("%s: missing in %s", rel, b)
		}
		if fa.Mode() != fb.Mode() {
			return fmt.Errorf("%s: mode %v != %v", rel, fa.Mode(), fb.Mode())
		}
		switch {
		case fa.Mode().IsRegular():
			ca, _ := os.ReadFile(p)
			cb, _ := os.ReadFile(q)
			if !bytes.Equal(ca, cb) {
				return fmt.Errorf("%s: contents differ", rel)
			}
			if !fa.ModTime().Equal(fb.ModTime()) {
				return fmt.Errorf("%s: mtime %v != %v", rel, fa.ModTime(), fb.ModTime())
			}
		case fa.Mode()&fs.ModeSymlink != 0:
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				return fmt.Errorf("%s: link target %q != %q", rel, ta, tb)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b, p)
		if !seen[rel] {
			return fmt.Errorf("%s: extra in %s", rel, b)
		}
		return nil
	})
}
