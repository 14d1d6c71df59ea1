// Package repotest makes repositories for the tests of the packages built
// on internal/repo: a real repository on a local disk in the test's
// temporary folder, its index loaded, closed when the test ends.
package repotest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/repo"
)

// New makes and opens a repository, encrypted when password is not empty.
func New(t testing.TB, password string) *repo.Repository {
	t.Helper()
	dir := t.TempDir()
	be, err := local.Open(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var pw repo.PasswordFunc
	o := repo.InitOptions{}
	if password != "" {
		o.Password = []byte(password)
		pw = func() ([]byte, error) { return []byte(password), nil }
	}
	if _, err := repo.Init(ctx, be, o); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, pw, repo.Options{IndexDir: filepath.Join(dir, "idx")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
