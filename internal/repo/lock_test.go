package repo

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
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
	if n, err := r.RemoveLocks(ctx, false); err != nil || n != 1 {
		t.Fatalf("unlock removed %d stale locks: %v", n, err)
	}
	if _, err := r.Lock(ctx, LockOptions{Command: "backup"}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid 2 on elsewhere") {
		t.Fatalf("live foreign lock: %v", err)
	}
	if n, _ := r.RemoveLocks(ctx, true); n != 1 {
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
