package cli

import (
	"bytes"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	for _, tc := range []struct{ version, commit, want string }{
		{"1.2.0", "abc1234", `^runup 1\.2\.0 \(commit abc1234, go[0-9.]+\S*, ` + runtime.GOOS + "/" + runtime.GOARCH + `\)$`},
		{"0.1.0-dev", "", `^runup 0\.1\.0-dev \(commit \S+, go`},
	} {
		Version, Commit = tc.version, tc.commit
		if got := versionLine(); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("versionLine() = %q, want %s", got, tc.want)
		}
	}
	Version, Commit = "0.1.0-dev", ""
	if out := strings.TrimSpace(runMain(t, "--version")); !strings.HasPrefix(out, "runup 0.1.0-dev (commit ") {
		t.Errorf("runup --version: %q", out)
	}
}

// runMain runs the command line in-process and returns what it printed.
func runMain(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	g := &globals{stdin: strings.NewReader(""), stdout: &out, stderr: &out}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatalf("runup %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}
