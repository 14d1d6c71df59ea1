// Package mount shows a repository's jobs as a read-only filesystem
// (FUSE, through github.com/hanwen/go-fuse), so that a file deleted last
// Tuesday is found with ls and cp:
//
//	MOUNTPOINT/jobs/<N>/                 job N, laid out as 'restore -j N -l X' lays it under X
//	MOUNTPOINT/projects/<project>/<N>    -> ../../jobs/<N>, and latest -> the newest
//	MOUNTPOINT/tags/<tag>/<N>            -> ../../jobs/<N>
//	MOUNTPOINT/hosts/<host>/<N>          -> ../../jobs/<N>
//
// Files show the job's sizes, modes, owners, times, symbolic links and
// extended attributes. A read fetches only the chunks it covers, through a
// bounded cache; where each chunk starts is known from the index, without
// reading data. Jobs are listed again every few seconds, so new ones
// appear without a remount.
package mount

import "time"

// Options tune a mount.
type Options struct {
	// CacheBytes bounds the chunks kept in memory (0: DefaultCache).
	CacheBytes int
	// Refresh is how often jobs are listed again (0: DefaultRefresh).
	Refresh time.Duration
	// AllowOther lets other users than the one mounting see the files
	// (their modes still apply).
	AllowOther bool
	// FsName names the mount in mount tables: the repository's location.
	FsName string
	// Logf hears of problems the filesystem answers with EIO.
	Logf func(format string, args ...any)
	// Debug logs every FUSE request.
	Debug bool
}

const (
	DefaultCache   = 128 << 20
	DefaultRefresh = 2 * time.Second
	// contentTimeout is how long the kernel may cache what a job holds:
	// jobs never change.
	contentTimeout = time.Hour
)
