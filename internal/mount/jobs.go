package mount

import (
	"maps"
	"slices"
	"sort"
	"strconv"

	"github.com/runup/runup/internal/repo"
)

// groupKind is a folder of links to jobs: by project, tag or host.
type groupKind int

const (
	byProject groupKind = iota
	byTag
	byHost
)

// groups maps each project (tag, host) to its jobs' numbers, ascending.
func groups(jobs map[int]*repo.Job, kind groupKind) map[string][]int {
	out := map[string][]int{}
	for _, n := range slices.Sorted(maps.Keys(jobs)) {
		j := jobs[n]
		var names []string
		switch kind {
		case byProject:
			names = []string{j.Project}
		case byTag:
			names = j.Tags
		case byHost:
			names = []string{j.Host}
		}
		for _, name := range names {
			if validName(name) {
				out[name] = append(out[name], n)
			}
		}
	}
	return out
}

// validName is a name a job may give a folder of the mount: job records
// come from storage, and a name must not be able to mean a path.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 255 && !containsAny(s, "/\x00")
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// sortedNames lists a map's keys in order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func itoa(n int) string { return strconv.Itoa(n) }
