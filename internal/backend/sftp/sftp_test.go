package sftp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/backendtest"
	"github.com/runup/runup/internal/testservers"
)

func open(t *testing.T, srv *testservers.SSHD, dir string) (*Backend, error) {
	t.Setenv("HOME", srv.Home)
	t.Setenv("SSH_AUTH_SOCK", "")
	cfg, err := ParseURL(srv.URL(dir))
	if err != nil {
		t.Fatal(err)
	}
	return Open(context.Background(), cfg)
}

func TestConformance(t *testing.T) {
	srv := testservers.StartSSHD(t)
	be, err := open(t, srv, filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, be)
}

// An unknown or changed host key is refused, never accepted.
func TestHostKeyChecked(t *testing.T) {
	srv := testservers.StartSSHD(t)
	kh := filepath.Join(srv.Home, ".ssh", "known_hosts")
	good, _ := os.ReadFile(kh)
	os.WriteFile(kh, nil, 0o600)
	if _, err := open(t, srv, t.TempDir()); err == nil || !strings.Contains(err.Error(), "host key is unknown") {
		t.Fatalf("unknown host key: %v", err)
	}
	other := strings.Fields(string(good))
	// Same host, another key: a changed key.
	os.WriteFile(kh, []byte(other[0]+" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ4vOHUEZpDmb5dUH0OqkL8ncHq0bAq0tUC0yEydNq4\n"), 0o600)
	if _, err := open(t, srv, t.TempDir()); err == nil || !strings.Contains(err.Error(), "HOST KEY HAS CHANGED") {
		t.Fatalf("changed host key: %v", err)
	}
}

// Repository files on an SFTP server are readable by their owner alone,
// whatever the server's default mode: 0400 once written, in 0700 folders.
// The config can be replaced atomically (for 'runup migrate').
func TestModesAndReplace(t *testing.T) {
	srv := testservers.StartSSHD(t)
	root := filepath.Join(t.TempDir(), "repo")
	be, err := open(t, srv, root)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, h := range []backend.Handle{{Type: backend.Keys, Name: "k1"}, {Type: backend.Data, Name: "ab12"}, {Type: backend.Config}} {
		if err := be.Save(ctx, h, []byte("secret")); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(backend.Path(h))))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o400 {
			t.Errorf("%v: mode %v, want 0400", h, fi.Mode().Perm())
		}
	}
	for _, d := range []string{"", "keys", "data", "data/ab", "index", "jobs", "locks"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s/: mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
	if err := be.Replace(ctx, backend.Handle{Type: backend.Config}, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.Config}); err != nil || string(b) != "new" {
		t.Fatalf("after replace: %q %v", b, err)
	}
}

// A server that stops answering (frozen, not refusing) costs one timeout,
// not forever; once it answers again, the next request dials again.
func TestFrozenServer(t *testing.T) {
	srv := testservers.StartSSHD(t)
	t.Setenv("HOME", srv.Home)
	t.Setenv("SSH_AUTH_SOCK", "")
	cfg, _ := ParseURL(srv.URL(filepath.Join(t.TempDir(), "repo")))
	cfg.Timeout = time.Second
	be, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := backend.Handle{Type: backend.Keys, Name: "k"}
	if err := be.Save(ctx, h, []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	start := time.Now()
	_, err = be.Load(ctx, h, 0, 0)
	if !errors.Is(err, backend.ErrStalled) || time.Since(start) > 10*time.Second {
		t.Fatalf("load from a frozen server: %v after %v", err, time.Since(start))
	}
	srv.Thaw()
	if b, err := be.Load(ctx, h, 0, 0); err != nil || string(b) != "x" {
		t.Fatalf("after the server came back: %q %v", b, err)
	}
}
