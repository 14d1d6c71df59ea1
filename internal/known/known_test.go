package known

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPutGetForget(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "sub", "known.json"))
	if _, ok, err := s.Get("/r"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	now := time.Now().UTC().Round(time.Second)
	r := Repo{Location: "/r", ID: "aaaa1111", Encrypted: true, Fingerprint: "f1", Version: 3, MaxJob: 5, LastSeen: now}
	if err := s.Put(r); err != nil {
		t.Fatal(err)
	}
	// Jobs seen once stay seen: a lower number does not replace it.
	r.MaxJob = 2
	r.LastSeen = now.Add(time.Hour)
	if err := s.Put(r); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get("/r")
	if err != nil || !ok || got.MaxJob != 5 || !got.FirstSeen.Equal(now) || !got.LastSeen.Equal(now.Add(time.Hour)) {
		t.Fatalf("got %+v %v %v", got, ok, err)
	}
	// Another repository at the location (after forget, or init) starts afresh.
	if err := s.Put(Repo{Location: "/r", ID: "bbbb", Fingerprint: "f2", LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Get("/r"); got.MaxJob != 0 || got.ID != "bbbb" {
		t.Fatalf("replaced: %+v", got)
	}
	if found, err := s.Forget("/r"); !found || err != nil {
		t.Fatalf("forget: %v %v", found, err)
	}
	if found, _ := s.Forget("/r"); found {
		t.Fatal("forgot twice")
	}
}

func TestCheck(t *testing.T) {
	base := Repo{Location: "s3://h/b", ID: "aaaa1111", Encrypted: true, Fingerprint: "f1"}
	for _, tc := range []struct {
		name  string
		found func(r Repo) Repo
		ok    bool
	}{
		{"same", func(r Repo) Repo { return r }, true},
		{"same, more jobs", func(r Repo) Repo { r.MaxJob = 9; return r }, true},
		{"other ID", func(r Repo) Repo { r.ID = "bbbb2222"; return r }, false},
		{"same ID, other key", func(r Repo) Repo { r.Fingerprint = "f9"; return r }, false},
		{"no longer encrypted", func(r Repo) Repo { r.Encrypted = false; return r }, false},
	} {
		err := Check(base, tc.found(base))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && (!errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "aaaa1111 (encrypted)") ||
			!strings.Contains(err.Error(), "runup known --forget s3://h/b")) {
			t.Errorf("%s: message %q", tc.name, err)
		}
	}
}

// Two processes remembering repositories at once lose nothing.
func TestConcurrentPut(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "known.json"))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(Repo{Location: fmt.Sprint("/r", i), ID: "x"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if all, err := s.List(); err != nil || len(all) != 20 {
		t.Fatalf("%d remembered: %v", len(all), err)
	}
}
