package sftp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
