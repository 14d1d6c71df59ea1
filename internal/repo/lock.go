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
	"slices"
	"sync"
	"time"

	"github.com/runup/runup/internal/backend"
)

// Default lock timing. A lock is refreshed (rewritten under a new name) well
// within the stale age, so a live holder is never taken for dead; a holder
// that could not refresh for StaleAge-Refresh stops writing, so that nobody
// can take it for dead while it still writes.
const (
	LockRefresh  = 5 * time.Minute
	LockStaleAge = 30 * time.Minute
)

// LockTiming sets how often locks are refreshed and when one is stale. The
// zero value means the defaults; tests shorten both.
type LockTiming struct {
	Refresh time.Duration
	Stale   time.Duration
}

// WithDefaults fills in the defaults.
func (t LockTiming) WithDefaults() LockTiming {
	if t.Stale <= 0 {
		t.Stale = LockStaleAge
	}
	if t.Refresh <= 0 || t.Refresh >= t.Stale {
		t.Refresh = t.Stale / 6
	}
	return t
}

// Errors of locking.
var (
	// ErrLocked is returned when a conflicting lock is held.
	ErrLocked = errors.New("repository is locked")
	// ErrLockLost stops a writer whose lock could have been taken for
	// stale by another process (it could not refresh it in time, or its
	// lock file was removed or replaced): what it writes now could depend
	// on data a prune has removed.
	ErrLockLost = errors.New("the repository lock was lost")
)

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
// no longer runs, or any holder that stopped refreshing for staleAge.
func (l *LockInfo) Stale(now time.Time, staleAge time.Duration) bool {
	if now.Round(0).Sub(l.Refreshed.Round(0)) > staleAge {
		return true
	}
	host, _ := os.Hostname()
	if l.Host == host && l.PID > 0 {
		return processGone(l.PID)
	}
	return false
}

// Lock is a held lock; Unlock releases it.
type Lock struct {
	r      *Repository
	timing LockTiming
	onLost func(error)
	mu     sync.Mutex
	info   LockInfo
	lost   error // latched: a lost lock never comes back
	told   bool  // onLost was called
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// LockOptions tune Lock.
type LockOptions struct {
	Exclusive bool
	Command   string
	Wait      time.Duration // keep trying this long before failing
	// OnLost is called once, from another goroutine, when the lock is lost;
	// a command cancels its work there.
	OnLost func(error)
}

func (r *Repository) lockTiming() LockTiming { return r.opts.Lock.WithDefaults() }

// Lock takes a shared or exclusive lock, waiting up to o.Wait for
// conflicting holders. Protocol: write our lock file, then list the others;
// on a conflict withdraw ours and retry. Two racing exclusive lockers both
// withdraw and retry after random delays, so neither wins by mistake. A
// lock file that cannot be verified is held by someone unknown: it
// conflicts, and is reported as damage.
func (r *Repository) Lock(ctx context.Context, o LockOptions) (*Lock, error) {
	host, _ := os.Hostname()
	info := LockInfo{Exclusive: o.Exclusive, Host: host, PID: os.Getpid(), Command: o.Command, Created: time.Now().UTC()}
	if u, err := user.Current(); err == nil {
		info.Username = u.Username
	}
	deadline := time.Now().Add(o.Wait)
	delay := 200 * time.Millisecond
	for {
		info.Refreshed = time.Now().UTC().Round(0)
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
			l := &Lock{r: r, timing: r.lockTiming(), onLost: o.OnLost, info: info,
				stop: make(chan struct{}), done: make(chan struct{})}
			r.guard.add(l)
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

// maxLockFile bounds what a lock file may take to read.
const maxLockFile = 64 << 10

func (r *Repository) loadLock(ctx context.Context, name string) (*LockInfo, error) {
	h := backend.Handle{Type: backend.Locks, Name: name}
	sealed, err := backend.LoadAtMost(ctx, r.be, h, maxLockFile)
	if err != nil {
		if errors.Is(err, backend.ErrTooLarge) {
			return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return nil, err
	}
	plain, err := r.key.Open(nil, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrDamaged, h, err)
	}
	var l LockInfo
	if err := json.Unmarshal(plain, &l); err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrDamaged, h, err)
	}
	l.name = name
	return &l, nil
}

// Locks lists the lock files; those that cannot be read and verified are
// returned as problems (wrapping ErrDamaged for damaged or forged ones).
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
		l, err := r.loadLock(ctx, name)
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				return nil, nil, err
			}
			problems = append(problems, fmt.Errorf("lock %s: %w", short(name), err))
			continue
		}
		locks = append(locks, l)
	}
	return locks, problems, nil
}

// ErrDamagedLock wraps ErrDamaged for a lock file that is taken as held
// because it cannot be verified.
func damagedLock(p error) error {
	return fmt.Errorf("%w; a lock that cannot be verified counts as held: if no other RunUp process uses the repository, remove it with 'runup unlock --remove-all'", p)
}

func (r *Repository) conflict(ctx context.Context, mine *LockInfo) (*LockInfo, error) {
	locks, problems, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		// Whoever wrote it may be a prune that is deleting right now.
		return nil, damagedLock(problems[0])
	}
	now := time.Now()
	stale := r.lockTiming().Stale
	for _, l := range locks {
		if l.name == mine.name || !(mine.Exclusive || l.Exclusive) {
			continue
		}
		if l.Stale(now, stale) {
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

// RemoveLocks deletes stale locks, or all locks with all set (unreadable
// ones too), and returns how many it removed. Without all, it says how many
// unreadable lock files it left.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) (removed, unreadable int, err error) {
	locks, problems, err := r.Locks(ctx)
	if err != nil {
		return 0, 0, err
	}
	now := time.Now()
	stale := r.lockTiming().Stale
	known := map[string]bool{}
	for _, l := range locks {
		known[l.name] = true
		if all || l.Stale(now, stale) {
			if err := r.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: l.name}); err != nil {
				return removed, 0, err
			}
			removed++
		}
	}
	if len(problems) == 0 {
		return removed, 0, nil
	}
	if !all {
		return removed, len(problems), nil
	}
	err = r.be.List(ctx, backend.Locks, func(fi backend.FileInfo) error {
		if known[fi.Name] {
			return nil
		}
		removed++
		return r.be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: fi.Name})
	})
	return removed, 0, err
}

func (l *Lock) refresher() {
	defer close(l.done)
	t := time.NewTimer(l.timing.Refresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		next := l.timing.Refresh
		if err := l.Valid(); err != nil {
			l.markLost(err)
			return
		}
		if err := l.refresh(); err != nil {
			if errors.Is(err, ErrLockLost) {
				l.markLost(err)
				return
			}
			next = max(l.timing.Refresh/5, 10*time.Millisecond) // try again soon
		}
		t.Reset(next)
	}
}

func (l *Lock) markLost(err error) {
	l.mu.Lock()
	if l.lost == nil {
		l.lost = err
	}
	err, tell := l.lost, !l.told
	l.told = true
	l.mu.Unlock()
	if tell && l.onLost != nil {
		l.onLost(err)
	}
}

// verify checks that our lock file is still there and ours.
func (l *Lock) verify(ctx context.Context) (LockInfo, error) {
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	cur, err := l.r.loadLock(ctx, info.name)
	switch {
	case errors.Is(err, backend.ErrNotExist):
		return info, fmt.Errorf("%w: its file locks/%s was removed by another process", ErrLockLost, short(info.name))
	case errors.Is(err, ErrDamaged):
		return info, fmt.Errorf("%w: its file locks/%s was replaced", ErrLockLost, short(info.name))
	case err != nil:
		return info, err
	case cur.PID != info.PID || cur.Host != info.Host || !cur.Created.Equal(info.Created) || !cur.Refreshed.Equal(info.Refreshed):
		return info, fmt.Errorf("%w: its file locks/%s was replaced", ErrLockLost, short(info.name))
	}
	return info, nil
}

// refresh checks that our lock file is still ours, then writes a new one
// before removing it, so the lock is never absent.
func (l *Lock) refresh() error {
	ctx := context.Background()
	info, err := l.verify(ctx)
	if err != nil {
		return err
	}
	old := info.name
	info.Refreshed = time.Now().UTC().Round(0)
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

// Valid reports whether the lock still protects writes: nil, or an error
// wrapping ErrLockLost once it was found lost, or once so much wall-clock
// time has passed since its last refresh (a suspended laptop, a stopped
// process, a long stall) that another process could soon take it for stale.
func (l *Lock) Valid() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	since := time.Now().Round(0).Sub(l.info.Refreshed)
	if since > l.timing.Stale-l.timing.Refresh {
		l.lost = fmt.Errorf("%w: not refreshed for %s (was the process suspended?); nothing more is written", ErrLockLost, since.Round(time.Second))
		return l.lost
	}
	return nil
}

// Err reports why the lock was lost, or nil.
func (l *Lock) Err() error { return l.Valid() }

// Unlock releases the lock. It may be called more than once, and from an
// interrupted command's last-resort exit at the same time as its own.
func (l *Lock) Unlock() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.r.guard.remove(l)
		l.mu.Lock()
		name := l.info.name
		l.mu.Unlock()
		err = l.r.be.Remove(context.Background(), backend.Handle{Type: backend.Locks, Name: name})
	})
	return err
}

// writeGuard holds the locks a repository's writes depend on: every write
// checks them first, so a writer whose lock was lost writes nothing more.
type writeGuard struct {
	mu    sync.Mutex
	locks []*Lock
}

func (g *writeGuard) add(l *Lock) {
	g.mu.Lock()
	g.locks = append(g.locks, l)
	g.mu.Unlock()
}

func (g *writeGuard) remove(l *Lock) {
	g.mu.Lock()
	g.locks = slices.DeleteFunc(g.locks, func(x *Lock) bool { return x == l })
	g.mu.Unlock()
}

// verify checks, against the storage, that every lock is still there and
// ours: done before a write that makes others depend on what this process
// wrote (a job record), so that a lock removed a moment ago is noticed.
func (g *writeGuard) verify(ctx context.Context) error {
	g.mu.Lock()
	locks := slices.Clone(g.locks)
	g.mu.Unlock()
	for _, l := range locks {
		if err := l.Valid(); err != nil {
			return err
		}
		if _, err := l.verify(ctx); err != nil {
			if errors.Is(err, ErrLockLost) {
				l.markLost(err)
			}
			return err
		}
	}
	return nil
}

func (g *writeGuard) check() error {
	g.mu.Lock()
	locks := slices.Clone(g.locks)
	g.mu.Unlock()
	for _, l := range locks {
		if err := l.Valid(); err != nil {
			return err
		}
	}
	return nil
}

// save writes a repository file once the locks allow it.
func (r *Repository) save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := r.guard.check(); err != nil {
		return err
	}
	return r.be.Save(ctx, h, data)
}

// Remove deletes a repository file once the locks allow it.
func (r *Repository) Remove(ctx context.Context, h backend.Handle) error {
	if err := r.guard.check(); err != nil {
		return err
	}
	return r.be.Remove(ctx, h)
}
