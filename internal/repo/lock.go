package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sync"
	"syscall"
	"time"

	"github.com/runup/runup/internal/backend"
)

// Lock timing. A lock is refreshed (rewritten under a new name) well within
// the stale age, so a live holder is never taken for dead.
const (
	LockRefresh  = 5 * time.Minute
	LockStaleAge = 30 * time.Minute
)

// ErrLocked is returned when a conflicting lock is held.
var ErrLocked = errors.New("repository is locked")

// LockInfo is the content of a lock file.
type LockInfo struct {
	Exclusive bool      `json:"exclusive"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Username  string    `json:"username,omitempty"`
	Command   string    `json:"command,omitempty"`
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
	name      string
}

func (l *LockInfo) String() string {
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("%s lock held by %q (pid %d on %s) since %s", kind, l.Command, l.PID, l.Host,
		l.Created.Local().Format("2006-01-02 15:04:05"))
}

// Stale reports whether a lock's holder is gone: a process of this host that
// no longer runs, or any holder that stopped refreshing.
func (l *LockInfo) Stale(now time.Time) bool {
	if now.Sub(l.Refreshed) > LockStaleAge {
		return true
	}
	host, _ := os.Hostname()
	if l.Host == host && l.PID > 0 {
		err := syscall.Kill(l.PID, 0)
		return errors.Is(err, syscall.ESRCH)
	}
	return false
}

// Lock is a held lock; Unlock releases it.
type Lock struct {
	r      *Repository
	mu     sync.Mutex
	info   LockInfo
	stop   chan struct{}
	done   chan struct{}
	failed error
}

// LockOptions tune Lock.
type LockOptions struct {
	Exclusive bool
	Command   string
	Wait      time.Duration // keep trying this long before failing
}

// Lock takes a shared or exclusive lock, waiting up to o.Wait for
// conflicting holders. Protocol: write our lock file, then list the others;
// on a conflict withdraw ours and retry. Two racing exclusive lockers both
// withdraw and retry after random delays, so neither wins by mistake.
func (r *Repository) Lock(ctx context.Context, o LockOptions) (*Lock, error) {
	host, _ := os.Hostname()
	info := LockInfo{Exclusive: o.Exclusive, Host: host, PID: os.Getpid(), Command: o.Command, Created: time.Now().UTC()}
	if u, err := user.Current(); err == nil {
		info.Username = u.Username
	}
	deadline := time.Now().Add(o.Wait)
	delay := 200 * time.Millisecond
	for {
		info.Refreshed = time.Now().UTC()
		name, err := r.writeLock(ctx, &info)
		if err != nil {
			return nil, err
		}
		info.name = name
		holder, err := r.conflict(ctx, &info)
		if err != nil {
			_ = r.be.Remove(context.WithoutCancel(ctx), backend.Handle{Type: backend.Locks, Name: name})
			return nil, err
		}
		if holder == nil {
			l := &Lock{r: r, info: info, stop: make(chan struct{}), done: make(chan struct{})}
			go l.refresher()
			return l, nil
		}
		_ = r.be.Remove(context.WithoutCancel(ctx), backend.Handle{Type: backend.Locks, Name: name})
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s (wait with --lock-wait, or remove a stale lock with 'runup unlock')", ErrLocked, holder)
		}
		var j [1]byte
		_, _ = rand.Read(j[:])
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay + time.Duration(j[0])*time.Millisecond):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (r *Repository) writeLock(ctx context.Context, info *LockInfo) (string, error) {
	var rnd [32]byte
	_, _ = rand.Read(rnd[:])
	name := hex.EncodeToString(rnd[:])
	plain, err := json.Marshal(info)
	if err != nil {
		return "", err
	}
	if err := r.be.Save(ctx, backend.Handle{Type: backend.Locks, Name: name}, r.key.Seal(nil, plain)); err != nil {
		return "", fmt.Errorf("write lock: %w", err)
	}
	return name, nil
}

// Locks lists the lock files; unreadable ones are returned as problems.
func (r *Repository) Locks(ctx context.Context) ([]*LockInfo, []error, error) {
	var names []string
	if err := r.be.List(ctx, backend.Locks, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var (
		locks    []*LockInfo
		problems []error
	)
	for _, name := range names {
		plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.Locks, Name: name})
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		var l LockInfo
		if err == nil {
			err = json.Unmarshal(plain, &l)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("lock %s: %w", name[:8], err))
			continue
		}
		l.name = name
		locks = append(locks, &l)
	}
	return locks, problems, nil
}

func (r *Repository) conflict(ctx context.Context, mine *LockInfo) (*LockInfo, error) {
	locks, _, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, l := range locks {
		if l.name == mine.name || !(mine.Exclusive || l.Exclusive) {
			continue
		}
		if l.Stale(now) {
			host, _ := os.Hostname()
			if l.Host == host {
				// A dead process of this host: safe to clear at once.
				_ = r.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: l.name})
			}
			continue
		}
		return l, nil
	}
	return nil, nil
}

// RemoveLocks deletes stale locks, or all locks with all set, and returns
// how many it removed.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) (int, error) {
	locks, problems, err := r.Locks(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	now := time.Now()
	for _, l := range locks {
		if all || l.Stale(now) {
			if err := r.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: l.name}); err != nil {
				return n, err
			}
			n++
		}
	}
	if all && len(problems) > 0 {
		// Unreadable lock files are garbage too, once the user says all.
		_ = r.be.List(ctx, backend.Locks, func(fi backend.FileInfo) error {
			for _, l := range locks {
				if l.name == fi.Name {
					return nil
				}
			}
			n++
			return r.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: fi.Name})
		})
	}
	return n, nil
}

func (l *Lock) refresher() {
	defer close(l.done)
	t := time.NewTicker(LockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.refresh(); err != nil {
				l.mu.Lock()
				l.failed = err
				l.mu.Unlock()
			}
		}
	}
}

// refresh writes a new lock file before removing the old one, so the lock is
// never absent.
func (l *Lock) refresh() error {
	ctx := context.Background()
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	old := info.name
	info.Refreshed = time.Now().UTC()
	name, err := l.r.writeLock(ctx, &info)
	if err != nil {
		return err
	}
	info.name = name
	l.mu.Lock()
	l.info = info
	l.mu.Unlock()
	return l.r.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: old})
}

// Err reports a failure to refresh the lock: a long operation should stop.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	name := l.info.name
	l.mu.Unlock()
	return l.r.be.Remove(context.Background(), backend.Handle{Type: backend.Locks, Name: name})
}
