//go:build unix

package testservers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// freezeTree stops a server and its children without closing their
// connections (SIGSTOP), until thawTree or the test's end.
func freezeTree(t testing.TB, pid int) {
	signalTree(pid, syscall.SIGSTOP)
	t.Cleanup(func() { thawTree(pid) })
}

func thawTree(pid int) { signalTree(pid, syscall.SIGCONT) }

func killDescendants(pid int) {
	for _, p := range descendants(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

func signalTree(pid int, sig syscall.Signal) {
	for _, p := range append([]int{pid}, descendants(pid)...) {
		syscall.Kill(p, sig)
	}
}

// descendants lists a process's children, grandchildren and so on, from
// /proc.
func descendants(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		var state string
		var ppid int
		if i < 0 {
			continue
		}
		if _, err := fmt.Sscanf(string(stat[i+1:]), " %s %d", &state, &ppid); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
