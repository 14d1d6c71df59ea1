package browse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/repo/repotest"
	"github.com/runup/runup/internal/tree"
)

func newRepo(t *testing.T) *repo.Repository { return repotest.New(t, "") }

// saveTree stores a tree from a spec: "name" is a file, "name/" a
// directory whose entries follow in sub.
func saveTree(t *testing.T, r *repo.Repository, spec map[string]any) crypto.ID {
	t.Helper()
	var nodes []tree.Node
	for name, v := range spec {
		switch v := v.(type) {
		case map[string]any:
			nodes = append(nodes, tree.Node{Name: name, Type: tree.Dir, Mode: 0o755, Subtree: saveTree(t, r, v)})
		case string:
			nodes = append(nodes, tree.Node{Name: name, Type: tree.File, Mode: 0o644})
		}
	}
	slices.SortFunc(nodes, func(a, b tree.Node) int { return strings.Compare(a.Name, b.Name) })
	id, _, err := r.SaveTree(context.Background(), &tree.Tree{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestFind(t *testing.T) {
	r := newRepo(t)
	shared := map[string]any{"x.txt": "", "y.log": "", "deep": map[string]any{"x.txt": ""}}
	j1 := &repo.Job{Number: 1, Tree: saveTree(t, r, map[string]any{"a": shared, "b": shared, "x.txt": ""})}
	j2 := &repo.Job{Number: 2, Tree: saveTree(t, r, map[string]any{"a": shared, "c": map[string]any{"z": ""}})}
	if _, err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pattern string
		want    string
	}{
		// By name, in both places the same subtree stands, in both jobs.
		{"x.txt", "1:a/deep/x.txt 1:a/x.txt 1:b/deep/x.txt 1:b/x.txt 1:x.txt 2:a/deep/x.txt 2:a/x.txt"},
		{"*.log", "1:a/y.log 1:b/y.log 2:a/y.log"},
		// By path: where the subtree stands matters.
		{"b/**/*.txt", "1:b/deep/x.txt 1:b/x.txt"},
		{"a/*", "1:a/deep 1:a/x.txt 1:a/y.log 2:a/deep 2:a/x.txt 2:a/y.log"},
		{"deep", "1:a/deep 1:b/deep 2:a/deep"},
		{"nothing", ""},
	}
	for _, tt := range tests {
		var got []string
		err := Find(context.Background(), r, []*repo.Job{j1, j2}, tt.pattern, func(j *repo.Job, p string, n *tree.Node) error {
			got = append(got, fmt.Sprintf("%d:%s", j.Number, p))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if s := strings.Join(got, " "); s != tt.want {
			t.Errorf("Find(%q) = %s\n want %s", tt.pattern, s, tt.want)
		}
	}
	if err := Find(context.Background(), r, nil, "[", nil); err == nil {
		t.Error("an invalid pattern is accepted")
	}
}
