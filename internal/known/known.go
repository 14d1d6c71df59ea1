// Package known is this machine's memory of the repositories it has used,
// as ssh's known_hosts is of hosts: for each location, the repository's ID,
// whether it is encrypted, a fingerprint of its master key, and the highest
// job number seen there.
//
// The machine is trusted and the storage is not. Someone who can write the
// storage but holds no key can replace a repository with one of their own;
// remembered here, the replacement is refused by name instead of receiving
// the next backup or feeding the next restore. Jobs that vanish without a
// tombstone are noticed the same way.
package known

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Repo is what is remembered of one location.
type Repo struct {
	Location    string    `json:"location"`
	ID          string    `json:"id"`
	Encrypted   bool      `json:"encrypted"`
	Fingerprint string    `json:"fingerprint"`
	Version     int       `json:"version"`
	KeyID       string    `json:"key,omitempty"`     // the key file that opened it
	MaxJob      int       `json:"max_job,omitempty"` // the highest job number seen
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
}

func (r Repo) describe() string {
	enc := "unencrypted"
	if r.Encrypted {
		enc = "encrypted"
	}
	if r.ID == "" {
		return "an " + enc + " repository"
	}
	id := r.ID
	if len(id) > 8 {
		id = id[:8]
	}
	return fmt.Sprintf("repository %s (%s)", id, enc)
}

// ErrChanged is returned when a location holds another repository than the
// one remembered.
var ErrChanged = errors.New("not the repository this machine knows at this location")

// Store is the file of known repositories.
type Store struct {
	path string
}

// DefaultPath is $RUNUP_KNOWN_REPOSITORIES, or known-repositories.json in
// RunUp's folder of the user's config directory.
func DefaultPath() (string, error) {
	if p := os.Getenv("RUNUP_KNOWN_REPOSITORIES"); p != "" {
		return p, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "runup", "known-repositories.json"), nil
}

// Open returns the store at path; the file is created on the first Put.
func Open(path string) *Store { return &Store{path: path} }

// Path is where the store lives.
func (s *Store) Path() string { return s.path }

type file struct {
	Repositories []Repo `json:"repositories"`
}

func (s *Store) read() (*file, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return &file{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known repositories: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("known repositories %s: %w (fix or remove the file)", s.path, err)
	}
	return &f, nil
}

// write replaces the file atomically: a temporary file, fsync, rename.
func (s *Store) write(f *file) error {
	slices.SortFunc(f.Repositories, func(a, b Repo) int { return strings.Compare(a.Location, b.Location) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".known-*")
	if err != nil {
		return fmt.Errorf("known repositories: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("known repositories: %w", err)
	}
	return nil
}

// update runs fn on the file under an exclusive lock and writes it back if
// fn reports a change.
func (s *Store) update(fn func(f *file) bool) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("known repositories: %w", err)
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("known repositories: %w", err)
	}
	defer unlock()
	f, err := s.read()
	if err != nil {
		return err
	}
	if !fn(f) {
		return nil
	}
	return s.write(f)
}

// Get returns what is remembered of a location.
func (s *Store) Get(location string) (Repo, bool, error) {
	f, err := s.read()
	if err != nil {
		return Repo{}, false, err
	}
	for _, r := range f.Repositories {
		if r.Location == location {
			return r, true, nil
		}
	}
	return Repo{}, false, nil
}

// List returns every known repository.
func (s *Store) List() ([]Repo, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	return f.Repositories, nil
}

// Put remembers r, replacing what was known of its location. MaxJob never
// goes down: jobs seen once stay seen.
func (s *Store) Put(r Repo) error {
	return s.update(func(f *file) bool {
		i := slices.IndexFunc(f.Repositories, func(x Repo) bool { return x.Location == r.Location })
		if i < 0 {
			if r.FirstSeen.IsZero() {
				r.FirstSeen = r.LastSeen
			}
			f.Repositories = append(f.Repositories, r)
			return true
		}
		old := f.Repositories[i]
		if old.ID == r.ID && old.Fingerprint == r.Fingerprint {
			r.MaxJob = max(r.MaxJob, old.MaxJob)
			r.FirstSeen = old.FirstSeen
		}
		if r.FirstSeen.IsZero() {
			r.FirstSeen = r.LastSeen
		}
		cur, _ := json.Marshal(old)
		next, _ := json.Marshal(r)
		f.Repositories[i] = r
		return !bytes.Equal(cur, next)
	})
}

// Forget removes a location; it reports whether it was known.
func (s *Store) Forget(location string) (bool, error) {
	found := false
	err := s.update(func(f *file) bool {
		n := len(f.Repositories)
		f.Repositories = slices.DeleteFunc(f.Repositories, func(x Repo) bool { return x.Location == location })
		found = len(f.Repositories) < n
		return found
	})
	return found, err
}

// Check compares the repository found at a location with what is
// remembered of it, and names both when they differ.
func Check(remembered, found Repo) error {
	if remembered.ID == found.ID && remembered.Fingerprint == found.Fingerprint && remembered.Encrypted == found.Encrypted {
		return nil
	}
	return fmt.Errorf("%s: %w: it held %s, first seen %s, and now holds %s. If you replaced it yourself, run 'runup known --forget %s' and try again; otherwise someone who can write the storage may have substituted it, and nothing was read or written",
		found.Location, ErrChanged, remembered.describe(), remembered.FirstSeen.Local().Format("2006-01-02"), found.describe(), quote(found.Location))
}

// quote makes a location safe to paste into a shell.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
