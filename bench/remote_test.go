//go:build unix

// Unix only: the page cache is dropped with sync, the servers are Unix programs.

package main

// BenchmarkRemote measures RunUp and restic side by side against the same
// real S3 server (versitygw) and OpenSSH SFTP server on 127.0.0.1, in one
// run, on a source tree and on trees of 6,065 and 12,125 directories (is
// the cost linear in directories?), and RunUp on a local repository for
// the same steps. It writes docs/benchmarks.md's remote section:
//
//	go test ./bench -run '^$' -bench Remote -benchtime 1x -src /usr/local/go/src
//
// It needs restic 0.18.1 on PATH (go install github.com/restic/restic/cmd/restic@v0.18.1).

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runup/runup/internal/testservers"
)

var (
	remoteSrc = flag.String("src", "/usr/local/go/src", "the source tree of the remote benchmark")
	remoteOut = flag.String("remote-out", "../docs/benchmarks.md", "where the remote section goes (\"\" prints only)")
)

// remoteTool is one tool against one kind of storage.
type remoteTool struct {
	name string
	env  []string
	init []string
	// commands by step; %s placeholders are the source, a restore target
	backup, restore, ls, diff, find func(src, dst string) []string
}

func BenchmarkRemote(b *testing.B) {
	if _, err := exec.LookPath("restic"); err != nil {
		b.Skip("restic is not installed: go install github.com/restic/restic/cmd/restic@v0.18.1")
	}
	work := b.TempDir()
	bin := filepath.Join(work, "runup")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/runup").CombinedOutput(); err != nil {
		b.Fatalf("build: %v %s", err, out)
	}
	s3 := testservers.StartS3(b)
	sshd := testservers.StartSSHD(b)
	// restic reaches the SFTP server through ssh, told where the keys are.
	sshCmd := fmt.Sprintf("ssh -i %s/.ssh/id_ed25519 -o UserKnownHostsFile=%s/.ssh/known_hosts -o StrictHostKeyChecking=yes -p %s %s@127.0.0.1 -s sftp",
		sshd.Home, sshd.Home, sshd.Port, sshd.User)

	trees := map[string]string{"source": *remoteSrc}
	for _, n := range []int{6065, 12125} {
		dir := filepath.Join(work, fmt.Sprintf("dirs%d", n))
		for i := range n {
			d := filepath.Join(dir, fmt.Sprintf("a%03d", i/100), fmt.Sprintf("b%03d", i%100))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			os.WriteFile(filepath.Join(d, "f"), []byte(fmt.Sprint("file ", i)), 0o644)
		}
		trees[fmt.Sprintf("%d dirs", n)] = dir
	}
	var rows []string
	for _, data := range []string{"source", "6065 dirs", "12125 dirs"} {
		src := trees[data]
		for _, where := range []string{"local", "s3", "sftp"} {
			for _, tool := range remoteTools(b, bin, work, where, s3, sshd, sshCmd) {
				if where == "local" && tool.name != "runup" {
					continue
				}
				rows = append(rows, measureRemote(b, work, data, where, tool, src)...)
			}
		}
	}
	table := fmt.Sprintf("Measured %s with `go test ./bench -run '^$' -bench Remote -benchtime 1x` (versitygw and OpenSSH on 127.0.0.1, restic 0.18.1); seconds, one run.\n\n"+
		"| data | storage | tool | no-change backup | incremental | restore | ls -r | diff | find |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s\n",
		time.Now().Format("2006-01-02"), strings.Join(rows, "\n"))
	fmt.Print(table)
	if *remoteOut != "" {
		if err := replaceSection(*remoteOut, "remote", table); err != nil {
			b.Fatal(err)
		}
	}
}

func remoteTools(b *testing.B, bin, work, where string, s3 *testservers.S3, sshd *testservers.SSHD, sshCmd string) []remoteTool {
	id := fmt.Sprint(time.Now().UnixNano())
	var runupRepo, resticRepo string
	var env []string
	resticOpts := []string{}
	switch where {
	case "local":
		runupRepo = filepath.Join(work, "local-"+id)
	case "s3":
		runupRepo = s3.URL("bench", "runup-"+id)
		s3.URL("bench", "") // makes the bucket
		resticRepo = fmt.Sprintf("s3:http://%s/bench/restic-%s", s3.Addr, id)
		env = s3.Env()
	case "sftp":
		runupRepo = sshd.URL(filepath.Join(work, "sftp-runup-"+id))
		resticRepo = fmt.Sprintf("sftp:%s@127.0.0.1:%s", sshd.User, filepath.Join(work, "sftp-restic-"+id))
		resticOpts = []string{"-o", "sftp.command=" + sshCmd}
		env = []string{"HOME=" + sshd.Home, "SSH_AUTH_SOCK="}
	}
	runupEnv := append([]string{"RUNUP_PASSWORD=bench", "XDG_CACHE_HOME=" + filepath.Join(work, "cache-runup-"+id),
		"RUNUP_KNOWN_REPOSITORIES=" + filepath.Join(work, "known-"+id)}, env...)
	resticEnv := append([]string{"RESTIC_PASSWORD=bench", "XDG_CACHE_HOME=" + filepath.Join(work, "cache-restic-"+id)}, env...)
	r := func(args ...string) []string { return append([]string{bin, "--repo", runupRepo, "-q"}, args...) }
	rs := func(args ...string) []string {
		return append(append([]string{"restic", "-r", resticRepo, "-q"}, resticOpts...), args...)
	}
	tools := []remoteTool{{
		name: "runup", env: runupEnv, init: r("init"),
		backup:  func(src, _ string) []string { return r("backup", "--project", "b", src) },
		restore: func(_, dst string) []string { return r("restore", "b", "-f", "-l", dst) },
		ls:      func(_, _ string) []string { return r("ls", "latest", "-r") },
		diff:    func(_, _ string) []string { return r("diff", "1", "2") },
		find:    func(pattern, _ string) []string { return r("find", pattern) },
	}}
	if where != "local" {
		tools = append(tools, remoteTool{
			name: "restic", env: resticEnv, init: rs("init"),
			backup:  func(src, _ string) []string { return rs("backup", "--host", "b", src) },
			restore: func(_, dst string) []string { return rs("restore", "latest", "--target", dst) },
			ls:      func(_, _ string) []string { return rs("ls", "latest") },
			diff: func(_, _ string) []string {
				rc := restic2(resticRepo, resticOpts)
				return []string{"sh", "-c", rc + " diff $(" + rc + ` snapshots --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s[0]["short_id"], s[1]["short_id"])')`}
			},
			find: func(_, _ string) []string { return rs("find", "f") },
		})
	}
	return tools
}

// restic2 is a restic command line for sh.
func restic2(repo string, opts []string) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	out := "restic -q -r " + q(repo)
	for _, o := range opts {
		out += " " + q(o)
	}
	return out
}

var restores int

// measureRemote runs one tool's steps on a copy of src and returns its row.
func measureRemote(b *testing.B, work, data, where string, t remoteTool, src string) []string {
	copyDir := filepath.Join(work, "src")
	os.RemoveAll(copyDir)
	if out, err := exec.Command("cp", "-a", src, copyDir).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, out)
	}
	step := func(args []string) float64 {
		sm, err := run(work, t.env, args...)
		if err != nil {
			b.Fatalf("%s %s %s: %v", data, where, t.name, err)
		}
		return sm.dur.Seconds()
	}
	step(t.init)
	step(t.backup(copyDir, ""))
	noChange := step(t.backup(copyDir, ""))
	// A change: one file in every hundredth directory.
	n := 0
	filepath.Walk(copyDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if n%100 == 0 {
				f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("changed")
				f.Close()
			}
			n++
		}
		return nil
	})
	incr := step(t.backup(copyDir, ""))
	// A fresh directory, after a sync: on this ext4 (mounted with
	// discard) a tree just removed slows the next one's mkdirs several
	// times over, whichever tool comes next.
	restores++
	dst := filepath.Join(work, fmt.Sprint("dst", restores))
	syscall.Sync()
	restore := step(t.restore("", dst))
	ls := step(t.ls("", ""))
	diff := step(t.diff("", ""))
	pattern := "f"
	if data == "source" {
		pattern = "doc.go"
	}
	find := step(t.find(pattern, ""))
	return []string{fmt.Sprintf("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |", data, where, t.name, noChange, incr, restore, ls, diff, find)}
}
