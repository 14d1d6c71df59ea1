package testservers

import "testing"

// freezeTree: Windows has no SIGSTOP; tests of a frozen server skip.
func freezeTree(t testing.TB, pid int) { t.Skip("freezing a server needs SIGSTOP (Unix)") }

func thawTree(int) {}

// killDescendants: the servers the tests start are Unix programs.
func killDescendants(int) {}
