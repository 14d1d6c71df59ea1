//go:build unix

package hooks

import (
	"os/exec"
	"syscall"
)

var (
	shellPath = "/bin/sh"
	shellArgs = []string{"-c"}
)

// setGroup starts the command in a process group of its own, and stops the
// whole group when its context ends: a hook's children stop with it.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
}
