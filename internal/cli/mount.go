package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/mount"
	"github.com/runup/runup/internal/repo"
)

func newMount(g *globals) *cobra.Command {
	var (
		allowOther bool
		noLock     bool
		cacheSize  string
	)
	c := &cobra.Command{
		Use:   "mount MOUNTPOINT",
		Short: "Show every job as a read-only folder (FUSE) until Ctrl-C or umount",
		Long: `Mount the repository read-only at MOUNTPOINT (an existing, empty folder)
and stay in the foreground until Ctrl-C, SIGTERM or 'umount MOUNTPOINT'.

  MOUNTPOINT/jobs/<N>/                job N, laid out as 'runup restore -j N -l X' lays it under X
  MOUNTPOINT/projects/<project>/<N>   a link to ../../jobs/<N>; latest links to the newest
  MOUNTPOINT/tags/<tag>/<N>           a link to ../../jobs/<N>
  MOUNTPOINT/hosts/<host>/<N>         a link to ../../jobs/<N>

Files keep the job's sizes, modes, owners, times, links and extended
attributes (the kernel applies the modes). Reading a file fetches only the
chunks read, through a cache of --cache-size; new jobs appear within
seconds. A shared lock is held while mounted (--no-lock: none; a prune
may then remove data being read). Needs FUSE: /dev/fuse, and fusermount3
(Debian: apt install fuse3) when not run as root.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := config.ParseSize(cacheSize)
			if err != nil {
				return usageErr(fmt.Errorf("--cache-size: %w", err))
			}
			return runMount(cmd.Context(), g, args[0], mount.Options{AllowOther: allowOther, CacheBytes: int(size)}, noLock)
		},
	}
	c.Flags().BoolVar(&allowOther, "allow-other", false, "let other users see the mount (their permissions still apply; needs user_allow_other in /etc/fuse.conf unless root)")
	c.Flags().BoolVar(&noLock, "no-lock", false, "hold no lock while mounted")
	c.Flags().StringVar(&cacheSize, "cache-size", "128M", "memory for chunks read (e.g. 64M, 1G)")
	return c
}

func runMount(ctx context.Context, g *globals, dir string, o mount.Options, noLockFlag bool) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return usageErr(fmt.Errorf("mountpoint %s does not exist: create it first (mkdir %s)", dir, dir))
	case err != nil:
		return err
	case !fi.IsDir():
		return usageErr(fmt.Errorf("mountpoint %s is not a folder", dir))
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("FUSE is not available here (/dev/fuse: %v): load the fuse module, or run where FUSE is allowed", err)
	}
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	lk := readLock
	if noLockFlag {
		lk = noLock
	}
	s, err := e.open(ctx, repo.Options{}, lk, "mount")
	if err != nil {
		return err
	}
	defer s.close()
	o.FsName = "runup:" + e.repoLoc
	o.Logf = func(format string, args ...any) {
		fmt.Fprintf(g.stderr, "mount: "+format+"\n", args...)
	}
	m, err := mount.New(s.Repository, dir, o)
	if err != nil {
		return err
	}
	g.printf("Mounted %s at %s (read-only). Ctrl-C or 'umount %s' unmounts.\n", e.repoLoc, dir, dir)
	g.event("mounted", map[string]any{"repository": e.repoLoc, "mountpoint": dir})
	defer g.event("unmounted", map[string]any{"mountpoint": dir})
	done := make(chan struct{})
	go func() {
		m.Wait()
		close(done)
	}()
	select {
	case <-done:
		g.printf("Unmounted %s.\n", dir)
		return nil
	case <-ctx.Done():
	}
	if err := m.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w (run 'fusermount3 -u -z %s')", dir, err, dir)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	g.printf("Unmounted %s.\n", dir)
	return nil
}
