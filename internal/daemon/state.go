package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// Results of a task.
const (
	ResultSuccess     = "success"
	ResultFailure     = "failure"
	ResultInterrupted = "interrupted"
)

// State is what the daemon remembers between runs.
type State struct {
	Config string               `json:"config"`
	Daemon *DaemonState         `json:"daemon,omitempty"`
	Tasks  map[string]TaskState `json:"tasks"`
}

// DaemonState says a daemon is running, as long as its heartbeat is fresh.
type DaemonState struct {
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
}

// Alive reports whether the daemon's heartbeat is recent at now.
func (d *DaemonState) Alive(now time.Time) bool {
	return d != nil && now.Sub(d.Heartbeat) < 3*heartbeat
}

// TaskState is the outcome of a task's last run.
type TaskState struct {
	LastStart time.Time `json:"last_start,omitzero"`
	LastEnd   time.Time `json:"last_end,omitzero"`
	Running   bool      `json:"running,omitempty"`
	Result    string    `json:"result,omitempty"`
	Error     string    `json:"error,omitempty"`
	Job       int       `json:"job,omitempty"`
	Summary   string    `json:"summary,omitempty"`
}

// StateFile keeps a State on disk. A nil *StateFile remembers nothing.
type StateFile struct {
	path   string
	config string
	mu     sync.Mutex
	log    func(error)
}

// StateDir is where state files live: $XDG_STATE_HOME/runup, else
// ~/.local/state/runup (on macOS and Windows, the user's config directory).
func StateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "runup"), nil
	}
	if runtime.GOOS == "linux" || runtime.GOOS == "freebsd" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		return filepath.Join(home, ".local", "state", "runup"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "runup", "state"), nil
}

// OpenState returns the state file of the config file cfg (absolute) in
// dir; onError hears of writes that failed.
func OpenState(dir, cfg string, onError func(error)) *StateFile {
	sum := sha256.Sum256([]byte(cfg))
	name := "schedule-" + filepath.Base(filepath.Dir(cfg)) + "-" + hex.EncodeToString(sum[:6]) + ".json"
	return &StateFile{path: filepath.Join(dir, name), config: cfg, log: onError}
}

// Path is the file's path.
func (f *StateFile) Path() string {
	if f == nil {
		return ""
	}
	return f.path
}

// Load reads the state; a missing or unreadable file is an empty state.
func (f *StateFile) Load() State {
	s := State{Tasks: map[string]TaskState{}}
	if f == nil {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *StateFile) load() State {
	s := State{Config: f.config, Tasks: map[string]TaskState{}}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return s
	}
	if json.Unmarshal(b, &s) != nil || s.Tasks == nil {
		return State{Config: f.config, Tasks: map[string]TaskState{}}
	}
	return s
}

// Update changes the state and writes it whole (a temporary file renamed
// over the old, so that a crash leaves one or the other).
func (f *StateFile) Update(change func(*State)) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.load()
	change(&s)
	s.Config = f.config
	if err := f.write(s); err != nil && f.log != nil {
		f.log(fmt.Errorf("state file %s: %w", f.path, err))
	}
}

func (f *StateFile) write(s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}
