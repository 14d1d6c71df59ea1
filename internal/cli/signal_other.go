//go:build !unix

package cli

import "os"

// notifyReload: there is no SIGHUP here; restart the daemon to reload.
func notifyReload(c chan<- os.Signal) func() { return func() {} }
