package archiver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/runup/runup/internal/tree"
)

// nodeFromInfo fills a node's metadata from lstat.
func nodeFromInfo(name string, fi fs.FileInfo) tree.Node {
	n := tree.Node{Name: name, Mode: uint32(fi.Mode().Perm())}
	m := fi.Mode()
	if m&fs.ModeSetuid != 0 {
		n.Mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n.Mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n.Mode |= 0o1000
	}
	switch {
	case m.IsRegular():
		n.Type = tree.File
	case m.IsDir():
		n.Type = tree.Dir
	case m&fs.ModeSymlink != 0:
		n.Type = tree.Symlink
	case m&fs.ModeNamedPipe != 0:
		n.Type = tree.Fifo
	case m&fs.ModeSocket != 0:
		n.Type = tree.Socket
	case m&fs.ModeCharDevice != 0:
		n.Type = tree.CharDev
	case m&fs.ModeDevice != 0:
		n.Type = tree.BlockDev
	}
	n.MTime = tree.TimeOf(fi.ModTime())
	fillSys(&n, fi) // owner, ctime, inode: what the system's stat says
	if n.Type == tree.File {
		n.Size = uint64(fi.Size())
	}
	return n
}

// unchanged reports whether a file can reuse its previous job's chunks
// without being read.
func unchanged(n, old *tree.Node) bool {
	return old != nil && old.Type == tree.File && n.Type == tree.File && n.Size == old.Size &&
		n.MTime == old.MTime && n.CTime == old.CTime && n.Inode == old.Inode && n.Mode == old.Mode
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// readWait bounds how long a read of a pollable file may wait for data.
const readWait = 5 * time.Second

// errBlocking ends the read of a file that gave no data for readWait: a
// kernel interface such as /proc/kmsg looks like a regular file, and its
// reads wait for events that may never come.
var errBlocking = fmt.Errorf("no data for %v: a kernel interface whose reads wait for events, not a file's content; not read", readWait)

// sourceFile is a file being backed up. Its reads never wait forever.
type sourceFile struct {
	*os.File
	pollable bool
}

// Read reads, with a deadline when the file is pollable: those are the
// ones whose reads can wait (kernel interfaces; files of FUSE filesystems
// are pollable too, and read as usual within the deadline).
func (f *sourceFile) Read(p []byte) (int, error) {
	if f.pollable {
		_ = f.SetReadDeadline(time.Now().Add(readWait))
	}
	n, err := f.File.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errBlocking
	}
	return n, err
}

// openFile opens a regular file for reading without following a link that
// replaced it since lstat, and without updating its access time where the
// kernel allows. It is opened non-blocking, so that the runtime can put a
// deadline on the reads of files that could block; real files on disk are
// not pollable and read as always.
func openFile(path string) (*sourceFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags|noATime, 0)
	if noATime != 0 && errors.Is(err, os.ErrPermission) {
		f, err = os.OpenFile(path, os.O_RDONLY|openFlags, 0) // not the file's owner
	}
	if err != nil {
		return nil, err
	}
	return &sourceFile{File: f, pollable: f.SetReadDeadline(time.Time{}) == nil}, nil
}
