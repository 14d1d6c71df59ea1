package cli

import (
	"path/filepath"
	"testing"
)

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", true},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/anything", "/", true},
		{"/", "/", true},
	} {
		p, dir := filepath.FromSlash(tc.p), filepath.FromSlash(tc.dir)
		if got := within(p, dir); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", p, dir, got, tc.want)
		}
	}
	if got := fsRoot(filepath.FromSlash("/home/me")); got != string(filepath.Separator) && filepath.VolumeName(got) == "" {
		t.Errorf("fsRoot = %q", got)
	}
}
