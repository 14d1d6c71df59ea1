//go:build windows

package hooks

import "os/exec"

var (
	shellPath = "cmd.exe"
	shellArgs = []string{"/C"}
)

// setGroup: on Windows the command itself is killed when its context ends.
func setGroup(cmd *exec.Cmd) {}
