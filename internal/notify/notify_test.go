package notify

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runup/runup/internal/hooks"
)

func TestURLFor(t *testing.T) {
	tests := []struct {
		raw  string
		ev   hooks.Event
		want string
	}{
		{"https://hc-ping.com/5e1f", hooks.Start, "https://hc-ping.com/5e1f/start"},
		{"https://hc-ping.com/5e1f", hooks.Success, "https://hc-ping.com/5e1f"},
		{"https://hc-ping.com/5e1f/", hooks.Failure, "https://hc-ping.com/5e1f/fail"},
		{"http://127.0.0.1:8000/ping/abc?create=1", hooks.Failure, "http://127.0.0.1:8000/ping/abc/fail?create=1"},
	}
	for _, tt := range tests {
		if got, err := URLFor(tt.raw, tt.ev); err != nil || got != tt.want {
			t.Errorf("URLFor(%q, %v) = %q, %v; want %q", tt.raw, tt.ev, got, err, tt.want)
		}
	}
}

type request struct{ path, body, ctype string }

func recordingServer(t *testing.T, status int) (*httptest.Server, func() []request) {
	var mu sync.Mutex
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{r.URL.Path, string(b), r.Header.Get("Content-Type")})
		mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), got...)
	}
}

func TestNotify(t *testing.T) {
	srv, got := recordingServer(t, http.StatusOK)
	p := &Pinger{URLs: []string{srv.URL + "/a", srv.URL + "/b"}}
	for ev, body := range map[hooks.Event]string{hooks.Start: "", hooks.Success: "job 3", hooks.Failure: strings.Repeat("x", 20_000)} {
		if err := p.Notify(context.Background(), ev, body); err != nil {
			t.Fatal(err)
		}
	}
	paths := map[string]int{}
	for _, r := range got() {
		paths[r.path] = len(r.body)
		if !strings.HasPrefix(r.ctype, "text/plain") {
			t.Errorf("content type %q", r.ctype)
		}
	}
	want := map[string]int{"/a/start": 0, "/b/start": 0, "/a": 5, "/b": 5, "/a/fail": MaxBody, "/b/fail": MaxBody}
	for p, n := range want {
		if m, ok := paths[p]; !ok || m != n {
			t.Errorf("%s: body %d, want %d (got %v)", p, m, n, paths)
		}
	}
}

func TestNotifyDown(t *testing.T) {
	// A port where nothing listens.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://user:secret@" + l.Addr().String() + "/ping?key=secret"
	l.Close()
	srv, got := recordingServer(t, http.StatusInternalServerError)
	p := &Pinger{URLs: []string{down, srv.URL + "/e"}, Tries: 2, Backoff: 10 * time.Millisecond}
	start := time.Now()
	err = p.Notify(context.Background(), hooks.Success, "ok")
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "answered 500") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error shows the URL's secrets: %v", err)
	}
	if n := len(got()); n != 2 {
		t.Fatalf("%d tries at the failing server, want 2", n)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("too slow")
	}
}

// A server that accepts and never answers costs one timeout per try.
func TestNotifyFrozen(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	p := &Pinger{URLs: []string{srv.URL}, Tries: 2, Timeout: 200 * time.Millisecond, Backoff: 10 * time.Millisecond}
	start := time.Now()
	if err := p.Notify(context.Background(), hooks.Start, ""); err == nil {
		t.Fatal("no error from a frozen server")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}
