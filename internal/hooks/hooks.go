// Package hooks runs what runup.yaml asks to run around a backup: shell
// commands before and after it and on failure, commands whose output is
// backed up, and notifications at start, success and failure.
//
// A hook or command runs in the system shell, in the config's directory,
// with a deadline; when its context ends, the whole process group is asked
// to stop and, after a grace, killed, so that nothing it started outlives
// the backup.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Shell runs command lines.
type Shell struct {
	Dir     string        // working directory: the config's
	Env     []string      // added to the process environment
	Timeout time.Duration // for each command; 0: none beyond the context
	// Output receives the commands' standard error (and a hook's standard
	// output too).
	Output io.Writer
}

// stopGrace is how long a command has to exit after being asked to stop
// before it is killed.
const stopGrace = 5 * time.Second

func (s Shell) command(ctx context.Context, line string, env []string) *exec.Cmd {
	return s.commandArgs(ctx, append(append([]string{shellPath}, shellArgs...), line), env)
}

func (s Shell) commandArgs(ctx context.Context, args []string, env []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = append(append(os.Environ(), s.Env...), env...)
	cmd.Stdin = nil
	setGroup(cmd)
	cmd.WaitDelay = stopGrace
	return cmd
}

func (s Shell) output() io.Writer {
	if s.Output == nil {
		return io.Discard
	}
	return s.Output
}

// Run runs one command line to its end. env is added to the environment.
func (s Shell) Run(ctx context.Context, line string, env ...string) error {
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	cmd := s.command(ctx, line, env)
	cmd.Stdout = s.output()
	cmd.Stderr = s.output()
	err := cmd.Run()
	return s.explain(ctx, line, err)
}

func (s Shell) explain(ctx context.Context, line string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%q did not finish within %v: stopped", line, s.Timeout)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%q: %w", line, context.Cause(ctx))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%q failed: %s", line, ee.ProcessState)
	}
	return fmt.Errorf("%q: %w", line, err)
}

// Stream is a running command whose standard output is being read.
type Stream struct {
	out    io.Reader
	eof    bool
	cmd    *exec.Cmd
	shell  Shell
	ctx    context.Context
	cancel context.CancelFunc
	line   string
}

func (st *Stream) Read(p []byte) (int, error) {
	n, err := st.out.Read(p)
	if err == io.EOF {
		st.eof = true
	}
	return n, err
}

// Start starts a command and returns its standard output. Close waits for
// it and returns its failure: a command that fails after writing some
// output has failed, and what it wrote must not be taken as complete.
func (s Shell) Start(ctx context.Context, line string, env ...string) (*Stream, error) {
	return s.start(ctx, line, func(ctx context.Context) *exec.Cmd { return s.command(ctx, line, env) })
}

// StartArgs is Start for a program and its arguments, without a shell.
func (s Shell) StartArgs(ctx context.Context, args []string, env ...string) (*Stream, error) {
	if len(args) == 0 {
		return nil, errors.New("no command given")
	}
	return s.start(ctx, strings.Join(args, " "), func(ctx context.Context) *exec.Cmd { return s.commandArgs(ctx, args, env) })
}

func (s Shell) start(ctx context.Context, line string, mk func(context.Context) *exec.Cmd) (*Stream, error) {
	var cancel context.CancelFunc
	if s.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	cmd := mk(ctx)
	cmd.Stderr = s.output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("%q: %w", line, err)
	}
	return &Stream{out: out, cmd: cmd, shell: s, ctx: ctx, cancel: cancel, line: line}, nil
}

// Close waits for the command and reports how it ended. Output not read to
// the end means the reader gave up: the command is stopped rather than left
// to fill a pipe that nobody reads.
func (st *Stream) Close() error {
	defer st.cancel()
	if !st.eof {
		st.cancel()
	}
	err := st.cmd.Wait()
	if !st.eof {
		return fmt.Errorf("%q: stopped, its output was not read to the end", st.line)
	}
	return st.shell.explain(st.ctx, st.line, err)
}

// Env formats environment variables for a hook.
func Env(kv ...string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]+"="+strings.ReplaceAll(kv[i+1], "\x00", ""))
	}
	return out
}
