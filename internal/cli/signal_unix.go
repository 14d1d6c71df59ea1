//go:build unix

package cli

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyReload delivers SIGHUP on c until the returned function is called.
func notifyReload(c chan<- os.Signal) func() {
	signal.Notify(c, syscall.SIGHUP)
	return func() { signal.Stop(c) }
}
