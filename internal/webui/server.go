// Package webui is RunUp's web interface: the projects and their jobs as a
// timeline, browsing and searching any job, what changed between two, file
// and folder downloads, restores, and starting backups, forget and check
// with their live progress; with the daemon, each project's schedule.
//
// It is a front end like the command line: it reads the repository through
// browse, and everything that writes (backups, restores, maintenance) goes
// through the daemon's queue, run by the command line's own operations.
// Pages are rendered on the server from embedded templates; a little
// JavaScript updates progress, and everything works without it.
//
// Security: it listens on loopback by default; any other address needs a
// password. Every request's Host must be one the server answers to (against
// DNS rebinding), every form that changes something carries a token bound
// to the session and must come from the same origin (against cross-site
// requests), and pages forbid framing and foreign scripts.
package webui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/runup/runup/internal/browse"
	"github.com/runup/runup/internal/daemon"
	"github.com/runup/runup/internal/repo"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Backend is what the UI needs from the program around it.
type Backend interface {
	// Repository is the repository to read, its index loaded; the
	// backend keeps it fresh (new index files, a reopen after a prune).
	Repository(ctx context.Context) (*repo.Repository, error)
	// Location names the repository for people.
	Location() string
	// Projects are the projects runup.yaml names, in order (none
	// without one).
	Projects() []string
	// RestoreQuestion is the question the command line asks before
	// restoring path of job j to location ("": in place), naming every
	// folder written; an error says why it may not go there.
	RestoreQuestion(j *repo.Job, path, location string) (string, error)
}

// Tasks is the daemon's queue.
type Tasks interface {
	Enqueue(t daemon.Task) (int, bool)
	Status() daemon.Status
	Lookup(id int) (daemon.Run, bool)
}

// Config is a server's configuration.
type Config struct {
	Backend Backend
	Tasks   Tasks
	// Addr is the address listened on (host:port), for the Host check.
	Addr string
	// Password, when set, is asked for at a login page; it must be set
	// for an address that is not loopback.
	Password string
	// AllowedHosts are further names the server is reached by (behind a
	// proxy, a DNS name).
	AllowedHosts []string
	// Scheduled says the daemon runs schedules (runup daemon --ui).
	Scheduled bool
	Version   string
}

// Server serves the UI.
type Server struct {
	cfg      Config
	secret   []byte // signs CSRF tokens
	pages    map[string]*template.Template
	hosts    map[string]bool
	mux      *http.ServeMux
	sessMu   sync.Mutex
	sessions map[string]time.Time // session ID → expiry

	cacheMu  sync.Mutex
	jobs     *browse.JobCache
	jobsRepo *repo.Repository
	stats    *statsCache
}

// sessionLife is how long a login lasts.
const sessionLife = 12 * time.Hour

// IsLoopback reports whether addr (host:port) listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New builds a server. It refuses an address that is not loopback without
// a password.
func New(cfg Config) (*Server, error) {
	if !IsLoopback(cfg.Addr) && cfg.Password == "" {
		return nil, fmt.Errorf("the web UI on %s is reachable from other machines: it needs a password (RUNUP_UI_PASSWORD or --ui-password-file), or listen on 127.0.0.1", cfg.Addr)
	}
	s := &Server{cfg: cfg, sessions: map[string]time.Time{}, hosts: map[string]bool{}, stats: &statsCache{}}
	s.secret = make([]byte, 32)
	if _, err := rand.Read(s.secret); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Addr, err)
	}
	names := append([]string{host, "localhost", "127.0.0.1", "::1"}, cfg.AllowedHosts...)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() || host == "" {
		// Every address of the machine: its IP addresses and name.
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok {
					names = append(names, ipn.IP.String())
				}
			}
		}
		if hn, err := osHostname(); err == nil {
			names = append(names, hn)
		}
	}
	for _, n := range names {
		n = strings.ToLower(strings.Trim(n, "[]"))
		s.hosts[n] = true
		s.hosts[net.JoinHostPort(n, port)] = true
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.guard(s.mux) }

// guard applies the checks every request passes.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		// DNS rebinding: a page of another site that made its name
		// point here still sends its own name as Host.
		if !s.hosts[strings.ToLower(r.Host)] {
			http.Error(w, "unknown host "+r.Host+": this server answers to "+s.cfg.Addr+" (add the name with --ui-allowed-host)", http.StatusMisdirectedRequest)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.sameOrigin(r) {
			http.Error(w, "cross-site request refused", http.StatusForbidden)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/static/") || r.URL.Path == "/login" {
			next.ServeHTTP(w, r)
			return
		}
		if s.cfg.Password != "" && !s.loggedIn(r) {
			if strings.HasPrefix(r.URL.Path, "/api/") || r.Method != http.MethodGet {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin checks that a request that changes something comes from a
// page of this server: by Sec-Fetch-Site and Origin, which browsers set
// and pages cannot forge. (The form token is checked as well.)
func (s *Server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	} else if o == "null" {
		return false
	}
	return true
}

func (s *Server) sessionID(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

const sessionCookie = "runup_session"

func (s *Server) loggedIn(r *http.Request) bool {
	id := s.sessionID(r)
	if id == "" {
		return false
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	exp, ok := s.sessions[id]
	if !ok || time.Now().After(exp) {
		delete(s.sessions, id)
		return false
	}
	return true
}

// csrfToken is the form token of the request's session.
func (s *Server) csrfToken(r *http.Request) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("csrf:" + s.sessionID(r)))
	return hex.EncodeToString(m.Sum(nil))
}

// checkForm parses a POST form and checks its token.
func (s *Server) checkForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrfToken(r))) != 1 {
		http.Error(w, "the form has expired or came from elsewhere: reload the page and try again", http.StatusForbidden)
		return false
	}
	return true
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	if s.cfg.Password == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	data := map[string]any{"Next": next}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		// Slow enough to make guessing expensive; constant time.
		time.Sleep(300 * time.Millisecond)
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("password")), []byte(s.cfg.Password)) == 1 {
			b := make([]byte, 32)
			rand.Read(b)
			id := hex.EncodeToString(b)
			s.sessMu.Lock()
			s.sessions[id] = time.Now().Add(sessionLife)
			s.sessMu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(sessionLife.Seconds())})
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		data["Error"] = "That is not the password."
		w.WriteHeader(http.StatusUnauthorized)
	}
	s.render(w, r, "login", "Log in", data)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.checkForm(w, r) {
		return
	}
	s.sessMu.Lock()
	delete(s.sessions, s.sessionID(r))
	s.sessMu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	fsrv := http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// errNotFound answers 404 with a page.
var errNotFound = errors.New("not found")
