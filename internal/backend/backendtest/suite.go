// Package backendtest is the conformance suite every backend runs: local,
// SFTP and S3 alike, each against a real store.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/runup/runup/internal/backend"
)

// Run checks the contract of backend.Backend.
func Run(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	h := backend.Handle{Type: backend.Data, Name: "ab" + fmt.Sprintf("%062x", 1)}

	t.Run("missing", func(t *testing.T) {
		if _, err := be.Load(ctx, h, 0, 0); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("load of a missing file: %v", err)
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("stat of a missing file: %v", err)
		}
		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("removing a missing file: %v", err)
		}
	})
	t.Run("save-load", func(t *testing.T) {
		if err := be.Save(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		got, err := be.Load(ctx, h, 0, 0)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load: %v", err)
		}
		for _, r := range [][2]int64{{0, 1}, {5, 100}, {int64(len(data)) - 7, 7}, {100, 0}} {
			got, err := be.Load(ctx, h, r[0], r[1])
			want := data[r[0]:]
			if r[1] > 0 {
				want = data[r[0] : r[0]+r[1]]
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("load range %v: %v (%d bytes)", r, err, len(got))
			}
		}
		if _, err := be.Load(ctx, h, int64(len(data))-1, 10); err == nil {
			t.Fatal("a range past the end gave no error")
		}
		if li, ok := be.(backend.LoaderInto); ok {
			for _, r := range [][2]int64{{0, 1}, {5, 100}, {int64(len(data)) - 7, 7}} {
				buf := make([]byte, r[1])
				if err := li.LoadInto(ctx, h, r[0], buf); err != nil || !bytes.Equal(buf, data[r[0]:r[0]+r[1]]) {
					t.Fatalf("load into, range %v: %v", r, err)
				}
			}
			if err := li.LoadInto(ctx, h, int64(len(data))-1, make([]byte, 10)); err == nil {
				t.Fatal("load into: a range past the end gave no error")
			}
			missing := backend.Handle{Type: backend.Data, Name: strings.Repeat("ab", 32)}
			if err := li.LoadInto(ctx, missing, 0, make([]byte, 1)); !errors.Is(err, backend.ErrNotExist) {
				t.Fatalf("load into a missing file: %v", err)
			}
		}
		fi, err := be.Stat(ctx, h)
		if err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("stat: %+v %v", fi, err)
		}
	})
	t.Run("write-once", func(t *testing.T) {
		if err := be.Save(ctx, h, []byte("other")); !errors.Is(err, backend.ErrExists) {
			t.Fatalf("second save of a name: %v", err)
		}
		if got, _ := be.Load(ctx, h, 0, 0); !bytes.Equal(got, data) {
			t.Fatal("a second save changed the file")
		}
		// Racing writers of one name: exactly one wins.
		race := backend.Handle{Type: backend.Jobs, Name: "0000000001"}
		var wg sync.WaitGroup
		wins := make([]bool, 6)
		for i := range wins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := be.Save(ctx, race, []byte(fmt.Sprint(i)))
				if err != nil && !errors.Is(err, backend.ErrExists) {
					t.Error(err)
				}
				wins[i] = err == nil
			}()
		}
		wg.Wait()
		n := 0
		for _, w := range wins {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d racing writers of one name succeeded", n)
		}
	})
	t.Run("replace", func(t *testing.T) {
		r, ok := be.(backend.Replacer)
		if !ok {
			t.Fatal("the backend cannot replace the config ('runup migrate' needs it)")
		}
		cfg := backend.Handle{Type: backend.Config}
		if err := be.Save(ctx, cfg, []byte("v1")); err != nil && !errors.Is(err, backend.ErrExists) {
			t.Fatal(err)
		}
		for _, want := range []string{"v2", "v3"} {
			if err := r.Replace(ctx, cfg, []byte(want)); err != nil {
				t.Fatal(err)
			}
			if got, err := backend.LoadAll(ctx, be, cfg); err != nil || string(got) != want {
				t.Fatalf("after replace: %q %v, want %q", got, err, want)
			}
		}
		if err := be.Remove(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("list-remove", func(t *testing.T) {
		var names []string
		for i := range 5 {
			n := fmt.Sprintf("%064x", i+100)
			names = append(names, n)
			if err := be.Save(ctx, backend.Handle{Type: backend.Index, Name: n}, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := be.Save(ctx, backend.Handle{Type: backend.Config}, []byte("cfg")); err != nil {
			t.Fatal(err)
		}
		var got []string
		if err := be.List(ctx, backend.Index, func(fi backend.FileInfo) error {
			got = append(got, fi.Name)
			if fi.Size != 1 {
				t.Errorf("%s: size %d", fi.Name, fi.Size)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(names) {
			t.Fatalf("list: %v, want %v", got, names)
		}
		var data []string
		be.List(ctx, backend.Data, func(fi backend.FileInfo) error { data = append(data, fi.Name); return nil })
		if len(data) != 1 || data[0] != h.Name {
			t.Fatalf("list data: %v", data)
		}
		for _, n := range names {
			if err := be.Remove(ctx, backend.Handle{Type: backend.Index, Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		be.List(ctx, backend.Index, func(backend.FileInfo) error { n++; return nil })
		if n != 0 {
			t.Fatalf("%d files listed after removing all", n)
		}
		if got, err := be.Load(ctx, backend.Handle{Type: backend.Config}, 0, 0); err != nil || string(got) != "cfg" {
			t.Fatalf("config: %q %v", got, err)
		}
	})
}
