package restorer

import "os"

// setxattrFile: Windows has no extended attributes in the Unix sense
// (alternate data streams are not restored yet).
func setxattrFile(*os.File, string, []byte) error { return errNotSupported }
