package archiver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// --one-file-system stops at a filesystem mounted below an include.
func TestOneFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"here": "x", "mnt/.keep": ""})
	mnt := filepath.Join(src, "mnt")
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	writeFiles(t, mnt, map[string]string{"there": "y"})
	for _, tc := range []struct {
		one  bool
		want []string
	}{{false, []string{"here", "mnt/there"}}, {true, []string{"here"}}} {
		r := newRepo(t)
		f := NewFilter(src, nil, true)
		f.OneFileSystem = tc.one
		j, err := Backup(context.Background(), r, Options{Project: "p", Base: src, InContext: true, Paths: []string{src}, Filter: f, Stats: &Stats{}})
		if err != nil {
			t.Fatal(err)
		}
		if got := files(contents(t, r, j)); !slices.Equal(got, tc.want) {
			t.Errorf("one-file-system %v: %v, want %v", tc.one, got, tc.want)
		}
	}
}
