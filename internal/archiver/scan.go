package archiver

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
)

// Scan counts the files and bytes a backup with o will meet, into
// o.Stats.ScanFiles and ScanBytes, then sets ScanDone: the totals of the
// progress line, counted ahead of the reader as restic does. It only
// lists directories and lstats entries, and stops with ctx, so it runs
// beside the backup without slowing it much.
func Scan(ctx context.Context, o Options) {
	defer o.Stats.ScanDone.Store(true)
	for _, p := range o.Paths {
		fi, err := os.Lstat(p)
		if err != nil || o.Filter.Excluded(p, fi.IsDir()) || o.Filter.excludedEntry(p, fi) {
			continue
		}
		scanEntry(ctx, o, p, fi, o.Filter.enter(nil, p), nodeFromInfo("", fi).Device)
	}
}

func scanEntry(ctx context.Context, o Options, abs string, fi fs.FileInfo, ign *ignoreRules, dev uint64) {
	if ctx.Err() != nil {
		return
	}
	switch {
	case fi.Mode().IsRegular():
		o.Stats.ScanFiles.Add(1)
		o.Stats.ScanBytes.Add(fi.Size())
	case fi.IsDir():
		if o.Filter.OneFileSystem && nodeFromInfo("", fi).Device != dev {
			return
		}
		entries, err := os.ReadDir(abs)
		if err != nil {
			return
		}
		for _, e := range entries {
			child := filepath.Join(abs, e.Name())
			if o.Filter.Excluded(child, e.IsDir()) || ign.ignored(child, e.IsDir()) {
				continue
			}
			cfi, err := os.Lstat(child)
			if err != nil || o.Filter.excludedEntry(child, cfi) {
				continue
			}
			sub := ign
			if cfi.IsDir() {
				sub = o.Filter.enter(ign, child)
			}
			scanEntry(ctx, o, child, cfi, sub, dev)
		}
	}
}
