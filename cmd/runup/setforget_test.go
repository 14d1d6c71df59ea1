//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runup/runup/internal/testservers"
)

// writeConfig writes runup.yaml (mode 0644: hooks refuse a config others
// could write).
func writeConfig(t *testing.T, dir, yaml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "runup.yaml"), 0o644)
}

// A database is backed up with pg_dump against a real PostgreSQL server,
// dropped, and restored from the job.
func TestDatabaseDump(t *testing.T) {
	slow(t)
	pg := testservers.StartPostgres(t)
	pg.Run(t, "createdb", "site")
	pg.Run(t, "psql", "-d", "site", "-v", "ON_ERROR_STOP=1", "-q", "-c",
		`create table pages (id int primary key, title text, body bytea);
		 insert into pages select i, 'page ' || i, decode(md5(i::text) || md5((i*7)::text), 'hex') from generate_series(1, 20000) i;
		 create index on pages (title);`)
	query := `select count(*), sum(id), md5(string_agg(title || encode(body, 'hex'), ',' order by id)) from pages`
	before := pg.Run(t, "psql", "-d", "site", "-At", "-c", query)

	dir := t.TempDir()
	env := append(pg.Env(), "RUNUP_PASSWORD=db secret")
	writeConfig(t, dir, `version: '2'
project:
  db:
    commands:
      - {name: dumps/site.sql, run: 'pg_dump --no-owner site'}
`)
	runIn(t, runupBin(), dir, env, 0, "init")
	out := runIn(t, runupBin(), dir, env, 0, "backup")
	if !strings.Contains(out, "job 1 of project \"db\"") {
		t.Fatalf("backup: %s", out)
	}
	pg.Run(t, "dropdb", "site")
	runIn(t, runupBin(), dir, env, 0, "restore", "db", "-l", "out", "-f")
	pg.Run(t, "createdb", "site")
	pg.Run(t, "psql", "-d", "site", "-v", "ON_ERROR_STOP=1", "-q", "-f", filepath.Join(dir, "out", "dumps", "site.sql"))
	if after := pg.Run(t, "psql", "-d", "site", "-At", "-c", query); after != before {
		t.Fatalf("restored database differs:\n%s\n%s", after, before)
	}

	// Without a config, restic's way: the command's output is one file.
	repo2 := filepath.Join(t.TempDir(), "repo2")
	runIn(t, runupBin(), dir, env, 0, "--repo", repo2, "init")
	runIn(t, runupBin(), dir, env, 0, "--repo", repo2, "backup", "--stdin-from-command", "--stdin-filename", "site.sql", "--", "pg_dump", "--no-owner", "site")
	dumped := runInStdout(t, dir, env, "--repo", repo2, "dump", "latest", "site.sql")
	fresh := pg.Run(t, "pg_dump", "--no-owner", "site")
	// pg_dump writes a random key on its \restrict lines, new each run.
	restrict := regexp.MustCompile(`(?m)^\\(un)?restrict \S+$`)
	dumped, fresh = restrict.ReplaceAllString(dumped, ""), restrict.ReplaceAllString(fresh, "")
	if dumped != fresh {
		t.Fatalf("stored dump (%d bytes) differs from pg_dump's (%d bytes)", len(dumped), len(fresh))
	}
	// A failing command fails the backup and saves no job, with and
	// without a config.
	out = runIn(t, runupBin(), dir, env, 1, "--repo", repo2, "backup", "--stdin-from-command", "--stdin-filename", "x.sql", "--", "pg_dump", "no_such_database")
	if !strings.Contains(out, "pg_dump no_such_database") || !strings.Contains(out, "exit status 1") {
		t.Fatalf("failing command: %s", out)
	}
	writeConfig(t, dir, `version: '2'
project:
  db:
    commands:
      - {name: dumps/site.sql, run: 'pg_dump --no-owner no_such_database'}
`)
	runIn(t, runupBin(), dir, env, 1, "backup")
	for _, loc := range []string{"", repo2} {
		args := []string{"jobs", "--json"}
		if loc != "" {
			args = append([]string{"--repo", loc}, args...)
		}
		var jobs []map[string]any
		if err := json.Unmarshal([]byte(runInStdout(t, dir, env, args...)), &jobs); err != nil || len(jobs) != 1 {
			t.Fatalf("%s: jobs after a failed dump: %d, %v", loc, len(jobs), err)
		}
	}
	if out := runIn(t, runupBin(), dir, env, 0, "check"); !strings.Contains(out, "No problems found") {
		t.Fatalf("check: %s", out)
	}
}

// runInStdout runs runup and returns its standard output only.
func runInStdout(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(runupBin(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("runup %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// pingServer is a real HTTP server that records the pings it gets.
type pingServer struct {
	*httptest.Server
	mu    sync.Mutex
	pings []string
}

func newPingServer(t *testing.T) *pingServer {
	p := &pingServer{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.pings = append(p.pings, r.Method+" "+r.URL.Path+" "+strings.ReplaceAll(string(b), "\n", " "))
		p.mu.Unlock()
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pingServer) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.pings
	p.pings = nil
	return out
}

// Hooks and notifications around a backup run by hand, with a monitor that
// is up, and one that is down.
func TestHooksAndNotifications(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("<h1>hello</h1>"), 0o644)
	ping := newPingServer(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + l.Addr().String() + "/down"
	l.Close()
	config := func(before string) string {
		return fmt.Sprintf(`version: '2'
project:
  site:
    include: ['./www']
    hooks:
      before: ['echo "before $RUNUP_PROJECT" >>trace', %q]
      after: ['echo "after $RUNUP_RESULT" >>trace']
      failure: ['echo "failure: $RUNUP_ERROR" >>trace']
    notify: ['%s/ping/site', '%s']
`, before, ping.URL, down)
	}
	writeConfig(t, dir, config("true"))
	runup(t, dir, 0, "init")
	out := runup(t, dir, 0, "backup")
	if !strings.Contains(out, "warning: notification (start) failed") || !strings.Contains(out, "connection refused") {
		t.Errorf("a monitor that is down is not a warning: %s", out)
	}
	pings := ping.take()
	if len(pings) != 2 || pings[0] != "POST /ping/site/start " || !strings.HasPrefix(pings[1], "POST /ping/site job 1 of project site") {
		t.Fatalf("pings %q", pings)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "trace")); string(b) != "before site\nafter success\n" {
		t.Fatalf("trace %q", b)
	}
	// A failing before hook skips the backup; after and failure hooks run.
	os.Remove(filepath.Join(dir, "trace"))
	writeConfig(t, dir, config("exit 3"))
	out = runup(t, dir, 1, "backup")
	if !strings.Contains(out, `before hook "exit 3" failed: exit status 3: the backup was skipped`) {
		t.Fatalf("failing hook: %s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "trace")); !strings.HasPrefix(string(b), "before site\nafter failure\nfailure: before hook") {
		t.Fatalf("trace %q", b)
	}
	pings = ping.take()
	if len(pings) != 2 || pings[0] != "POST /ping/site/start " || !strings.HasPrefix(pings[1], "POST /ping/site/fail before hook") {
		t.Fatalf("pings %q", pings)
	}
	if out := runup(t, dir, 0, "jobs", "--json"); strings.Count(out, `"number"`) != 1 {
		t.Fatalf("a skipped backup saved a job: %s", out)
	}
	// --no-hooks runs none of it.
	os.Remove(filepath.Join(dir, "trace"))
	runup(t, dir, 0, "backup", "--no-hooks")
	if _, err := os.Stat(filepath.Join(dir, "trace")); err == nil || len(ping.take()) != 0 {
		t.Fatal("--no-hooks ran hooks or notified")
	}
	// A config others could write runs none of its commands.
	os.Chmod(filepath.Join(dir, "runup.yaml"), 0o666)
	if out := runup(t, dir, 2, "backup"); !strings.Contains(out, "hooks and commands refused") {
		t.Fatalf("loose config: %s", out)
	}
}

// daemon is a running 'runup daemon' whose log lines a test reads.
type daemonProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	done  chan error
}

func startDaemon(t *testing.T, dir string, env []string, args ...string) *daemonProc {
	t.Helper()
	cmd := exec.Command(runupBin(), append(args, "daemon", "--json")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"msg": "NOT JSON: " + sc.Text()}
			}
			d.mu.Lock()
			d.lines = append(d.lines, m)
			d.mu.Unlock()
		}
		err := cmd.Wait()
		if stderr.Len() > 0 {
			err = fmt.Errorf("%v; stderr: %s", err, stderr.String())
		}
		d.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	return d
}

// count is how many log lines have msg and, if given, task.
func (d *daemonProc) count(msg, task string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range d.lines {
		if l["msg"] == msg && (task == "" || l["task"] == task) {
			n++
		}
	}
	return n
}

func (d *daemonProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, l := range d.lines {
		j, _ := json.Marshal(l)
		b.Write(append(j, '\n'))
	}
	return b.String()
}

func (d *daemonProc) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case err := <-d.done:
			t.Fatalf("the daemon ended (%v) before %s:\n%s", err, what, d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemonProc) stop(t *testing.T, sig syscall.Signal) time.Duration {
	t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(sig)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon: %v\n%s", err, d.log())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("the daemon did not stop on %v:\n%s", sig, d.log())
	}
	return time.Since(start)
}

// The daemon with schedules of seconds: several jobs of two projects due
// at once, a SIGHUP that changes the schedule, a SIGTERM in the middle of
// a backup that leaves a valid repository, and 'schedule status'.
func TestDaemon(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(12, 12))
	for _, p := range []string{"a", "b", "c"} {
		os.MkdirAll(filepath.Join(dir, p), 0o755)
		writeRandom(t, r, filepath.Join(dir, p, "data"), 100<<10)
	}
	env := []string{"XDG_STATE_HOME=" + filepath.Join(dir, "state")}
	writeConfig(t, dir, `version: '2'
project:
  a:
    include: ['./a']
    cron: '@every 2s'
    keep: {last: 2}
  b:
    include: ['./b']
    cron: '@every 2s'
maintenance:
  forget: '@every 3s'
`)
	runIn(t, runupBin(), dir, env, 0, "init")
	d := startDaemon(t, dir, env)
	d.waitFor(t, "three jobs of each project and a forget", func() bool {
		return d.count("finished", "backup a") >= 3 && d.count("finished", "backup b") >= 3 && d.count("finished", "forget") >= 1
	})
	if d.count("failed", "") > 0 {
		t.Fatalf("failures:\n%s", d.log())
	}
	// Serial: every "started" follows the previous task's end.
	d.mu.Lock()
	running := 0
	for _, l := range d.lines {
		switch l["msg"] {
		case "started":
			running++
		case "finished", "failed", "interrupted":
			running--
		}
		if running > 1 {
			d.mu.Unlock()
			t.Fatalf("two tasks ran at once:\n%s", d.log())
		}
	}
	d.mu.Unlock()
	out := runIn(t, runupBin(), dir, env, 0, "schedule", "status")
	if !strings.Contains(out, "daemon: running") || !strings.Contains(out, "backup a") || !strings.Contains(out, "success (job") {
		t.Fatalf("schedule status:\n%s", out)
	}

	// SIGHUP: project c appears with a schedule, b's goes.
	writeConfig(t, dir, `version: '2'
project:
  a:
    include: ['./a']
    cron: '@every 2s'
  b:
    include: ['./b']
  c:
    include: ['./c']
    cron: '@every 2s'
`)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, "the reload", func() bool { return d.count("reloaded", "") == 1 })
	bRuns := d.count("finished", "backup b")
	d.waitFor(t, "two jobs of project c", func() bool { return d.count("finished", "backup c") >= 2 })
	if got := d.count("finished", "backup b"); got > bRuns+1 {
		t.Fatalf("b ran %d more times after it lost its schedule", got-bRuns)
	}
	// A broken config on SIGHUP keeps the schedule in use.
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte("version: '2'\nproject:\n  a: {include: [./a], cron: 'never'}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, "the failed reload", func() bool { return d.count("reload failed: keeping the schedule in use", "") == 1 })

	// SIGTERM in the middle of a backup: a slow command keeps it busy.
	writeConfig(t, dir, `version: '2'
project:
  slow:
    include: ['./a']
    cron: '@every 1h'
    hooks:
      after: ['echo after >after-hook-ran']
    commands:
      - {name: slow.bin, run: 'for i in $(seq 1 300); do head -c 100000 /dev/urandom; sleep 0.1; done'}
`)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, "the slow backup to start", func() bool { return d.count("started", "backup slow") == 1 })
	time.Sleep(1500 * time.Millisecond)
	took := d.stop(t, syscall.SIGTERM)
	if took > 10*time.Second {
		t.Errorf("stopping took %v", took)
	}
	if d.count("interrupted", "backup slow") != 1 {
		t.Fatalf("the backup was not interrupted:\n%s", d.log())
	}
	if _, err := os.Stat(filepath.Join(dir, "after-hook-ran")); err != nil {
		t.Fatal("the after hook did not run on SIGTERM")
	}
	if out := runIn(t, runupBin(), dir, env, 0, "check"); !strings.Contains(out, "No problems found") {
		t.Fatalf("check after SIGTERM: %s", out)
	}
	if out := runIn(t, runupBin(), dir, env, 0, "jobs", "slow"); strings.Contains(out, "slow  ") {
		t.Fatalf("an interrupted backup saved a job: %s", out)
	}
	out = runIn(t, runupBin(), dir, env, 0, "schedule", "status")
	if !strings.Contains(out, "daemon: not running") || !strings.Contains(out, "interrupted") {
		t.Fatalf("schedule status after stop:\n%s", out)
	}

	// A missed run happens at start-up, once: the state file says a last
	// ran a day ago, and its schedule is hourly.
	writeConfig(t, dir, `version: '2'
project:
  a:
    include: ['./a']
    cron: '@hourly'
`)
	states, _ := filepath.Glob(filepath.Join(dir, "state", "runup", "schedule-*.json"))
	if len(states) != 1 {
		t.Fatalf("state files %v", states)
	}
	var st map[string]any
	b, _ := os.ReadFile(states[0])
	json.Unmarshal(b, &st)
	st["tasks"].(map[string]any)["backup a"].(map[string]any)["last_start"] = time.Now().Add(-25 * time.Hour).Format(time.RFC3339)
	b, _ = json.Marshal(st)
	os.WriteFile(states[0], b, 0o600)
	d = startDaemon(t, dir, env)
	d.waitFor(t, "the missed run", func() bool { return d.count("finished", "backup a") == 1 })
	time.Sleep(2 * time.Second)
	if n := d.count("finished", "backup a"); n != 1 {
		t.Fatalf("the missed run ran %d times", n)
	}
	d.stop(t, syscall.SIGINT)
}

func TestScheduleInstall(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "site"), 0o755)
	writeConfig(t, dir, "version: '2'\nproject:\n  a:\n    include: ['./site']\n")
	units := t.TempDir()
	if out := runup(t, dir, 2, "schedule", "install", "--unit-dir", units); !strings.Contains(out, "schedules nothing") {
		t.Fatalf("nothing to schedule: %s", out)
	}
	writeConfig(t, dir, "version: '2'\nproject:\n  a:\n    include: ['./site']\n    cron: '0 3 * * *'\n")
	out := runup(t, dir, 0, "--password-file", "pw", "schedule", "install", "--unit-dir", units)
	unitPath := filepath.Join(units, "runup-"+filepath.Base(dir)+".service")
	if !strings.Contains(out, "Wrote "+unitPath) || !strings.Contains(out, "systemctl daemon-reload") {
		t.Fatalf("install: %s", out)
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ExecStart=%s --context %s --password-file %s daemon\n", runupBin(), dir, filepath.Join(dir, "pw"))
	if !strings.Contains(string(unit), want) || !strings.Contains(string(unit), "WantedBy=multi-user.target") ||
		!strings.Contains(string(unit), "ExecReload=/bin/kill -HUP $MAINPID") {
		t.Fatalf("unit:\n%s\nwant %s", unit, want)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", unitPath).CombinedOutput(); err != nil && strings.Contains(string(out), unitPath+":") {
			t.Errorf("systemd-analyze verify: %s", out)
		}
	}
	for format, want := range map[string]string{"launchd": "<string>com.runup.runup-", "windows": "schtasks /Create"} {
		if out := runup(t, dir, 0, "schedule", "install", "--format", format); !strings.Contains(out, want) || !strings.Contains(out, dir) {
			t.Errorf("%s:\n%s", format, out)
		}
	}
	if out := runup(t, dir, 0, "schedule", "install", "--user", "--print"); !strings.Contains(out, "WantedBy=default.target") {
		t.Errorf("user unit:\n%s", out)
	}
	// --json: what was written, where, and whether it was enabled.
	var got struct {
		Format, Name, Path, Content string
		Enabled                     bool
	}
	out = runup(t, dir, 0, "--password-file", "pw", "schedule", "install", "--unit-dir", units, "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Format != "systemd" || got.Enabled ||
		got.Path != filepath.Join(units, got.Name+".service") || !strings.Contains(got.Content, "ExecStart=") {
		t.Errorf("install --json: %v\n%s", err, out)
	}
}

// Copies to a second local repository, to S3 (versitygw) and to SFTP
// (OpenSSH), restored from the copy byte for byte; copy-to from runup.yaml
// into a repository with its own password; and copies killed at every
// step, resumed without duplicates.
func TestCopy(t *testing.T) {
	slow(t)
	rms := remotes(t)
	r := rand.New(rand.NewPCG(13, 13))
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "sub"), 0o755)
	for i := range 20 {
		writeRandom(t, r, filepath.Join(data, "sub", fmt.Sprintf("f%02d", i)), r.IntN(64<<10))
	}
	writeRandom(t, r, filepath.Join(data, "big"), 6<<20)
	os.Symlink("big", filepath.Join(data, "link"))
	writeConfig(t, dir, "version: '2'\nproject:\n  site:\n    include: ['./data']\n")
	env := append(append([]string{"RUNUP_PASSWORD=source secret"}, rms["s3"].env...), rms["sftp"].env...)
	run := func(t *testing.T, want int, args ...string) string {
		t.Helper()
		return runIn(t, runupBin(), dir, env, want, args...)
	}
	run(t, 0, "init")
	run(t, 0, "backup")
	want1 := capture(t, data)
	writeRandom(t, r, filepath.Join(data, "sub", "f03"), 1000)
	writeRandom(t, r, filepath.Join(data, "new"), 2<<20)
	os.Remove(filepath.Join(data, "sub", "f04"))
	run(t, 0, "backup")
	want2 := capture(t, data)

	targets := map[string]string{"local": filepath.Join(t.TempDir(), "copy"), "s3": rms["s3"].url("copy"), "sftp": rms["sftp"].url("copy")}
	for kind, loc := range targets {
		t.Run(kind, func(t *testing.T) {
			if out := run(t, 10, "copy", "--to", loc); !strings.Contains(out, "runup init --repo") {
				t.Fatalf("copy to nothing: %s", out)
			}
			run(t, 0, "init", "--repo", loc)
			if out := run(t, 0, "copy", "--to", loc); !strings.Contains(out, "2 job(s) copied") {
				t.Fatalf("copy: %s", out)
			}
			if out := run(t, 0, "copy", "--to", loc); !strings.Contains(out, "already holds every job") {
				t.Fatalf("second copy: %s", out)
			}
			for job, want := range map[string]map[string]entry{"1": want1, "2": want2} {
				out := t.TempDir()
				run(t, 0, "--repo", loc, "restore", "-j", job, "-l", out, "-f")
				compareCapture(t, want, capture(t, filepath.Join(out, "data")), kind+" job "+job)
			}
			if out := run(t, 0, "--repo", loc, "check", "--read-data"); !strings.Contains(out, "No problems found") {
				t.Fatalf("check: %s", out)
			}
			var src, dst []map[string]any
			json.Unmarshal([]byte(runInStdout(t, dir, env, "jobs", "--json")), &src)
			json.Unmarshal([]byte(runInStdout(t, dir, env, "--repo", loc, "jobs", "--json")), &dst)
			if len(dst) != 2 || dst[1]["time"] != src[1]["time"] || dst[1]["host"] != src[1]["host"] || dst[1]["project"] != "site" {
				t.Fatalf("copied jobs %v, source %v", dst, src)
			}
		})
	}

	// copy-to in runup.yaml, into a repository with its own password.
	offsite := filepath.Join(t.TempDir(), "offsite")
	runIn(t, runupBin(), dir, append(env, "RUNUP_PASSWORD=offsite secret"), 0, "init", "--repo", offsite)
	writeConfig(t, dir, fmt.Sprintf(`version: '2'
project:
  site:
    include: ['./data']
    copy-to:
      - {repository: %q, password: 'env:OFFSITE_PW'}
`, offsite))
	writeRandom(t, r, filepath.Join(data, "sub", "f05"), 3000)
	want3 := capture(t, data)
	out := runIn(t, runupBin(), dir, append(env, "OFFSITE_PW=offsite secret"), 0, "backup")
	if !strings.Contains(out, "copied job 3") || !strings.Contains(out, "as job 1") {
		t.Fatalf("copy-to: %s", out)
	}
	restored := t.TempDir()
	runIn(t, runupBin(), dir, append(env, "RUNUP_PASSWORD=offsite secret"), 0, "--repo", offsite, "restore", "-l", restored, "-f")
	compareCapture(t, want3, capture(t, filepath.Join(restored, "data")), "copy-to")
	// A copy-to target that fails fails the backup, whose job is saved.
	out = runIn(t, runupBin(), dir, append(env, "OFFSITE_PW=wrong"), 12, "backup")
	if !strings.Contains(out, "copy to "+offsite) || !strings.Contains(out, "New backup created: job 4") {
		t.Fatalf("failing copy-to: %s", out)
	}

	// kill -9 at every step of a copy; each rerun goes on where it stopped.
	writeConfig(t, dir, "version: '2'\nproject:\n  site:\n    include: ['./data']\n")
	writeRandom(t, r, filepath.Join(data, "big2"), 40<<20)
	run(t, 0, "backup")
	want5 := capture(t, data)
	for _, kind := range []string{"local", "sftp"} {
		t.Run("kill-"+kind, func(t *testing.T) {
			loc := filepath.Join(t.TempDir(), "killed")
			clean := filepath.Join(t.TempDir(), "clean")
			if kind == "sftp" {
				loc = rms["sftp"].url("killed")
			}
			run(t, 0, "init", "--repo", loc)
			kills := 0
			for n := 1; ; n++ {
				cmd := exec.Command(faultBin(), "copy", "--to", loc)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), append(env, fmt.Sprintf("RUNUP_FAULT=kill-after:%d", n))...)
				if out, err := cmd.CombinedOutput(); err == nil {
					break
				} else if exitCode(err) != -1 {
					t.Fatalf("copy with a kill after step %d: %v\n%s", n, err, out)
				}
				kills++
			}
			if kills < 4 {
				t.Fatalf("only %d kills: the copy has too few steps to test", kills)
			}
			if out := run(t, 0, "--repo", loc, "check", "--read-data"); !strings.Contains(out, "No problems found") {
				t.Fatalf("check: %s", out)
			}
			var srcJobs, dstJobs []map[string]any
			json.Unmarshal([]byte(runInStdout(t, dir, env, "jobs", "--json")), &srcJobs)
			json.Unmarshal([]byte(runInStdout(t, dir, env, "--repo", loc, "jobs", "--json")), &dstJobs)
			if len(dstJobs) != len(srcJobs) {
				t.Fatalf("%d jobs in the target after the kills, %d in the source", len(dstJobs), len(srcJobs))
			}
			out := t.TempDir()
			run(t, 0, "--repo", loc, "restore", "-l", out, "-f")
			compareCapture(t, want5, capture(t, filepath.Join(out, "data")), "after kills")
			if kind == "local" {
				run(t, 0, "init", "--repo", clean)
				run(t, 0, "copy", "--to", clean)
				got, want := dirSize(t, filepath.Join(loc, "data")), dirSize(t, filepath.Join(clean, "data"))
				if got > want+want/20 {
					t.Fatalf("the resumed copy stores %d bytes, a clean one %d: duplicates", got, want)
				}
			}
		})
	}
}
