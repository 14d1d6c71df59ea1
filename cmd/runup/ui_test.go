//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// chromium finds Debian's headless browser, or says why there is none.
func chromium() (string, string) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no Chromium here (apt install chromium; scripts/install-test-deps.sh does it)"
}

// uiProc is a running 'runup ui'.
type uiProc struct {
	cmd  *exec.Cmd
	base string
	out  *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) write(line string) {
	s.mu.Lock()
	s.b.WriteString(line)
	s.mu.Unlock()
}

// Write lets a syncBuf be a command's output while the test reads it.
func (s *syncBuf) Write(p []byte) (int, error) {
	s.write(string(p))
	return len(p), nil
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startUI(t *testing.T, dir string, env []string, args ...string) *uiProc {
	t.Helper()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(runupBin(), append([]string{"ui", "--listen", addr}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u := &uiProc{cmd: cmd, base: "http://" + addr, out: &syncBuf{}}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			u.out.write(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "RunUp web UI on") {
				once = true
				close(ready)
			}
		}
	}()
	// One goroutine waits for the process: two callers of Wait race.
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("runup ui did not start:\n%s", u.out.String())
	}
	return u
}

// screenshots is where the UI tests leave their pictures: $RUNUP_ARTIFACTS
// when set (CI keeps it), else a folder in the temporary directory.
func screenshots(t *testing.T) string {
	dir := os.Getenv("RUNUP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "runup-artifacts")
	}
	dir = filepath.Join(dir, "ui")
	os.MkdirAll(dir, 0o755)
	return dir
}

// browserSession drives one Chromium tab; each step fails the test with
// the UI's output.
type browserSession struct {
	t   *testing.T
	ctx context.Context
	ui  *uiProc
}

func newBrowser(t *testing.T, chrome string, ui *uiProc) *browserSession {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1366, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first call starts the browser; it must have no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return &browserSession{t: t, ctx: ctx, ui: ui}
}

// do runs steps with a deadline.
func (b *browserSession) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shoot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v\nui output:\n%s", what, err, b.ui.out.String())
	}
}

func (b *browserSession) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// shoot saves a screenshot of the whole page as a test artifact.
func (b *browserSession) shoot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(screenshots(b.t), name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
	b.t.Logf("screenshot %s", p)
}

type css = chromedp.CSS

func click(sel string) chromedp.Action[chromedp.Void]   { return chromedp.Click(css(sel)) }
func waitFor(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(css(sel)) }

var navigateTo = chromedp.Navigate

// The web UI in a real browser: open a job, browse a folder, download a
// file and compare its bytes, restore a file and compare, start a backup
// and follow it to the end; on a laptop screen and a phone.
func TestUIInBrowser(t *testing.T) {
	slow(t)
	chrome, why := chromium()
	if why != "" {
		t.Skip(why)
	}
	r := rand.New(rand.NewPCG(31, 31))
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	os.MkdirAll(filepath.Join(www, "assets", "img"), 0o755)
	os.MkdirAll(filepath.Join(www, "blog"), 0o755)
	for i := range 12 {
		writeRandom(t, r, filepath.Join(www, "blog", fmt.Sprintf("post-%02d.html", i)), 2000+r.IntN(20000))
	}
	writeRandom(t, r, filepath.Join(www, "assets", "img", "hero.jpg"), 3<<20)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("<h1>hello</h1>\n"), 0o644)
	writeConfig(t, dir, `version: '2'
project:
  site:
    include: ['./www']
  db:
    commands:
      - {name: dumps/site.sql, run: 'sleep 2; seq 1 200000'}
`)
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup", "site", "--tag", "before-redesign")
	os.WriteFile(filepath.Join(www, "index.html"), []byte("<h1>hello, again</h1>\n"), 0o644)
	writeRandom(t, r, filepath.Join(www, "blog", "post-12.html"), 5000)
	runup(t, dir, 0, "backup")
	hero, _ := os.ReadFile(filepath.Join(www, "assets", "img", "hero.jpg"))

	ui := startUI(t, dir, nil)
	downloads := t.TempDir()
	restored := filepath.Join(t.TempDir(), "restored")
	b := newBrowser(t, chrome, ui)

	b.do("overview", navigateTo(ui.base+"/"), waitFor("#project-site"))
	b.shoot("overview-laptop")
	text := b.text("main")
	for _, want := range []string{"site", "db", "before-redesign", "Back up now", "Deduplication"} {
		if !strings.Contains(text, want) {
			t.Errorf("overview lacks %q:\n%s", want, text)
		}
	}
	// Open job 2, then the folder www/assets/img.
	b.do("open a job",
		click(`#project-site a.job[href="/jobs/2/browse/"]`),
		waitFor(`table.files`),
		click(`a[href="/jobs/2/browse/www/"]`),
		waitFor(`a[href="/jobs/2/browse/www/assets/"]`),
		click(`a[href="/jobs/2/browse/www/assets/"]`),
		waitFor(`a[href="/jobs/2/browse/www/assets/img/"]`),
		click(`a[href="/jobs/2/browse/www/assets/img/"]`),
		waitFor(`a.dl[href="/jobs/2/download/www/assets/img/hero.jpg"]`),
	)
	b.shoot("browse-laptop")
	// Download a file and compare its bytes.
	progress := chromedp.BrowserEvents(b.ctx, browser.DownloadProgress)
	done := make(chan string, 1)
	go func() {
		for ev, err := range progress {
			if err != nil {
				return
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				done <- ev.GUID
				return
			}
		}
	}()
	yes := true
	b.do("download",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &yes})
			return err
		}),
		click(`a.dl[href="/jobs/2/download/www/assets/img/hero.jpg"]`),
	)
	select {
	case guid := <-done:
		got, err := os.ReadFile(filepath.Join(downloads, guid))
		if err != nil || !bytes.Equal(got, hero) {
			t.Fatalf("downloaded %d bytes (%v), want the %d of hero.jpg", len(got), err, len(hero))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the download did not complete")
	}
	// Restore a file elsewhere, confirming the question.
	b.do("restore form",
		navigateTo(ui.base+"/jobs/1/browse/www/index.html"),
		waitFor(`a.restore`),
		click(`a.restore`),
		waitFor(`#location`),
		chromedp.SendKeys(css(`#location`), restored),
		click(`form.stack button.primary`),
		waitFor(`#confirm-restore`),
	)
	question := b.text(`.question`)
	b.shoot("restore-confirm")
	b.do("restore", click(`#confirm-restore`), waitFor(`#task`), waitFor(`.badge.success`))
	if !strings.Contains(question, "into "+restored) || !strings.Contains(question, "/www/index.html") {
		t.Errorf("question %q", question)
	}
	if got, err := os.ReadFile(filepath.Join(restored, "www", "index.html")); err != nil || string(got) != "<h1>hello</h1>\n" {
		t.Fatalf("restored %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(restored, "www")); len(entries) != 1 {
		t.Fatalf("restored more than the file: %v", entries)
	}
	// Start a backup (db's dump takes two seconds) and follow it.
	b.do("backup", navigateTo(ui.base+"/"), waitFor(`#project-db`), click(`#project-db form button`), waitFor(`#task`))
	var states []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := b.text(`#task-state`)
		if len(states) == 0 || states[len(states)-1] != s {
			states = append(states, s)
			if s == "running" {
				b.shoot("task-running")
			}
		}
		if s != "running" && s != "queued" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backup did not finish: states %v", states)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.do("backup result", waitFor(`#task-result a`))
	text = b.text(`#task-result`)
	b.shoot("task-done")
	if states[len(states)-1] != "success" || indexOf(states, "running") < 0 || !strings.Contains(text, "Open job 4") {
		t.Fatalf("states %v, result %q", states, text)
	}
	out := runup(t, dir, 0, "dump", "4", "dumps/site.sql")
	if !strings.HasPrefix(out, "1\n2\n3\n") || !strings.Contains(out, "\n200000\n") {
		t.Fatalf("the backup made from the UI: %.100q", out)
	}
	// Find and compare.
	b.do("find", navigateTo(ui.base+"/find?q=post-12"), waitFor(`table.files`))
	if text := b.text(`table.files`); !strings.Contains(text, "www/blog/post-12.html") || strings.Contains(text, "#1 ") {
		t.Errorf("find: %s", text)
	}
	b.do("diff", navigateTo(ui.base+"/diff?a=1&b=2"), waitFor(`ul.changes`))
	b.shoot("diff-laptop")
	if text := b.text(`ul.changes`); !strings.Contains(text, "www/blog/post-12.html") || !strings.Contains(text, "www/index.html") {
		t.Errorf("diff: %s", text)
	}
	// A phone.
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulatePortrait),
		navigateTo(ui.base+"/"), waitFor("#project-site"))
	b.shoot("overview-phone")
	b.do("phone browse", navigateTo(ui.base+"/jobs/2/browse/www/blog/"), waitFor(`table.files`))
	b.shoot("browse-phone")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// The UI's defences, against the real server: another Host (DNS
// rebinding), forms from another site, a form without its token, and the
// password required off loopback.
func TestUISecurity(t *testing.T) {
	slow(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "a"), []byte("a"), 0o644)
	writeConfig(t, dir, "version: '2'\nproject:\n  site:\n    include: ['./www']\n")
	runup(t, dir, 0, "init")
	runup(t, dir, 0, "backup")
	ui := startUI(t, dir, nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, host, origin string, form url.Values) *http.Response {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, ui.base+path, body)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	port := ui.base[strings.LastIndex(ui.base, ":")+1:]
	tests := []struct {
		name         string
		method, path string
		host, origin string
		form         url.Values
		want         int
	}{
		{"the overview", "GET", "/", "", "", nil, 200},
		{"localhost is the same machine", "GET", "/", "localhost:" + port, "", nil, 200},
		{"another name (DNS rebinding)", "GET", "/", "attacker.example:" + port, "", nil, 421},
		{"a form from another site", "POST", "/tasks", "", "http://attacker.example", url.Values{"kind": {"backup"}, "project": {"site"}}, 403},
		{"a form without its token", "POST", "/tasks", "", "", url.Values{"kind": {"backup"}, "project": {"site"}}, 403},
		{"a form with a wrong token", "POST", "/tasks", "", "", url.Values{"kind": {"backup"}, "project": {"site"}, "csrf": {"00"}}, 403},
		{"a job that does not exist", "GET", "/jobs/99/browse/", "", "", nil, 404},
		{"a path the job lacks", "GET", "/jobs/1/browse/www/nope", "", "", nil, 404},
		// The path is cleaned to /etc/passwd, which the UI does not serve.
		{"a path that climbs", "GET", "/jobs/1/download/../../etc/passwd", "", "", nil, 307},
		{"where it leads", "GET", "/etc/passwd", "", "", nil, 404},
	}
	for _, tt := range tests {
		if resp := do(tt.method, tt.path, tt.host, tt.origin, tt.form); resp.StatusCode != tt.want {
			t.Errorf("%s: %s %s: %d, want %d", tt.name, tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
	if resp := do("GET", "/", "", "", nil); resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", resp.Header)
	}
	if jobs := runup(t, dir, 0, "jobs", "--json"); strings.Count(jobs, `"number"`) != 1 {
		t.Fatal("a refused form started a backup")
	}

	// Off loopback, a password is required; with one, a login page.
	l, _ := net.Listen("tcp", "0.0.0.0:0")
	addr := l.Addr().String()
	l.Close()
	if out := runup(t, dir, 2, "ui", "--listen", addr); !strings.Contains(out, "needs a password") {
		t.Fatalf("no password off loopback: %s", out)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("correct horse\n"), 0o600)
	cmd := exec.Command(runupBin(), "ui", "--listen", addr, "--ui-password-file", pwFile)
	cmd.Dir = dir
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }()
	_, p, _ := net.SplitHostPort(addr)
	base := "http://127.0.0.1:" + p
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+p); err == nil {
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/jobs/1/browse/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("not logged in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := c.Get(base + "/api/status"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("api without login: %d", resp.StatusCode)
	}
	if resp, _ := c.PostForm(base+"/login", url.Values{"password": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	resp, err = c.PostForm(base+"/login?next=/jobs/1/browse/", url.Values{"password": {"correct horse"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs/1/browse/" {
		t.Fatalf("login: %v %v", resp, err)
	}
	if resp, _ := c.Get(base + "/jobs/1/browse/"); resp.StatusCode != 200 {
		t.Fatalf("after login: %d\n%s", resp.StatusCode, out.String())
	}
}
