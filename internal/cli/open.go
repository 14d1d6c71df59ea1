package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/cache"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/backend/retry"
	"github.com/runup/runup/internal/backend/s3"
	"github.com/runup/runup/internal/backend/sftp"
	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/known"
	"github.com/runup/runup/internal/repo"
)

// env is what a command works with: the context, its config (nil when run
// with --repo and no runup.yaml) and where the repository is.
type env struct {
	g *globals
	// What this machine remembers of the repository, once opened.
	known      known.Repo
	knownStore *known.Store
	cache      *cache.Backend // nil for local repositories and --no-cache
	cleanup    []func()       // run when the session closes
	dir        string         // absolute context
	cfg        *config.Config
	repoLoc    string
	// passwordFn, when set, replaces the usual password sources (a copy
	// target with its own password).
	passwordFn func() ([]byte, error)
	// noPrompt never asks for a password (shell completion runs under
	// the user's typing).
	noPrompt bool
}

// targetEnv is the environment of another repository (a copy's target):
// the same context and flags, its own location and password. loc is
// relative to the context when it comes from runup.yaml, else to the
// working directory. password nil means the source's sources.
func (e *env) targetEnv(loc string, fromConfig bool, password func() ([]byte, error)) *env {
	t := &env{g: e.g, dir: e.dir, cfg: e.cfg, repoLoc: loc, passwordFn: password}
	if !isURL(loc) && !filepath.IsAbs(loc) {
		base := e.dir
		if !fromConfig {
			base, _ = os.Getwd()
		}
		t.repoLoc = filepath.Join(base, loc)
	}
	return t
}

// loadEnv finds the context, its runup.yaml (which may be missing only when
// --repo names the repository) and the repository's location.
func (g *globals) loadEnv() (*env, error) {
	dir, err := filepath.Abs(g.context)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, usageErr(fmt.Errorf("context %s is not a directory", dir))
	}
	e := &env{g: g, dir: dir}
	e.cfg, err = config.Load(dir)
	if err != nil && (!errors.Is(err, config.ErrNotFound) || g.repo == "") {
		return nil, err
	}
	switch {
	case g.repo != "":
		e.repoLoc = g.repo
	case e.cfg != nil && e.cfg.Repository != "":
		e.repoLoc = e.cfg.Repository
	default:
		e.repoLoc = ".runup"
	}
	if isURL(e.repoLoc) {
		return e, nil
	}
	if !filepath.IsAbs(e.repoLoc) {
		base := dir
		if g.repo != "" {
			base, _ = os.Getwd() // a flag is relative to where the user is
		}
		e.repoLoc = filepath.Join(base, e.repoLoc)
	}
	return e, nil
}

func isURL(s string) bool {
	i := strings.Index(s, "://")
	return i > 0 && !strings.ContainsAny(s[:i], "/.")
}

// localRepoDir is the repository's directory when it is local.
func (e *env) localRepoDir() string {
	if isURL(e.repoLoc) {
		return ""
	}
	return e.repoLoc
}

// uploads is how many packs to write at once: one suffices for a local
// disk, and each costs a pack of memory; remote storage wants more.
func (e *env) uploads() int {
	if e.g.connections > 0 {
		return e.g.connections
	}
	if isURL(e.repoLoc) {
		return 4
	}
	return 1
}

// readers is how many packs a restore reads at once: on a local disk the
// work is CPU-bound and cores+1 suffice, each costing a range buffer;
// remote storage wants more requests in flight.
func (e *env) readers() int {
	if e.g.connections > 0 {
		return e.g.connections
	}
	if isURL(e.repoLoc) {
		return 4
	}
	return runtime.GOMAXPROCS(0) + 1
}

func (e *env) backend(ctx context.Context) (backend.Backend, error) {
	var be backend.Backend
	switch scheme(e.repoLoc) {
	case "":
		lb, err := local.Open(e.repoLoc)
		if err != nil {
			return nil, err
		}
		be = lb
	case "s3":
		cfg, err := s3.ParseURL(e.repoLoc)
		if err != nil {
			return nil, usageErr(err)
		}
		cfg.Timeout = e.g.timeout
		sb, err := s3.Open(cfg)
		if err != nil {
			return nil, err
		}
		be = retry.Wrap(sb, 5, 500*time.Millisecond)
	case "sftp":
		cfg, err := sftp.ParseURL(e.repoLoc)
		if err != nil {
			return nil, usageErr(err)
		}
		cfg.Timeout = e.g.timeout
		sb, err := sftp.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		be = retry.Wrap(sb, 5, 500*time.Millisecond)
	default:
		return nil, usageErr(fmt.Errorf("repository %s: unknown scheme %q (use a path, sftp:// or s3://)", e.repoLoc, scheme(e.repoLoc)))
	}
	if isURL(e.repoLoc) && !e.g.noCache {
		dir := e.g.cacheDir
		if dir == "" {
			var err error
			if dir, err = cache.Dir(); err != nil {
				return nil, fmt.Errorf("cache directory: %w (use --cache-dir or --no-cache)", err)
			}
		}
		cb, err := cache.Wrap(be, dir)
		if err != nil {
			return nil, fmt.Errorf("cache directory %s: %w (use --cache-dir or --no-cache)", dir, err)
		}
		e.cache, be = cb, cb
	}
	return wrapBackend(be)
}

// scheme is a location's URL scheme, or "" for a local path.
func scheme(loc string) string {
	if !isURL(loc) {
		return ""
	}
	return loc[:strings.Index(loc, "://")]
}

// password finds the password without asking: RUNUP_PASSWORD, then
// --password-file, then runup.yaml's password source. nil means none given.
func (e *env) password() ([]byte, error) {
	if e.passwordFn != nil {
		return e.passwordFn()
	}
	if e.g.passwordOverride != nil {
		return e.g.passwordOverride, nil
	}
	if pw, ok := os.LookupEnv("RUNUP_PASSWORD"); ok && pw != "" {
		return []byte(pw), nil
	}
	if e.g.passwordFile != "" {
		b, err := os.ReadFile(e.g.passwordFile)
		if err != nil {
			return nil, usageErr(fmt.Errorf("--password-file: %w", err))
		}
		b = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(b) == 0 {
			return nil, usageErr(fmt.Errorf("--password-file %s is empty", e.g.passwordFile))
		}
		return b, nil
	}
	if e.cfg != nil && e.cfg.Password != "" {
		pw, err := config.ReadPassword(e.cfg.Password, e.cfg.File)
		if err != nil {
			return nil, withCode(ExitPassword, err)
		}
		return pw, nil
	}
	return nil, nil
}

func promptPassword(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, nil
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return nil, nil
	}
	fmt.Fprint(tty, prompt)
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err == nil && pw == nil {
		pw = []byte{} // an empty answer, not "no terminal"
	}
	return pw, err
}

// lockKind is the lock a command holds while it works.
type lockKind int

const (
	noLock lockKind = iota
	// readLock is shared, for commands that only read the repository:
	// where the storage cannot be written they go on without a lock.
	readLock
	sharedLock
	exclusiveLock
)

// session is an open repository and the lock held on it.
type session struct {
	*repo.Repository
	lock *repo.Lock
	env  *env
}

// jobs lists the repository's jobs; records that cannot be read are
// warnings, as every command that lists jobs prints them.
func (s *session) jobs(ctx context.Context) ([]*repo.Job, error) {
	jobs, problems, err := s.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		fmt.Fprintf(s.env.g.stderr, "warning: %v\n", p)
	}
	return jobs, nil
}

// close releases the lock and the backend, and remembers the highest job
// number seen, so that a job that vanishes later is noticed.
func (s *session) close() {
	if e := s.env; e.knownStore != nil && s.HighestJob() > e.known.MaxJob {
		k := e.known
		k.MaxJob = s.HighestJob()
		if err := e.knownStore.Put(k); err != nil {
			fmt.Fprintf(e.g.stderr, "warning: %v\n", err)
		}
	}
	if s.lock != nil {
		e := s.env
		e.g.mu.Lock()
		e.g.release = nil
		e.g.mu.Unlock()
		_ = s.lock.Unlock()
	}
	_ = s.Repository.Close()
	for _, f := range s.env.cleanup {
		f()
	}
	s.env.g.verbosef("index: %d index file(s) read\n", s.IndexFilesRead())
	if s.env.cache != nil {
		s.env.g.verbosef("cache: %d hits, %d misses\n", s.env.cache.Hits.Load(), s.env.cache.Misses.Load())
	}
}

// lockedRepo opens the repository and takes the lock, without loading the
// index (check and repair read index files themselves).
func (e *env) lockedRepo(ctx context.Context, o repo.Options, lk lockKind, command string) (*session, error) {
	r, err := e.openRepo(ctx, o)
	if err != nil {
		return nil, err
	}
	s := &session{Repository: r, env: e}
	if lk == noLock {
		return s, nil
	}
	s.lock, err = r.Lock(ctx, repo.LockOptions{Exclusive: lk == exclusiveLock, Command: command, Wait: e.g.lockWait,
		OnLost: func(err error) { fmt.Fprintf(e.g.stderr, "error: %v\n", err) }})
	switch {
	case err == nil:
		lock := s.lock
		e.g.mu.Lock()
		e.g.release = func() { _ = lock.Unlock() }
		e.g.mu.Unlock()
	case lk == readLock && (errors.Is(err, backend.ErrReadOnly) || errors.Is(err, syscall.ENOSPC)):
		// A mounted snapshot or write-protected media can still be read.
		fmt.Fprintf(e.g.stderr, "warning: no lock file can be written (%v): reading without a lock; do not prune this repository meanwhile\n", err)
	case errors.Is(err, repo.ErrLocked):
		_ = r.Close()
		return nil, withCode(ExitLocked, err)
	default:
		_ = r.Close()
		return nil, err
	}
	return s, nil
}

// open opens the repository, takes the lock, then loads the index (so a
// concurrent prune cannot change it under us).
func (e *env) open(ctx context.Context, o repo.Options, lk lockKind, command string) (*session, error) {
	s, err := e.lockedRepo(ctx, o, lk, command)
	if err != nil {
		return nil, err
	}
	problems, err := s.LoadIndex(ctx)
	if err != nil {
		s.close()
		return nil, err
	}
	for _, p := range problems {
		fmt.Fprintf(e.g.stderr, "warning: %v (run 'runup check', then 'runup repair index')\n", p)
	}
	return s, nil
}

// openRepo opens the repository without locking it or loading its index.
// The repository must be the one this machine remembers at the location,
// and must be encrypted when a password is set: a substitute is refused
// before anything but its config and key files is read.
func (e *env) openRepo(ctx context.Context, o repo.Options) (*repo.Repository, error) {
	pw, err := e.password()
	if err != nil {
		return nil, err
	}
	be, err := e.backend(ctx)
	if err != nil {
		return nil, err
	}
	store, known_, remembered := e.remembered(be.Location())
	o.Lock = lockTiming()
	o.IndexDir = e.indexDir()
	o.SpoolDir = o.IndexDir
	o.RequireEncryption = pw != nil || (remembered && known_.Encrypted)
	if remembered {
		o.PreferKey = known_.KeyID
		o.HighestJob = known_.MaxJob
	}
	r, err := repo.Open(ctx, be, func() ([]byte, error) {
		if pw != nil {
			return pw, nil
		}
		if e.noPrompt {
			return nil, errors.New("the repository needs a password")
		}
		return promptPassword(fmt.Sprintf("Password for %s: ", e.repoLoc))
	}, o)
	// The key derivation's memory is garbage now: hand it back before
	// the real work, so that it does not add to its peak memory.
	runtime.GC()
	debug.FreeOSMemory()
	if err != nil {
		_ = be.Close()
		switch {
		case errors.Is(err, repo.ErrNotFound):
			return nil, fmt.Errorf("no repository at %s: run 'runup init' first: %w", e.repoLoc, repo.ErrNotFound)
		case errors.Is(err, repo.ErrNoPassword):
			return nil, fmt.Errorf("%w: set RUNUP_PASSWORD, use --password-file, or add password: to runup.yaml", err)
		case errors.Is(err, repo.ErrWrongPassword):
			return nil, fmt.Errorf("%s: %w: no key of the repository opens with it", e.repoLoc, err)
		case errors.Is(err, repo.ErrNotEncrypted) && remembered && known_.Encrypted:
			return nil, known.Check(known_, known.Repo{Location: be.Location(), Encrypted: false})
		}
		return nil, err
	}
	found := identityOf(be.Location(), r.Identity())
	if remembered {
		if err := known.Check(known_, found); err != nil {
			_ = r.Close()
			return nil, err
		}
	}
	if store != nil {
		if err := store.Put(found); err != nil {
			fmt.Fprintf(e.g.stderr, "warning: %v\n", err)
		}
		if remembered {
			found.MaxJob = known_.MaxJob
		}
		e.known, e.knownStore = found, store
	}
	return r, nil
}

// indexDir is where the index is kept on disk, so that memory does not grow
// with the repository: the cache directory's "index" folder, or, with
// --no-cache or no cache directory, a temporary folder removed at the end.
func (e *env) indexDir() string {
	if !e.g.noCache {
		dir := e.g.cacheDir
		if dir == "" {
			dir, _ = cache.Dir()
		}
		if dir != "" {
			dir = filepath.Join(dir, "index")
			if err := os.MkdirAll(dir, 0o700); err == nil {
				return dir
			}
		}
	}
	dir, err := os.MkdirTemp("", "runup-index-")
	if err != nil {
		return "" // in memory, then
	}
	e.cleanup = append(e.cleanup, func() { os.RemoveAll(dir) })
	return dir
}

func identityOf(location string, id repo.Identity) known.Repo {
	return known.Repo{Location: location, ID: id.ID, Encrypted: id.Encrypted, Fingerprint: id.Fingerprint,
		Version: id.Version, KeyID: id.KeyID, LastSeen: time.Now().UTC().Round(time.Second)}
}

// remembered looks up what this machine knows of a location. A store that
// cannot be read is an error the user must see, not a reason to trust.
func (e *env) remembered(location string) (*known.Store, known.Repo, bool) {
	path, err := known.DefaultPath()
	if err != nil {
		fmt.Fprintf(e.g.stderr, "warning: no place to remember repositories (%v): a substituted repository cannot be recognised\n", err)
		return nil, known.Repo{}, false
	}
	store := known.Open(path)
	r, ok, err := store.Get(location)
	if err != nil {
		fmt.Fprintf(e.g.stderr, "warning: %v\n", err)
		return nil, known.Repo{}, false
	}
	return store, r, ok
}
