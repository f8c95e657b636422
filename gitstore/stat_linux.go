package gitstore

import (
	"os"
	"syscall"
)

func statOf(fi os.FileInfo) indexStat {
	st := indexStat{
		mtimeSec:  uint32(fi.ModTime().Unix()),
		mtimeNsec: uint32(fi.ModTime().Nanosecond()),
		size:      uint32(fi.Size()),
	}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ctimeSec, st.ctimeNsec = uint32(s.Ctim.Sec), uint32(s.Ctim.Nsec)
		st.dev, st.ino = uint32(s.Dev), uint32(s.Ino)
		st.uid, st.gid = s.Uid, s.Gid
	}
	return st
}

func sameChangeTime(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ctim == sb.Ctim
}
