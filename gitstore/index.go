package gitstore

import (
	"bytes"
	"crypto/sha1"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
)

// The index ("dircache") is updated by splicing: the entries of unchanged
// paths stay bytes, only the entries of the committed paths are encoded.
// go-git's index package decodes every entry into a struct and encodes it
// back, which costs tens of milliseconds at 100,000 entries. The file still
// has to be written whole, with a SHA-1 of everything at the end: see
// indexCache for how Commit keeps that cheap. Format:
// Documentation/gitformat-index.txt in git.

// indexStat is the file system information git keeps per entry to tell
// whether a file changed without reading it.
type indexStat struct {
	ctimeSec, ctimeNsec, mtimeSec, mtimeNsec uint32
	dev, ino, uid, gid, size                 uint32
}

// indexUpdate is the new state of one path: removed, or a stage-0 entry.
type indexUpdate struct {
	path   string
	remove bool
	mode   filemode.FileMode
	hash   plumbing.Hash
	stat   indexStat
}

const (
	indexEntryFixed = 62 // stat fields, object id, flags
	indexNameMask   = 0xfff
	indexExtended   = 0x4000
)

var errIndexUnsupported = errors.New("unsupported index")

// encode returns the update as a version 2 entry (also valid in version 3).
func (u *indexUpdate) encode() []byte {
	n := (indexEntryFixed + len(u.path) + 8) &^ 7
	b := make([]byte, n)
	be := binary.BigEndian
	for i, v := range []uint32{
		u.stat.ctimeSec, u.stat.ctimeNsec, u.stat.mtimeSec, u.stat.mtimeNsec,
		u.stat.dev, u.stat.ino, uint32(u.mode), u.stat.uid, u.stat.gid, u.stat.size,
	} {
		be.PutUint32(b[4*i:], v)
	}
	copy(b[40:60], u.hash[:])
	be.PutUint16(b[60:], uint16(min(len(u.path), indexNameMask)))
	copy(b[62:], u.path)
	return b
}

func (u *indexUpdate) entry() *index.Entry {
	return &index.Entry{
		Hash:       u.hash,
		Name:       u.path,
		CreatedAt:  time.Unix(int64(u.stat.ctimeSec), int64(u.stat.ctimeNsec)),
		ModifiedAt: time.Unix(int64(u.stat.mtimeSec), int64(u.stat.mtimeNsec)),
		Dev:        u.stat.dev,
		Inode:      u.stat.ino,
		Mode:       u.mode,
		UID:        u.stat.uid,
		GID:        u.stat.gid,
		Size:       u.stat.size,
	}
}

// errIndexV4 makes the caller fall back to go-git's codec: version 4
// compresses each path against the previous one, so entries cannot be
// copied as bytes.
var errIndexV4 = errors.New("index version 4")

// indexFile is a version 2 or 3 index, with where each entry starts, so that
// the entries of a path are found by binary search and a commit touches only
// them: a changed file's entry is overwritten in place, and adding or
// removing entries copies the bytes around them without decoding anything.
type indexFile struct {
	data    []byte // header, entries, extensions; no checksum
	version uint32
	offsets []int // where each entry starts, in index order
	entEnd  int   // where the entries end and the extensions begin
}

// parseIndex reads the structure of an index file (with its checksum, which
// is not verified: that would double the cost).
func parseIndex(file []byte) (*indexFile, error) {
	if len(file) < 12+sha1.Size || string(file[:4]) != "DIRC" {
		return nil, errors.New("index: bad signature: .git/index is damaged; rebuild it with `rm .git/index && git reset` (commits are not affected)")
	}
	be := binary.BigEndian
	ix := &indexFile{data: file[:len(file)-sha1.Size], version: be.Uint32(file[4:])}
	switch ix.version {
	case 2, 3:
	case 4:
		return nil, errIndexV4
	default:
		return nil, fmt.Errorf("index: version %d: %w", ix.version, errIndexUnsupported)
	}
	count := int(be.Uint32(file[8:]))
	if count > len(ix.data)/indexEntryFixed {
		return nil, errors.New("index: corrupt entry count")
	}
	ix.offsets = make([]int, 0, count)
	off := 12
	for range count {
		next, err := ix.entryEnd(off)
		if err != nil {
			return nil, err
		}
		ix.offsets = append(ix.offsets, off)
		off = next
	}
	ix.entEnd = off
	return ix, nil
}

// entryEnd returns where the entry at off ends, padding included.
func (ix *indexFile) entryEnd(off int) (int, error) {
	start, n, err := ix.nameAt(off)
	if err != nil {
		return 0, err
	}
	next := off + (start-off+n+8)&^7
	if next > len(ix.data) {
		return 0, fmt.Errorf("index: corrupt entry at offset %d", off)
	}
	return next, nil
}

// nameAt returns where the name of the entry at off starts, and its length.
func (ix *indexFile) nameAt(off int) (int, int, error) {
	d := ix.data
	if off+indexEntryFixed > len(d) {
		return 0, 0, fmt.Errorf("index: corrupt entry at offset %d", off)
	}
	flags := binary.BigEndian.Uint16(d[off+60:])
	start := off + indexEntryFixed
	if flags&indexExtended != 0 {
		if ix.version < 3 {
			return 0, 0, fmt.Errorf("index: corrupt entry flags at offset %d", off)
		}
		start += 2
	}
	n := int(flags & indexNameMask)
	if n == indexNameMask {
		n = bytes.IndexByte(d[start:], 0)
	}
	if n < 0 || start+n >= len(d) {
		return 0, 0, fmt.Errorf("index: corrupt entry name at offset %d", off)
	}
	return start, n, nil
}

func (ix *indexFile) name(i int) string { return string(ix.nameBytes(i)) }

func (ix *indexFile) nameBytes(i int) []byte {
	start, n, _ := ix.nameAt(ix.offsets[i]) // checked by parseIndex
	return ix.data[start : start+n]
}

// find returns the range of entries (all stages) of path.
func (ix *indexFile) find(path string) (lo, hi int) {
	// string(b) in a comparison does not copy b.
	lo = sort.Search(len(ix.offsets), func(i int) bool { return string(ix.nameBytes(i)) >= path })
	hi = lo
	for hi < len(ix.offsets) && string(ix.nameBytes(hi)) == path {
		hi++
	}
	return lo, hi
}

// apply replaces the entries of the paths of ups (sorted by path, unique) by
// their new entries, all stages, and returns the length of the prefix of the
// data that did not change. When every update replaces one entry by one of
// the same size, the data is changed in place; otherwise it is rebuilt in
// spare, and the old data is returned for reuse. The cached tree extension
// is invalidated along the changed paths; the resolve-undo extension is
// kept; other optional extensions (untracked cache, fsmonitor, offset
// tables) are dropped, as git allows; a required one this code does not
// know (split index, sparse index) is an error.
func (ix *indexFile) apply(ups []indexUpdate, spare []byte) (same int, old []byte, err error) {
	ext, err := ix.extensions(ups)
	if err != nil {
		return 0, nil, err
	}
	type span struct{ lo, hi int }
	spans := make([]span, len(ups))
	inPlace := true
	for i := range ups {
		lo, hi := ix.find(ups[i].path)
		spans[i] = span{lo, hi}
		if hi-lo != 1 || ups[i].remove {
			inPlace = false
			continue
		}
		if end, _ := ix.entryEnd(ix.offsets[lo]); end-ix.offsets[lo] != len(ups[i].encode()) {
			inPlace = false
		}
	}

	if inPlace {
		same = ix.entEnd
		for i := range ups {
			off := ix.offsets[spans[i].lo]
			copy(ix.data[off:], ups[i].encode())
			same = min(same, off)
		}
		ix.data = append(ix.data[:ix.entEnd], ext...)
		return same, nil, nil
	}

	out := append(spare[:0], ix.data[:12]...)
	offsets := make([]int, 0, len(ix.offsets)+len(ups))
	same = -1
	prev := 0 // next entry to copy
	copyEntries := func(to int) {
		if prev == to {
			return
		}
		start, end := ix.offsets[prev], ix.entEnd
		if to < len(ix.offsets) {
			end = ix.offsets[to]
		}
		delta := len(out) - start
		for _, o := range ix.offsets[prev:to] {
			offsets = append(offsets, o+delta)
		}
		out = append(out, ix.data[start:end]...)
		prev = to
	}
	for i := range ups {
		copyEntries(spans[i].lo)
		if same < 0 {
			same = len(out)
		}
		prev = spans[i].hi
		if !ups[i].remove {
			offsets = append(offsets, len(out))
			out = append(out, ups[i].encode()...)
		}
	}
	copyEntries(len(ix.offsets))
	entEnd := len(out)
	out = append(out, ext...)
	if len(offsets) != len(ix.offsets) {
		binary.BigEndian.PutUint32(out[8:], uint32(len(offsets)))
		same = 8
	}
	if same < 0 {
		same = entEnd
	}
	old = ix.data
	ix.data, ix.offsets, ix.entEnd = out, offsets, entEnd
	return same, old, nil
}

// extensions returns the extensions as they must be after ups.
func (ix *indexFile) extensions(ups []indexUpdate) ([]byte, error) {
	be := binary.BigEndian
	var out []byte
	d := ix.data
	for off := ix.entEnd; off < len(d); {
		if off+8 > len(d) {
			return nil, fmt.Errorf("index: corrupt extension at offset %d", off)
		}
		sig := d[off : off+4]
		size := int(be.Uint32(d[off+4:]))
		if size > len(d)-off-8 {
			return nil, fmt.Errorf("index: corrupt extension at offset %d", off)
		}
		ext := d[off : off+8+size]
		switch {
		case string(sig) == "TREE":
			tree, err := invalidateCacheTree(ext[8:], ups)
			if err != nil {
				return nil, err
			}
			out = append(out, "TREE"...)
			out = be.AppendUint32(out, uint32(len(tree)))
			out = append(out, tree...)
		case string(sig) == "REUC":
			out = append(out, ext...)
		case sig[0] >= 'A' && sig[0] <= 'Z':
			// optional: git rebuilds it when it wants it
		default:
			return nil, fmt.Errorf("index: extension %q: %w", sig, errIndexUnsupported)
		}
		off += 8 + size
	}
	return out, nil
}

// indexMarkEvery is the distance between saved SHA-1 states: the hash of a
// rewritten index restarts from the last state before the first changed
// byte instead of from the start.
const indexMarkEvery = 256 << 10

// hashIndex returns the SHA-1 of content and the hash states at every
// indexMarkEvery bytes. marks are the states saved for an earlier content
// whose first same bytes equal content's; hashing resumes from the last of
// them that lies within those bytes.
func hashIndex(content []byte, marks [][]byte, same int) ([]byte, [][]byte) {
	h := sha1.New()
	k := min(same/indexMarkEvery, len(marks)-1)
	if k > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(marks[k]); err != nil {
			k = 0
			h.Reset()
		}
	}
	if k < 0 {
		k = 0
	}
	newMarks := append([][]byte(nil), marks[:k]...)
	for off := k * indexMarkEvery; ; off += indexMarkEvery {
		state, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
		newMarks = append(newMarks, state)
		h.Write(content[off:min(off+indexMarkEvery, len(content))])
		if off+indexMarkEvery >= len(content) {
			break
		}
	}
	return h.Sum(nil), newMarks
}

// invalidateCacheTree marks the cached trees of the directories holding a
// changed path as invalid (entry count -1, no object id), which makes git
// recompute them when it next writes a tree. Entries are "<name>\0<entry
// count> <subtree count>\n[<object id>]", depth first.
func invalidateCacheTree(data []byte, ups []indexUpdate) ([]byte, error) {
	dirty := map[string]bool{"": true}
	for _, u := range ups {
		for i := range len(u.path) {
			if u.path[i] == '/' {
				dirty[u.path[:i]] = true
			}
		}
	}
	out := make([]byte, 0, len(data))
	pos := 0
	var node func(parent string, root bool) error
	node = func(parent string, root bool) error {
		nul := bytes.IndexByte(data[pos:], 0)
		if nul < 0 {
			return errors.New("index: corrupt cached tree")
		}
		name := string(data[pos : pos+nul])
		path := name
		if !root && parent != "" {
			path = parent + "/" + name
		}
		nl := bytes.IndexByte(data[pos+nul:], '\n')
		if nl < 0 {
			return errors.New("index: corrupt cached tree")
		}
		counts := strings.Fields(string(data[pos+nul+1 : pos+nul+nl]))
		if len(counts) != 2 {
			return errors.New("index: corrupt cached tree")
		}
		entries, err1 := strconv.Atoi(counts[0])
		subtrees, err2 := strconv.Atoi(counts[1])
		if err1 != nil || err2 != nil || subtrees < 0 {
			return errors.New("index: corrupt cached tree")
		}
		rec := data[pos : pos+nul+nl+1]
		pos += nul + nl + 1
		var id []byte
		if entries >= 0 {
			if pos+20 > len(data) {
				return errors.New("index: corrupt cached tree")
			}
			id = data[pos : pos+20]
			pos += 20
		}
		if dirty[path] {
			out = append(out, rec[:nul+1]...)
			out = append(out, "-1 "+counts[1]+"\n"...)
		} else {
			out = append(out, rec...)
			out = append(out, id...)
		}
		for range subtrees {
			if err := node(path, false); err != nil {
				return err
			}
		}
		return nil
	}
	if len(data) > 0 {
		if err := node("", true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// patchIndexGoGit does what indexFile.apply does, for version 4 indexes,
// which cannot be spliced: decode everything with go-git, replace the
// entries, encode. go-git writes no extensions, which git allows for the
// optional ones.
func patchIndexGoGit(data []byte, ups []indexUpdate, w io.Writer) error {
	var idx index.Index
	if err := index.NewDecoder(bytes.NewReader(data)).Decode(&idx); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	changed := make(map[string]bool, len(ups))
	for _, u := range ups {
		changed[u.path] = true
	}
	idx.Entries = slices.DeleteFunc(idx.Entries, func(e *index.Entry) bool { return changed[e.Name] })
	for i := range ups {
		if !ups[i].remove {
			idx.Entries = append(idx.Entries, ups[i].entry())
		}
	}
	idx.Cache, idx.ResolveUndo, idx.EndOfIndexEntry = nil, nil, nil
	if err := index.NewEncoder(w).Encode(&idx); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// newIndexData returns a version 2 index listing files (sorted by path) with
// no file system information, which makes git compare them with the work
// tree by content the next time it looks.
func newIndexData(files []indexUpdate) []byte {
	var b bytes.Buffer
	b.WriteString("DIRC")
	binary.Write(&b, binary.BigEndian, [2]uint32{2, uint32(len(files))})
	for i := range files {
		b.Write(files[i].encode())
	}
	b.Write(make([]byte, sha1.Size)) // not read by parseIndex
	return b.Bytes()
}
