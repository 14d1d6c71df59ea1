package webui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/runup/runup/internal/browse"
	"github.com/runup/runup/internal/daemon"
	"github.com/runup/runup/internal/progress"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

var osHostname = os.Hostname

func (s *Server) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", staticHandler())
	m.HandleFunc("GET /login", s.login)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.logout)
	m.HandleFunc("GET /{$}", s.overview)
	m.HandleFunc("GET /projects/{project}", s.project)
	m.HandleFunc("GET /jobs/{n}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/jobs/"+r.PathValue("n")+"/browse/", http.StatusSeeOther)
	})
	m.HandleFunc("GET /jobs/{n}/browse/{path...}", s.browse)
	m.HandleFunc("GET /jobs/{n}/download/{path...}", s.download)
	m.HandleFunc("GET /jobs/{n}/restore", s.restoreForm)
	m.HandleFunc("POST /jobs/{n}/restore", s.restore)
	m.HandleFunc("GET /find", s.find)
	m.HandleFunc("GET /diff", s.diff)
	m.HandleFunc("GET /tasks", s.tasks)
	m.HandleFunc("POST /tasks", s.startTask)
	m.HandleFunc("GET /tasks/{id}", s.task)
	m.HandleFunc("GET /api/tasks/{id}", s.apiTask)
	m.HandleFunc("GET /api/status", s.apiStatus)
	s.mux = m
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"bytes": func(n any) string {
		switch v := n.(type) {
		case int64:
			return progress.Bytes(v)
		case uint64:
			return progress.Bytes(int64(v))
		case int:
			return progress.Bytes(int64(v))
		}
		return fmt.Sprint(n)
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04")
	},
	"whenFull": func(t time.Time) string { return t.Local().Format("Mon 2 Jan 2006, 15:04:05 MST") },
	"ago":      ago,
	"seconds": func(f float64) string {
		d := time.Duration(f * float64(time.Second))
		if d < time.Second {
			return fmt.Sprintf("%.1fs", f)
		}
		return d.Round(time.Second).String()
	},
	"ratio": func(f float64) string { return fmt.Sprintf("%.2f×", f) },
	// jobPath is the URL of a path of a job, each part escaped.
	"jobPath": func(kind string, n int, p string) string {
		parts := strings.Split(strings.Trim(p, "/"), "/")
		for i := range parts {
			parts[i] = url.PathEscape(parts[i])
		}
		return fmt.Sprintf("/jobs/%d/%s/%s", n, kind, strings.Join(parts, "/"))
	},
	"join": path.Join,
	"mode": func(n *tree.Node) string {
		var a [10]byte
		a[0] = map[tree.Type]byte{tree.Dir: 'd', tree.Symlink: 'l', tree.Fifo: 'p', tree.Socket: 's', tree.CharDev: 'c', tree.BlockDev: 'b'}[n.Type]
		if a[0] == 0 {
			a[0] = '-'
		}
		for i, c := range "rwxrwxrwx" {
			if n.Mode&(1<<(8-i)) != 0 {
				a[i+1] = byte(c)
			} else {
				a[i+1] = '-'
			}
		}
		return string(a[:])
	},
	"isDir":  func(n *tree.Node) bool { return n.Type == tree.Dir },
	"isFile": func(n *tree.Node) bool { return n.Type == tree.File },
	"isLink": func(n *tree.Node) bool { return n.Type == tree.Symlink },
	"mtime":  func(n *tree.Node) time.Time { return n.MTime.Time() },
	"lower":  strings.ToLower,
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

func (s *Server) parseTemplates() error {
	s.pages = map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	// Files named _*.html are parts that pages share.
	parts, err := fs.Glob(templateFS, "templates/_*.html")
	if err != nil {
		return err
	}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		files := append([]string{"templates/layout.html", name}, parts...)
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		s.pages[base] = t
	}
	return nil
}

// page is what every template gets.
type page struct {
	Title     string
	Location  string
	CSRF      string
	Auth      bool
	Version   string
	Running   *daemon.Run
	Queued    int
	Scheduled bool
	Data      any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	p := page{Title: title, Location: s.cfg.Backend.Location(), CSRF: s.csrfToken(r), Auth: s.cfg.Password != "",
		Version: s.cfg.Version, Data: data, Scheduled: s.cfg.Scheduled}
	if s.cfg.Tasks != nil && name != "login" {
		st := s.cfg.Tasks.Status()
		p.Running, p.Queued = st.Running, len(st.Queue)
	}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		log.Printf("webui: page %s: %v", name, err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// fail shows an error page: 404 for what does not exist, 500 otherwise.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, errNotFound) || errors.Is(err, browse.ErrNotFound) || errors.Is(err, repo.ErrNoJob) {
		code = http.StatusNotFound
	}
	if errors.Is(err, context.Canceled) {
		return // the browser went away
	}
	w.WriteHeader(code)
	s.render(w, r, "error", "Problem", map[string]any{"Error": err.Error(), "Code": code})
}

// repoJobs returns the repository and its jobs, ascending by number.
func (s *Server) repoJobs(ctx context.Context) (*repo.Repository, []*repo.Job, error) {
	rp, err := s.cfg.Backend.Repository(ctx)
	if err != nil {
		return nil, nil, err
	}
	s.cacheMu.Lock()
	if s.jobsRepo != rp {
		s.jobs, s.jobsRepo = browse.NewJobCache(rp, 2*time.Second), rp
		s.stats.reset()
	}
	c := s.jobs
	s.cacheMu.Unlock()
	m, err := c.Get(ctx)
	if err != nil {
		return nil, nil, err
	}
	jobs := make([]*repo.Job, 0, len(m))
	for _, j := range m {
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b *repo.Job) int { return a.Number - b.Number })
	return rp, jobs, nil
}

func (s *Server) job(ctx context.Context, num string) (*repo.Repository, *repo.Job, []*repo.Job, error) {
	rp, jobs, err := s.repoJobs(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("job %q: %w", num, errNotFound)
	}
	for _, j := range jobs {
		if j.Number == n {
			return rp, j, jobs, nil
		}
	}
	return nil, nil, nil, fmt.Errorf("job %d: %w", n, repo.ErrNoJob)
}

// projectView is a project on the overview.
type projectView struct {
	Name     string
	Jobs     []*repo.Job // newest first
	Total    int
	Last     *repo.Job
	Schedule *daemon.TaskStatus
	Running  bool
	Queued   bool
}

func (s *Server) projects(jobs []*repo.Job, limit int) []*projectView {
	by := map[string]*projectView{}
	var order []string
	add := func(name string) *projectView {
		if p, ok := by[name]; ok {
			return p
		}
		p := &projectView{Name: name}
		by[name] = p
		order = append(order, name)
		return p
	}
	for _, name := range s.cfg.Backend.Projects() {
		add(name)
	}
	for i := len(jobs) - 1; i >= 0; i-- {
		p := add(jobs[i].Project)
		p.Total++
		if p.Last == nil {
			p.Last = jobs[i]
		}
		if limit == 0 || len(p.Jobs) < limit {
			p.Jobs = append(p.Jobs, jobs[i])
		}
	}
	if s.cfg.Tasks != nil {
		st := s.cfg.Tasks.Status()
		for i := range st.Tasks {
			t := &st.Tasks[i]
			if t.Task.Kind == daemon.Backup {
				if p, ok := by[t.Task.Project]; ok {
					p.Schedule = t
				}
			}
		}
		if st.Running != nil && st.Running.Task.Kind == daemon.Backup {
			if p, ok := by[st.Running.Task.Project]; ok {
				p.Running = true
			}
		}
		for _, q := range st.Queue {
			if p, ok := by[q.Task.Project]; ok && q.Task.Kind == daemon.Backup {
				p.Queued = true
			}
		}
	}
	out := make([]*projectView, 0, len(order))
	for _, name := range order {
		out = append(out, by[name])
	}
	return out
}

// health is the repository card.
type health struct {
	Stats     *browse.RepoStats
	StatsErr  string
	Computing bool
	LastCheck *daemon.TaskStatus
	Checked   *daemon.Run
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	rp, jobs, err := s.repoJobs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := health{}
	h.Stats, h.Computing, h.StatsErr = s.stats.get(rp, jobs)
	var maint []daemon.TaskStatus
	if s.cfg.Tasks != nil {
		st := s.cfg.Tasks.Status()
		for i := range st.Tasks {
			if st.Tasks[i].Task.Kind != daemon.Backup {
				maint = append(maint, st.Tasks[i])
			}
			if st.Tasks[i].Task.Kind == daemon.Check {
				h.LastCheck = &st.Tasks[i]
			}
		}
		for i := range st.History {
			if st.History[i].Task.Kind == daemon.Check {
				h.Checked = &st.History[i]
				break
			}
		}
	}
	s.render(w, r, "overview", "Overview", map[string]any{
		"Projects": s.projects(jobs, 8), "Health": h, "Jobs": len(jobs), "Maintenance": maint,
	})
}

func (s *Server) project(w http.ResponseWriter, r *http.Request) {
	_, jobs, err := s.repoJobs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("project")
	for _, p := range s.projects(jobs, 0) {
		if p.Name == name {
			// Grouped by day, newest first: the timeline.
			type day struct {
				Day  string
				Jobs []*repo.Job
			}
			var days []*day
			for _, j := range p.Jobs {
				d := j.Time.Local().Format("Monday 2 January 2006")
				if len(days) == 0 || days[len(days)-1].Day != d {
					days = append(days, &day{Day: d})
				}
				days[len(days)-1].Jobs = append(days[len(days)-1].Jobs, j)
			}
			s.render(w, r, "project", "Project "+name, map[string]any{"Project": p, "Days": days})
			return
		}
	}
	s.fail(w, r, fmt.Errorf("project %q: %w", name, errNotFound))
}

// crumb is one step of the path above a folder.
type crumb struct {
	Name, Path string
}

func crumbs(p string) []crumb {
	var out []crumb
	acc := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		acc = path.Join(acc, part)
		out = append(out, crumb{Name: part, Path: acc})
	}
	return out
}

func cleanPath(p string) string { return strings.Trim(path.Clean("/"+p), "/") }

func (s *Server) browse(w http.ResponseWriter, r *http.Request) {
	rp, j, jobs, err := s.job(r.Context(), r.PathValue("n"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := cleanPath(r.PathValue("path"))
	n, err := browse.Lookup(r.Context(), rp, j.Tree, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data := map[string]any{"Job": j, "Path": p, "Crumbs": crumbs(p), "Node": n, "Name": path.Base("/" + p)}
	var others []*repo.Job
	for _, o := range jobs {
		if o.Project == j.Project && o.Number != j.Number {
			others = append(others, o)
		}
	}
	slices.Reverse(others)
	data["Others"] = others
	if n.Type == tree.Dir {
		t, err := rp.LoadTree(r.Context(), n.Subtree)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		entries := make([]*tree.Node, 0, len(t.Nodes))
		var size uint64
		for i := range t.Nodes {
			entries = append(entries, &t.Nodes[i])
			size += t.Nodes[i].Size
		}
		// Folders first, then files, each by name.
		slices.SortStableFunc(entries, func(a, b *tree.Node) int {
			if (a.Type == tree.Dir) != (b.Type == tree.Dir) {
				if a.Type == tree.Dir {
					return -1
				}
				return 1
			}
			return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
		})
		data["Entries"], data["Size"] = entries, size
		s.render(w, r, "browse", fmt.Sprintf("Job %d /%s", j.Number, p), data)
		return
	}
	s.render(w, r, "file", fmt.Sprintf("Job %d /%s", j.Number, p), data)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	rp, j, _, err := s.job(r.Context(), r.PathValue("n"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := cleanPath(r.PathValue("path"))
	n, err := browse.Lookup(r.Context(), rp, j.Tree, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := path.Base("/" + p)
	if p == "" {
		name = fmt.Sprintf("%s-job-%d", j.Project, j.Number)
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	switch {
	case n.Type == tree.File:
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", disposition(name))
		h.Set("Content-Length", strconv.FormatUint(n.Size, 10))
		err = browse.WriteFile(r.Context(), rp, n, w)
	case n.Type == tree.Dir && r.URL.Query().Get("format") == "zip":
		h.Set("Content-Type", "application/zip")
		h.Set("Content-Disposition", disposition(name+".zip"))
		err = browse.Zip(r.Context(), rp, n, name, w)
	case n.Type == tree.Dir:
		h.Set("Content-Type", "application/x-tar")
		h.Set("Content-Disposition", disposition(name+".tar"))
		err = browse.Dump(r.Context(), rp, n, name, w)
	default:
		http.Error(w, "only files and folders can be downloaded", http.StatusBadRequest)
		return
	}
	if err != nil {
		// Headers are gone: cutting the stream short tells the browser.
		log.Printf("webui: download job %d %s: %v", j.Number, p, err)
		panic(http.ErrAbortHandler)
	}
}

// disposition names a download; the name comes from the job and is
// reduced to what is safe in a header.
func disposition(name string) string {
	safe := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '/' {
			return '_'
		}
		return r
	}, name)
	ascii := strings.Map(func(r rune) rune {
		if r > 0x7e {
			return '_'
		}
		return r
	}, safe)
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii, url.PathEscape(safe))
}

func (s *Server) restoreForm(w http.ResponseWriter, r *http.Request) {
	_, j, _, err := s.job(r.Context(), r.PathValue("n"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	p := cleanPath(q.Get("path"))
	data := map[string]any{"Job": j, "Path": p, "Crumbs": crumbs(p)}
	if q.Get("to") != "" {
		location := ""
		if q.Get("to") == "elsewhere" {
			location = strings.TrimSpace(q.Get("location"))
			if location == "" {
				data["Error"] = "Name the folder to restore into."
				s.render(w, r, "restore", "Restore", data)
				return
			}
		}
		question, err := s.cfg.Backend.RestoreQuestion(j, p, location)
		data["Location"] = location
		if err != nil {
			data["Error"] = err.Error()
		} else {
			data["Question"] = question
		}
	}
	s.render(w, r, "restore", "Restore", data)
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	if !s.checkForm(w, r) {
		return
	}
	_, j, _, err := s.job(r.Context(), r.PathValue("n"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := cleanPath(r.PostFormValue("path"))
	location := strings.TrimSpace(r.PostFormValue("location"))
	// The question is asked again: what was confirmed must still hold.
	if _, err := s.cfg.Backend.RestoreQuestion(j, p, location); err != nil {
		s.fail(w, r, err)
		return
	}
	id, _ := s.cfg.Tasks.Enqueue(daemon.Task{Kind: daemon.Restore, Job: j.Number, Path: p, Location: location})
	http.Redirect(w, r, fmt.Sprintf("/tasks/%d", id), http.StatusSeeOther)
}

// maxHits bounds a search's results on one page.
const maxHits = 500

func (s *Server) find(w http.ResponseWriter, r *http.Request) {
	rp, jobs, err := s.repoJobs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	project := r.URL.Query().Get("project")
	data := map[string]any{"Query": q, "Project": project, "Projects": s.projects(jobs, 1)}
	if q != "" {
		pattern := q
		if !strings.ContainsAny(q, "*?[{/") {
			pattern = "*" + q + "*" // a plain word finds names containing it
		}
		if !doublestar.ValidatePattern(pattern) {
			data["Error"] = fmt.Sprintf("%q is not a valid pattern", q)
		} else {
			type hit struct {
				Job  *repo.Job
				Path string
				Node tree.Node
			}
			var hits []hit
			var selected []*repo.Job
			for i := len(jobs) - 1; i >= 0; i-- {
				if project == "" || jobs[i].Project == project {
					selected = append(selected, jobs[i])
				}
			}
			errStop := errors.New("enough")
			ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
			defer cancel()
			err := browse.Find(ctx, rp, selected, pattern, func(j *repo.Job, p string, n *tree.Node) error {
				hits = append(hits, hit{Job: j, Path: p, Node: *n})
				if len(hits) >= maxHits {
					return errStop
				}
				return nil
			})
			switch {
			case errors.Is(err, errStop):
				data["More"] = true
			case errors.Is(err, context.DeadlineExceeded):
				data["Error"] = "The search took too long and was stopped; the matches found so far are shown. Narrow it down with a project or a longer name."
			case err != nil:
				data["Error"] = err.Error()
			}
			data["Hits"] = hits
		}
	}
	s.render(w, r, "find", "Find", data)
}

// maxChanges bounds the changes a diff page lists.
const maxChanges = 5000

func (s *Server) diff(w http.ResponseWriter, r *http.Request) {
	rp, jobs, err := s.repoJobs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	data := map[string]any{}
	var all []*repo.Job
	for i := len(jobs) - 1; i >= 0; i-- {
		all = append(all, jobs[i])
	}
	data["Jobs"] = all
	a, b := q.Get("a"), q.Get("b")
	if a == "" || b == "" {
		s.render(w, r, "diff", "Compare jobs", data)
		return
	}
	_, ja, _, err := s.job(r.Context(), a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_, jb, _, err := s.job(r.Context(), b)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data["A"], data["B"] = ja, jb
	var changes []browse.Change
	more := false
	totals, err := browse.Diff(r.Context(), rp, ja.Tree, jb.Tree, func(c browse.Change) {
		if len(changes) < maxChanges {
			changes = append(changes, c)
		} else {
			more = true
		}
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data["Changes"], data["Totals"], data["More"] = changes, totals, more
	s.render(w, r, "diff", fmt.Sprintf("Job %d → %d", ja.Number, jb.Number), data)
}

func (s *Server) tasks(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "tasks", "Tasks", s.cfg.Tasks.Status())
}

func (s *Server) startTask(w http.ResponseWriter, r *http.Request) {
	if !s.checkForm(w, r) {
		return
	}
	var t daemon.Task
	switch daemon.Kind(r.PostFormValue("kind")) {
	case daemon.Backup:
		project := r.PostFormValue("project")
		if !slices.Contains(s.cfg.Backend.Projects(), project) {
			s.fail(w, r, fmt.Errorf("project %q is not in runup.yaml: %w", project, errNotFound))
			return
		}
		t = daemon.Task{Kind: daemon.Backup, Project: project}
	case daemon.Forget:
		t = daemon.Task{Kind: daemon.Forget}
	case daemon.Check:
		t = daemon.Task{Kind: daemon.Check}
	default:
		http.Error(w, "unknown task", http.StatusBadRequest)
		return
	}
	id, _ := s.cfg.Tasks.Enqueue(t)
	http.Redirect(w, r, fmt.Sprintf("/tasks/%d", id), http.StatusSeeOther)
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) (daemon.Run, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return daemon.Run{}, false
	}
	run, ok := s.cfg.Tasks.Lookup(id)
	if !ok {
		s.fail(w, r, fmt.Errorf("task %d (tasks are kept until the program restarts): %w", id, errNotFound))
		return daemon.Run{}, false
	}
	return run, true
}

func (s *Server) task(w http.ResponseWriter, r *http.Request) {
	run, ok := s.run(w, r)
	if !ok {
		return
	}
	s.render(w, r, "task", run.Task.String(), taskView(run))
}

// taskJSON is a run for the page's script.
type taskJSON struct {
	ID       int       `json:"id"`
	Task     string    `json:"task"`
	State    string    `json:"state"` // queued, running, success, failure, interrupted
	Progress string    `json:"progress,omitempty"`
	Error    string    `json:"error,omitempty"`
	Summary  string    `json:"summary,omitempty"`
	Job      int       `json:"job,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	Lines    []string  `json:"lines"`
}

func taskView(run daemon.Run) taskJSON {
	t := taskJSON{ID: run.ID, Task: run.Task.String(), State: run.Result, Progress: run.Progress, Error: run.Error,
		Summary: run.Summary, Job: run.Job, Started: run.Started, Ended: run.Ended, Lines: []string{}}
	switch {
	case run.Started.IsZero():
		t.State = "queued"
	case run.Ended.IsZero():
		t.State = "running"
	}
	for _, l := range run.Lines {
		t.Lines = append(t.Lines, l.Time.Local().Format("15:04:05")+"  "+l.Message)
	}
	return t
}

func (s *Server) apiTask(w http.ResponseWriter, r *http.Request) {
	run, ok := s.run(w, r)
	if !ok {
		return
	}
	writeJSON(w, taskView(run))
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Tasks.Status()
	out := map[string]any{"queued": len(st.Queue)}
	if st.Running != nil {
		out["running"] = taskView(*st.Running)
	}
	writeJSON(w, out)
}

// statsCache computes the repository's sizes in the background (it reads
// the index and lists the packs) and keeps them a few minutes.
type statsCache struct {
	mu      sync.Mutex
	stats   *browse.RepoStats
	err     error
	at      time.Time
	running bool
	forJobs int
}

func (c *statsCache) reset() {
	c.mu.Lock()
	c.stats, c.err, c.at = nil, nil, time.Time{}
	c.mu.Unlock()
}

// get returns the last figures (nil while the first are computed) and
// starts a new computation when they are old or the jobs changed.
func (c *statsCache) get(r *repo.Repository, jobs []*repo.Job) (*browse.RepoStats, bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stale := time.Since(c.at) > 5*time.Minute || c.forJobs != len(jobs)
	if stale && !c.running {
		c.running = true
		jobsCopy := slices.Clone(jobs)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			st, err := browse.RepositoryStats(ctx, r, jobsCopy)
			c.mu.Lock()
			defer c.mu.Unlock()
			c.running, c.at, c.forJobs = false, time.Now(), len(jobsCopy)
			if err != nil {
				c.err = err
				return
			}
			c.stats, c.err = &st, nil
		}()
	}
	// The first figures are worth a short wait: most repositories
	// measure in well under a second.
	for i := 0; c.stats == nil && c.running && i < 30; i++ {
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		c.mu.Lock()
	}
	errText := ""
	if c.err != nil {
		errText = c.err.Error()
	}
	return c.stats, c.running, errText
}
