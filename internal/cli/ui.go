package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/daemon"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/webui"
)

// DefaultUIAddr is where the web UI listens unless told otherwise.
const DefaultUIAddr = "127.0.0.1:8707"

// uiFlags are the web UI's flags, shared by 'ui' and 'daemon --ui'.
type uiFlags struct {
	passwordFile string
	allowedHosts []string
}

func (f *uiFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.passwordFile, "ui-password-file", "", "the web UI's password, from this file (else $RUNUP_UI_PASSWORD); required off loopback")
	c.Flags().StringSliceVar(&f.allowedHosts, "ui-allowed-host", nil, "another name the UI is reached by (a DNS name, behind a proxy; repeatable)")
}

func (f *uiFlags) password() (string, error) {
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return "", usageErr(fmt.Errorf("--ui-password-file: %w", err))
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", usageErr(fmt.Errorf("--ui-password-file %s is empty", f.passwordFile))
		}
		return pw, nil
	}
	return os.Getenv("RUNUP_UI_PASSWORD"), nil
}

func newUI(g *globals) *cobra.Command {
	var listen string
	var f uiFlags
	c := &cobra.Command{
		Use:   "ui",
		Short: "Serve a web UI: projects, jobs, browsing, search, diff, downloads, restores, backups",
		Long: `Serve a web UI for the context's repository until Ctrl-C: each project's jobs
as a timeline; browse any job, search by name across jobs, compare two jobs;
download a file, or a folder as zip or tar; restore a file or folder to its
place or elsewhere (asking as 'runup restore' asks); start a backup, forget
and prune, or a check, and follow its progress; the repository's size,
dedup and compression ratios and last check.

It listens on 127.0.0.1:8707 by default. Any other address needs a
password, from --ui-password-file or $RUNUP_UI_PASSWORD (never on the
command line), asked for at a login page. 'runup daemon --ui ADDR' serves
the same UI with the schedules' state.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUI(cmd.Context(), g, listen, f)
		},
	}
	c.Flags().StringVar(&listen, "listen", DefaultUIAddr, "address to listen on (host:port)")
	f.add(c)
	return c
}

func runUI(ctx context.Context, g *globals, listen string, f uiFlags) error {
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	b, err := newUIBackend(ctx, g, e)
	if err != nil {
		return err
	}
	defer b.close()
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d := daemon.New(&taskRunner{g: g}, log, nil)
	b.d = d
	stop, err := serveUI(ctx, g, b, d, listen, f, false)
	if err != nil {
		return err
	}
	defer stop()
	err = d.Run(ctx, func() (daemon.Plan, error) { return daemon.Plan{}, nil }, nil)
	if err == nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// serveUI starts the web UI on addr; stop shuts it down.
func serveUI(ctx context.Context, g *globals, b *uiBackend, d *daemon.Daemon, addr string, f uiFlags, scheduled bool) (func(), error) {
	pw, err := f.password()
	if err != nil {
		return nil, err
	}
	srv, err := webui.New(webui.Config{Backend: b, Tasks: d, Addr: addr, Password: pw, AllowedHosts: f.allowedHosts,
		Scheduled: scheduled, Version: Version})
	if err != nil {
		return nil, usageErr(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("web UI: %w (is another one running? choose another address with --listen)", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(g.stderr, "web UI: %v\n", err)
		}
	}()
	fmt.Fprintf(g.stderr, "RunUp web UI on http://%s/ (Ctrl-C stops)\n", l.Addr())
	g.event("listening", map[string]any{"url": fmt.Sprintf("http://%s/", l.Addr())})
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}, nil
}

// uiBackend gives the web UI the repository, open without a lock for
// reading (downloads and browsing read what is there; writing goes
// through the daemon's tasks, which lock), and the command line's answers.
type uiBackend struct {
	g *globals
	e *env
	d *daemon.Daemon

	mu        sync.Mutex
	s         *session
	refreshed time.Time
	seenMaint int // the newest forget whose prune the open repository has seen
}

func newUIBackend(ctx context.Context, g *globals, e *env) (*uiBackend, error) {
	// Asked once (at a prompt, if need be): the UI's reopens and the
	// tasks it runs use the same password.
	pw, err := e.password()
	if err != nil {
		return nil, err
	}
	b := &uiBackend{g: g, e: e}
	if pw == nil {
		e.passwordFn = func() ([]byte, error) {
			p, err := promptPassword(fmt.Sprintf("Password for %s: ", e.repoLoc))
			if p != nil {
				pw = p
				g.passwordOverride = p
				e.passwordFn = func() ([]byte, error) { return pw, nil }
			}
			return p, err
		}
	}
	if _, err := b.Repository(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *uiBackend) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s != nil {
		b.s.close()
		b.s = nil
	}
}

// Repository returns the open repository: new index files are read every
// few seconds, and after a forget (its prune moves data) it is opened
// again; the old one is closed a little later, for requests still using it.
func (b *uiBackend) Repository(ctx context.Context) (*repo.Repository, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.d != nil && b.s != nil {
		for _, r := range b.d.Status().History {
			if r.Task.Kind == daemon.Forget && r.ID > b.seenMaint {
				b.seenMaint = r.ID
				old := b.s
				b.s = nil
				time.AfterFunc(5*time.Minute, old.close)
				break
			}
		}
	}
	if b.s == nil {
		s, err := b.e.open(ctx, repo.Options{}, noLock, "ui")
		if err != nil {
			return nil, err
		}
		b.s, b.refreshed = s, time.Now()
		return s.Repository, nil
	}
	if time.Since(b.refreshed) > 2*time.Second {
		if _, err := b.s.RefreshIndex(ctx); err != nil {
			return nil, err
		}
		b.refreshed = time.Now()
	}
	return b.s.Repository, nil
}

func (b *uiBackend) Location() string { return b.e.repoLoc }

func (b *uiBackend) Projects() []string {
	if b.e.cfg == nil {
		return nil
	}
	return b.e.cfg.Order
}

// RestoreQuestion asks what 'runup restore' asks, for one path of a job.
func (b *uiBackend) RestoreQuestion(j *repo.Job, path, location string) (string, error) {
	dest, err := b.e.restoreTarget(j, location)
	if err != nil {
		return "", err
	}
	if d := b.e.localRepoDir(); d != "" {
		for _, p := range dest.clear() {
			if within(p, d) {
				return "", fmt.Errorf("location %s is inside the repository; choose another", p)
			}
		}
	}
	what := "the whole job"
	if path != "" {
		what = "/" + path
	}
	return fmt.Sprintf("Restore %s of project %q (job %d of %s) %s?", what, j.Project, j.Number,
		j.Time.Local().Format("2006-01-02 15:04"), dest.describe()), nil
}
