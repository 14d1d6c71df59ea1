package repo

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/pack"
)

func TestLocks(t *testing.T) {
	ctx := context.Background()
	_, r := newRepo(t, nil)
	a, err := r.Lock(ctx, LockOptions{Command: "backup a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Lock(ctx, LockOptions{Command: "backup b"})
	if err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	start := time.Now()
	_, err = r.Lock(ctx, LockOptions{Exclusive: true, Command: "prune", Wait: 300 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "shared lock held by \"backup") {
		t.Fatalf("exclusive over shared: %v", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("did not wait for --lock-wait")
	}
	a.Unlock()
	b.Unlock()
	x, err := r.Lock(ctx, LockOptions{Exclusive: true, Command: "prune"})
	if err != nil {
		t.Fatalf("exclusive on a free repository: %v", err)
	}
	if _, err := r.Lock(ctx, LockOptions{Command: "backup"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared over exclusive: %v", err)
	}
	// Released, the exclusive lock lets others in; a waiting locker gets in
	// as soon as it is released.
	go func() { time.Sleep(300 * time.Millisecond); x.Unlock() }()
	s, err := r.Lock(ctx, LockOptions{Command: "backup", Wait: 5 * time.Second})
	if err != nil {
		t.Fatalf("waiting for a released lock: %v", err)
	}
	s.Unlock()
	if locks, _, _ := r.Locks(ctx); len(locks) != 0 {
		t.Fatalf("%d locks left after unlocking", len(locks))
	}
}

func TestStaleLocks(t *testing.T) {
	ctx := context.Background()
	_, r := newRepo(t, nil)
	host, _ := os.Hostname()
	// A dead process of this host: its exclusive lock is cleared at once.
	dead := &LockInfo{Exclusive: true, Host: host, PID: 1 << 30, Created: time.Now(), Refreshed: time.Now()}
	if _, err := r.writeLock(ctx, dead); err != nil {
		t.Fatal(err)
	}
	l, err := r.Lock(ctx, LockOptions{Command: "backup"})
	if err != nil {
		t.Fatalf("dead holder's lock blocked: %v", err)
	}
	l.Unlock()
	// Another host's lock that stopped refreshing is stale but only removed by unlock.
	old := &LockInfo{Exclusive: true, Host: "elsewhere", PID: 1, Created: time.Now().Add(-time.Hour), Refreshed: time.Now().Add(-time.Hour)}
	if _, err := r.writeLock(ctx, old); err != nil {
		t.Fatal(err)
	}
	live := &LockInfo{Exclusive: true, Host: "elsewhere", PID: 2, Created: time.Now(), Refreshed: time.Now()}
	if _, err := r.writeLock(ctx, live); err != nil {
		t.Fatal(err)
	}
	if n, _, err := r.RemoveLocks(ctx, false); err != nil || n != 1 {
		t.Fatalf("unlock removed %d stale locks: %v", n, err)
	}
	if _, err := r.Lock(ctx, LockOptions{Command: "backup"}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid 2 on elsewhere") {
		t.Fatalf("live foreign lock: %v", err)
	}
	if n, _, _ := r.RemoveLocks(ctx, true); n != 1 {
		t.Fatalf("unlock --remove-all removed %d", n)
	}
}

func TestLockRefreshKeepsOneFile(t *testing.T) {
	ctx := context.Background()
	_, r := newRepo(t, nil)
	l, err := r.Lock(ctx, LockOptions{Command: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	before := l.info.name
	if err := l.refresh(); err != nil {
		t.Fatal(err)
	}
	locks, _, _ := r.Locks(ctx)
	if len(locks) != 1 || locks[0].name == before {
		t.Fatalf("after refresh: %d locks", len(locks))
	}
	l.Unlock()
}

// A lock file that cannot be verified is held by someone unknown: it
// conflicts with everyone and is reported as damage, never skipped.
func TestDamagedLockCountsAsHeld(t *testing.T) {
	ctx := context.Background()
	for _, content := range [][]byte{[]byte("junk"), {}, make([]byte, maxLockFile+1)} {
		be, r := newRepo(t, []byte("pw"))
		if err := be.Save(ctx, backend.Handle{Type: backend.Locks, Name: strings.Repeat("ab", 32)}, content); err != nil {
			t.Fatal(err)
		}
		for _, excl := range []bool{false, true} {
			_, err := r.Lock(ctx, LockOptions{Exclusive: excl, Command: "prune"})
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "unlock --remove-all") {
				t.Fatalf("exclusive=%v over a damaged lock: %v", excl, err)
			}
		}
		if n, unreadable, err := r.RemoveLocks(ctx, false); err != nil || n != 0 || unreadable != 1 {
			t.Fatalf("unlock: removed %d, %d unreadable, %v", n, unreadable, err)
		}
		if n, _, err := r.RemoveLocks(ctx, true); err != nil || n != 1 {
			t.Fatalf("unlock --remove-all: removed %d, %v", n, err)
		}
		l, err := r.Lock(ctx, LockOptions{Exclusive: true})
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock()
	}
}

// A writer whose lock is lost writes nothing more: when it could not
// refresh in time (a suspended process), or when its lock file was removed
// or replaced.
func TestLostLockStopsWrites(t *testing.T) {
	ctx := context.Background()
	timing := LockTiming{Refresh: 50 * time.Millisecond, Stale: 300 * time.Millisecond}
	for _, tc := range []struct {
		name string
		harm func(be backend.Backend, l *Lock)
	}{
		{"suspended", func(be backend.Backend, l *Lock) {
			// As after SIGSTOP: the refresher did not run for longer
			// than the stale age, and the first thing to run is a write.
			close(l.stop)
			<-l.done
			l.stop, l.done = make(chan struct{}), make(chan struct{})
			close(l.done)
			l.mu.Lock()
			l.info.Refreshed = l.info.Refreshed.Add(-time.Second)
			l.mu.Unlock()
			l.markLost(l.Valid()) // what the refresher does when it runs again
		}},
		{"removed", func(be backend.Backend, l *Lock) {
			be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: l.info.name})
		}},
		{"replaced", func(be backend.Backend, l *Lock) {
			h := backend.Handle{Type: backend.Locks, Name: l.info.name}
			be.Remove(ctx, h)
			be.Save(ctx, h, []byte("junk"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, r := newRepo(t, []byte("pw"))
			r.opts.Lock = timing
			lost := make(chan error, 1)
			l, err := r.Lock(ctx, LockOptions{Command: "backup", OnLost: func(err error) { lost <- err }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.SaveBlob(ctx, pack.Data, r.Key().Hash([]byte("before")), []byte("before")); err != nil {
				t.Fatal(err)
			}
			tc.harm(be, l)
			select {
			case err := <-lost:
				if !errors.Is(err, ErrLockLost) {
					t.Fatalf("lost with %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the lock's loss went unnoticed")
			}
			if _, err := r.Flush(ctx); !errors.Is(err, ErrLockLost) {
				t.Fatalf("flush after the lock was lost: %v", err)
			}
			if err := r.SaveJob(ctx, &Job{Project: "p"}); !errors.Is(err, ErrLockLost) {
				t.Fatalf("job saved after the lock was lost: %v", err)
			}
			if nums, _ := r.JobNumbers(ctx); len(nums) != 0 {
				t.Fatalf("jobs written: %v", nums)
			}
			l.Unlock()
		})
	}
	// A healthy lock outlives many stale ages by refreshing.
	_, r := newRepo(t, []byte("pw"))
	r.opts.Lock = timing
	l, err := r.Lock(ctx, LockOptions{Command: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * timing.Stale)
	if err := l.Valid(); err != nil {
		t.Fatalf("a refreshed lock was lost: %v", err)
	}
	if err := r.SaveJob(ctx, &Job{Project: "p"}); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}
