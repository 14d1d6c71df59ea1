package archiver

import (
	"io/fs"

	"github.com/runup/runup/internal/tree"
)

// Windows has no owners, inode numbers or change times in the Unix sense:
// a file is unchanged when its size, mode and modification time are.
const (
	openFlags = 0
	noATime   = 0
)

func fillSys(*tree.Node, fs.FileInfo) {}

// readXattrs: Windows' alternate data streams are not backed up yet.
func readXattrs(string) ([]tree.XAttr, error) { return nil, nil }
