//go:build unix

package repo

import (
	"errors"
	"syscall"
)

// processGone reports whether no process of this host has pid: signal 0
// checks without sending anything. A process of another user (EPERM) is
// alive.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
