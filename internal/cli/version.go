package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are stamped by scripts/release.sh:
//
//	-ldflags "-X github.com/runup/runup/internal/cli.Version=1.2.0 -X github.com/runup/runup/internal/cli.Commit=abc1234"
//
// A plain 'go build' in a git checkout still knows its commit: the Go
// toolchain records it in the build information.
var (
	Version = "0.1.0-dev"
	Commit  = ""
)

// versionLine is what 'runup --version' prints: version, commit, Go
// version, and the system the binary was built for.
func versionLine() string {
	commit := Commit
	if commit == "" {
		commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			var rev, dirty string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "+changes"
					}
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if rev != "" {
				commit = rev + dirty
			}
		}
	}
	return fmt.Sprintf("runup %s (commit %s, %s, %s/%s)", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
