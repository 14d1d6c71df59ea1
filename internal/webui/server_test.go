package webui

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/runup/runup/internal/repo"
)

// noRepo is a Backend for the checks that come before any page reads the
// repository: the login page names the location, nothing more.
type noRepo struct{}

func (noRepo) Repository(context.Context) (*repo.Repository, error) {
	return nil, errors.New("no repository in this test")
}
func (noRepo) Location() string   { return "/srv/backups" }
func (noRepo) Projects() []string { return nil }
func (noRepo) RestoreQuestion(*repo.Job, string, string) (string, error) {
	return "", errors.New("no restores in this test")
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8707": true, "[::1]:8707": true, "localhost:8707": true, "127.1.2.3:1": true,
		"0.0.0.0:8707": false, "[::]:8707": false, "192.168.1.2:8707": false, ":8707": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestNeedsPasswordOffLoopback(t *testing.T) {
	if _, err := New(Config{Backend: noRepo{}, Addr: "0.0.0.0:8707"}); err == nil || !strings.Contains(err.Error(), "needs a password") {
		t.Fatalf("off loopback without a password: %v", err)
	}
	if _, err := New(Config{Backend: noRepo{}, Addr: "0.0.0.0:8707", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
}

// The checks every request passes, before any page reads the repository:
// the Host header (DNS rebinding), the origin of requests that change
// something (CSRF), and the login.
func TestGuard(t *testing.T) {
	open, err := New(Config{Backend: noRepo{}, Addr: "127.0.0.1:8707"})
	if err != nil {
		t.Fatal(err)
	}
	locked, err := New(Config{Backend: noRepo{}, Addr: "0.0.0.0:8707", Password: "correct horse", AllowedHosts: []string{"backup.example"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		srv     *Server
		method  string
		host    string
		path    string
		headers map[string]string
		form    url.Values
		want    int
	}{
		{"static on loopback", open, "GET", "127.0.0.1:8707", "/static/style.css", nil, nil, 200},
		{"another site's name (DNS rebinding)", open, "GET", "evil.example:8707", "/static/style.css", nil, nil, 421},
		{"localhost is this machine", open, "GET", "localhost:8707", "/static/style.css", nil, nil, 200},
		{"a cross-site form", open, "POST", "127.0.0.1:8707", "/tasks", map[string]string{"Origin": "http://evil.example"}, url.Values{"kind": {"backup"}}, 403},
		{"a cross-site fetch", open, "POST", "127.0.0.1:8707", "/tasks", map[string]string{"Sec-Fetch-Site": "cross-site"}, url.Values{"kind": {"backup"}}, 403},
		{"an opaque origin", open, "POST", "127.0.0.1:8707", "/tasks", map[string]string{"Origin": "null"}, nil, 403},
		{"a same-origin form without its token", open, "POST", "127.0.0.1:8707", "/tasks", map[string]string{"Origin": "http://127.0.0.1:8707"}, url.Values{"kind": {"backup"}}, 403},
		{"an allowed name", locked, "GET", "backup.example", "/login", nil, nil, 200},
		{"pages need a login", locked, "GET", "backup.example", "/", nil, nil, 303},
		{"the API needs a login", locked, "GET", "backup.example", "/api/status", nil, nil, 401},
		{"a wrong password", locked, "POST", "backup.example", "/login", nil, url.Values{"password": {"guess"}}, 401},
		{"the password", locked, "POST", "backup.example", "/login", nil, url.Values{"password": {"correct horse"}}, 303},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.form != nil {
				body = strings.NewReader(tc.form.Encode())
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(tc.method, "http://"+tc.host+tc.path, body)
			req.Host = tc.host
			if tc.form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			tc.srv.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s %s (Host %s): %d, want %d\n%s", tc.method, tc.path, tc.host, rec.Code, tc.want, rec.Body.String())
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("no framing protection: %q", csp)
			}
			if tc.want == 303 && tc.path == "/login" {
				c := rec.Result().Cookies()
				if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
					t.Errorf("session cookie: %+v", c)
				}
			}
		})
	}
}

// A login's "next" never leads to another site.
func TestLoginNext(t *testing.T) {
	s, err := New(Config{Backend: noRepo{}, Addr: "127.0.0.1:8707", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	for next, want := range map[string]string{"/jobs/3": "/jobs/3", "//evil.example/": "/", "https://evil.example/": "/", "": "/"} {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8707/login?next="+url.QueryEscape(next), strings.NewReader("password=pw"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if got := rec.Header().Get("Location"); rec.Code != 303 || got != want {
			t.Errorf("next %q: %d to %q, want %q", next, rec.Code, got, want)
		}
	}
}
