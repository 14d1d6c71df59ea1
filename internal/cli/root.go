// Package cli is RunUp's command line: one file per command, each parsing
// flags, calling a journey, printing results and choosing an exit code.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/progress"
)

// globals are the flags every command takes.
type globals struct {
	context      string
	verbose      bool
	repo         string
	passwordFile string
	json         bool
	quiet        bool
	cpuProfile   string
	lockWait     time.Duration
	timeout      time.Duration
	connections  int
	cacheDir     string
	noCache      bool

	stdin io.Reader
	// answers reads the answers to questions from stdin.
	answers *bufio.Reader
	stdout  io.Writer
	stderr  io.Writer

	mu      sync.Mutex
	release func() // releases the repository lock held, if any
	grace   time.Duration

	// onProgress, when set, receives progress lines instead of the
	// terminal (a task of the daemon, shown by the web UI).
	onProgress func(string)
	// passwordOverride is a password asked for once at a prompt, for
	// the tasks of 'runup ui'.
	passwordOverride []byte
}

// progressLine shows render() as it changes: on the terminal, or to
// onProgress; Stop ends it.
// showsProgress reports whether a progress line is drawn (a terminal, or
// the daemon's web UI): only then are totals worth counting ahead.
func (g *globals) showsProgress() bool {
	return g.onProgress != nil || (!g.quiet && !g.json && progress.IsTerminal(g.stderr))
}

// clearLine is what a message printed under a progress line starts with:
// the sequence that erases the line on a terminal, nothing elsewhere.
func (g *globals) clearLine() string {
	if g.onProgress == nil && !g.quiet && !g.json && progress.IsTerminal(g.stderr) {
		return "\r\x1b[K"
	}
	return ""
}

func (g *globals) progressLine(render func() string) *progress.Line {
	if g.onProgress != nil {
		return progress.Watch(g.onProgress, render)
	}
	return progress.Start(g.stderr, !g.quiet && !g.json, render)
}

// setGrace gives the command longer than interruptGrace to stop after an
// interrupt (after hooks must still run).
func (g *globals) setGrace(d time.Duration) {
	g.mu.Lock()
	g.grace = max(g.grace, d)
	g.mu.Unlock()
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	if os.Getenv("GOGC") == "" {
		// Most of what RunUp allocates is large byte buffers with no
		// pointers: collecting often is cheap, and it keeps peak memory
		// near the live heap instead of twice it (docs/benchmarks.md).
		debug.SetGCPercent(25)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	finished := make(chan struct{})
	defer close(finished)
	go g.exitWhenStuck(ctx, stop, finished)
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if ctx.Err() != nil {
		err = context.Canceled
	}
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command ") {
		// Cobra's suggestion goes on lines of its own.
		first, rest, _ := strings.Cut(msg, "\n")
		fmt.Fprintln(g.stderr, "runup: "+first)
		if rest = strings.TrimSpace(rest); rest != "" {
			fmt.Fprintln(g.stderr, rest)
		}
		fmt.Fprintln(g.stderr, "Run 'runup --help' for the commands.")
		return ExitUsage
	}
	code := exitCode(err)
	if code == ExitInterrupted {
		fmt.Fprintln(g.stderr, "runup: interrupted; the repository is unchanged except for data the next backup reuses")
		return code
	}
	msg := err.Error()
	var ee *exitError
	if errors.As(err, &ee) && ee.err != nil {
		msg = ee.err.Error()
	}
	if errors.Is(err, syscall.ENOSPC) {
		msg += " — free some space where the repository lives and run the command again; what is stored stays valid"
	}
	if msg != "" {
		fmt.Fprintln(g.stderr, "runup: "+oneLine(msg))
	}
	return code
}

// interruptGrace is how long a command may take to stop after Ctrl-C or
// SIGTERM before it is ended anyway.
const interruptGrace = 3 * time.Second

// exitWhenStuck ends the process if a command has not returned within
// interruptGrace of being interrupted (a read the kernel will not give up,
// a server that does not answer): every repository write is crash-safe, so
// exiting is safe, and the lock is released first. A second Ctrl-C ends it
// at once.
func (g *globals) exitWhenStuck(ctx context.Context, stop func(), finished <-chan struct{}) {
	select {
	case <-finished:
		return
	case <-ctx.Done():
	}
	stop() // a second signal takes its default action: exit now
	g.mu.Lock()
	grace := max(g.grace, interruptGrace)
	g.mu.Unlock()
	select {
	case <-finished:
		return
	case <-time.After(grace):
	}
	g.mu.Lock()
	release := g.release
	g.mu.Unlock()
	if release != nil {
		done := make(chan struct{})
		go func() { release(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintln(g.stderr, "runup: interrupted; the repository is unchanged except for data the next backup reuses")
	os.Exit(ExitInterrupted)
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "runup",
		Short: "Fragmented backups: every job a full view, only new data stored",
		Long: `RunUp backs up the projects named in runup.yaml into a repository
(by default .runup/ beside the config). Only the first backup is full; later
ones store only new or changed data, yet every job restores as a full backup.`,
		Version:       versionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr(fmt.Errorf("%v (see 'runup %s --help')", err, c.Name()))
	})
	f := root.PersistentFlags()
	f.StringVarP(&g.context, "context", "c", ".", "directory holding runup.yaml")
	f.BoolVar(&g.verbose, "verbose", false, "say more about what happens")
	f.StringVar(&g.repo, "repo", "", "repository location (overrides runup.yaml; default <context>/.runup)")
	f.StringVar(&g.passwordFile, "password-file", "", "read the repository password from this file (else $RUNUP_PASSWORD)")
	f.BoolVar(&g.json, "json", false, "print results as JSON")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors")
	f.IntVar(&g.connections, "connections", 0, "packs written or read at once (default 1 local, 4 remote)")
	f.StringVar(&g.cacheDir, "cache-dir", "", "where to cache remote repositories' metadata (default $XDG_CACHE_HOME/runup)")
	f.BoolVar(&g.noCache, "no-cache", false, "do not cache remote repositories' metadata")
	f.DurationVar(&g.lockWait, "lock-wait", 0, "wait this long for a lock held by another process (e.g. 5m)")
	f.DurationVar(&g.timeout, "timeout", backend.DefaultTimeout, "a request to remote storage that makes no progress this long fails (and is retried)")
	f.StringVar(&g.cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file (for performance work)")
	_ = f.MarkHidden("cpu-profile")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if g.cpuProfile == "" {
			return nil
		}
		f, err := os.Create(g.cpuProfile)
		if err != nil {
			return usageErr(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		cobra.OnFinalize(func() { pprof.StopCPUProfile(); f.Close() })
		return nil
	}
	root.AddCommand(newInit(g), newBackup(g), newRestore(g), newJobs(g), newLs(g), newDump(g), newDiff(g), newFind(g),
		newStats(g), newTag(g), newForget(g), newPrune(g), newCheck(g), newRepair(g), newUnlock(g), newKnown(g), newMigrate(g),
		newCopy(g), newDaemon(g), newSchedule(g), newMount(g), newUI(g), newKey(g), newGenerate(g))
	for _, c := range root.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	addCompletions(g, root)
	return root
}

// wrapArgs turns cobra's argument errors into usage errors.
func wrapArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	if v == nil {
		return nil
	}
	return func(c *cobra.Command, args []string) error {
		if err := v(c, args); err != nil {
			return usageErr(fmt.Errorf("%v (see 'runup %s --help')", err, c.Name()))
		}
		return nil
	}
}

func (g *globals) printf(format string, args ...any) {
	if !g.quiet && !g.json {
		fmt.Fprintf(g.stdout, format, args...)
	}
}

func (g *globals) verbosef(format string, args ...any) {
	if g.verbose && !g.json {
		fmt.Fprintf(g.stderr, format, args...)
	}
}

// reporter prints problems from the journeys as they happen. Workers call
// it concurrently.
type reporter struct {
	g        *globals
	mu       sync.Mutex
	errors   int
	warnings int
}

func (r *reporter) Error(path string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	fmt.Fprintf(r.g.stderr, "%serror: %s: %v\n", r.g.clearLine(), path, err)
}

func (r *reporter) Warning(path string, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings++
	if !r.g.quiet {
		fmt.Fprintf(r.g.stderr, "%swarning: %s: %s\n", r.g.clearLine(), path, msg)
	}
}

// File lists a file and what became of it, with --verbose (not with
// --json, whose output is one document).
func (r *reporter) File(path, status string, size int64) {
	if !r.g.verbose || r.g.json || r.g.quiet {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The progress line is on stderr: erase it only when stdout shows on
	// the same screen, never in a file stdout goes to.
	clear := ""
	if progress.IsTerminal(r.g.stdout) {
		clear = r.g.clearLine()
	}
	if status == "delete" {
		fmt.Fprintf(r.g.stdout, "%s%-9s %s\n", clear, status, path)
		return
	}
	fmt.Fprintf(r.g.stdout, "%s%-9s %s (%s)\n", clear, status, path, progress.Bytes(size))
}
