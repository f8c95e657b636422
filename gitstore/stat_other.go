//go:build !linux

package gitstore

import "os"

// statOf fills what os.FileInfo has portably; where the rest does not match,
// git compares the file by content.
func statOf(fi os.FileInfo) indexStat {
	return indexStat{
		mtimeSec:  uint32(fi.ModTime().Unix()),
		mtimeNsec: uint32(fi.ModTime().Nanosecond()),
		size:      uint32(fi.Size()),
	}
}

func sameChangeTime(a, b os.FileInfo) bool { return true }
