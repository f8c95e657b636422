package gitstore

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Split index (git's core.splitIndex; gitformat-index.txt, "Split index").
//
// A work tree of 100,000 files has an index of about 11 MB, and git's index
// is rewritten whole, checksum included, by every update: that rewrite was
// most of a one-change commit. In split mode the entries live in a shared
// index file, $GIT_DIR/sharedindex.<its checksum>, written once, and the
// index itself holds only what changed since: a "link" extension naming the
// shared file, a bitmap of its entries that are gone, and the entries that
// are new. A commit then writes a few kilobytes whatever the size of the
// repository. When the changes reach splitIndex.maxPercentChange (default
// 20) of the shared entries, a new shared index is written.
//
// Which mode, as git decides it: core.splitIndex true always splits, false
// never (a split index is written back whole); unset keeps the mode the
// index is in, and dr-syncer splits an index once it holds
// splitIndexMinEntries entries (git itself would not split by size; below
// that the whole index costs about a millisecond to rewrite, and tools
// built on go-git, which cannot read a split index, keep working on small
// repositories). git reads and keeps a split index without any setting.
//
// Old shared files: git removes the ones that are not in use once they are
// older than splitIndex.sharedIndexExpire (two weeks). A DR repository
// that changes all the time would pile them up, so when dr-syncer writes a
// new shared index it removes every other sharedindex.* file except the one
// it replaces (which a git command that read the old index may still be
// about to open).

// splitIndexMinEntries is the size from which an index is split when
// core.splitIndex is not set (a variable for tests).
var splitIndexMinEntries = 20_000

// splitIndexMaxPercent is git's default splitIndex.maxPercentChange.
const splitIndexMaxPercent = 20

// splitIndex is the shared part of a split index and how the index
// differs from it, kept up to date path by path (update), so that writing
// the index costs what differs, not a comparison of every path that changed
// since the shared index was written.
type splitIndex struct {
	sum   plumbing.Hash // checksum and name of the shared file
	base  *indexFile    // its entries (its own copy of the bytes)
	gone  []uint64      // bitset of the base entries that are deleted
	added map[string]splitEntries
	order []string // the paths of added, sorted
}

// splitEntries are the entries (all stages) of one path that replace the
// base's, as bytes.
type splitEntries struct {
	data     []byte
	n        int
	extended bool // one of them has extended flags: the file must be version 3
}

func newSplit(sum plumbing.Hash, base *indexFile) *splitIndex {
	return &splitIndex{sum: sum, base: base, gone: make([]uint64, (len(base.offsets)+63)/64), added: map[string]splitEntries{}}
}

// update records how the entries of path in ix differ from the base.
func (s *splitIndex) update(ix *indexFile, path string) {
	lo, hi := s.base.find(path)
	flo, fhi := ix.find(path)
	cur := ix.span(flo, fhi)
	same := hi-lo == fhi-flo && bytes.Equal(s.base.span(lo, hi), cur)
	for i := lo; i < hi; i++ {
		if same {
			s.gone[i/64] &^= 1 << (i % 64)
		} else {
			s.gone[i/64] |= 1 << (i % 64)
		}
	}
	_, had := s.added[path]
	if same || fhi == flo {
		if had {
			delete(s.added, path)
			k, _ := slices.BinarySearch(s.order, path)
			s.order = slices.Delete(s.order, k, k+1)
		}
		return
	}
	e := splitEntries{data: bytes.Clone(cur), n: fhi - flo}
	for i := flo; i < fhi; i++ {
		e.extended = e.extended || entryFlags(ix.entry(i))&indexExtended != 0
	}
	s.added[path] = e
	if !had {
		k, _ := slices.BinarySearch(s.order, path)
		s.order = slices.Insert(s.order, k, path)
	}
}

// changes counts the base entries deleted and the entries added.
func (s *splitIndex) changes() int {
	n := 0
	for _, w := range s.gone {
		n += bits.OnesCount64(w)
	}
	for _, e := range s.added {
		n += e.n
	}
	return n
}

func sharedIndexPath(dir string, sum plumbing.Hash) string {
	return filepath.Join(dir, "sharedindex."+sum.String())
}

// extension returns the payload of the extension sig, if the index has it.
func (ix *indexFile) extension(sig string) ([]byte, bool) {
	d := ix.data
	for off := ix.entEnd; off+8 <= len(d); {
		size := int(binary.BigEndian.Uint32(d[off+4:]))
		if size > len(d)-off-8 {
			return nil, false
		}
		if string(d[off:off+4]) == sig {
			return d[off+8 : off+8+size], true
		}
		off += 8 + size
	}
	return nil, false
}

// withoutExtension returns the extensions of ix without sig.
func (ix *indexFile) withoutExtension(sig string) []byte {
	var out []byte
	d := ix.data
	for off := ix.entEnd; off+8 <= len(d); {
		size := int(binary.BigEndian.Uint32(d[off+4:]))
		end := min(off+8+size, len(d))
		if string(d[off:off+4]) != sig {
			out = append(out, d[off:end]...)
		}
		off = end
	}
	return out
}

// entry returns the bytes of entry i, padding included.
func (ix *indexFile) entry(i int) []byte { return ix.span(i, i+1) }

// span returns the bytes of entries lo to hi (excluded).
func (ix *indexFile) span(lo, hi int) []byte {
	if lo == hi {
		return nil
	}
	end := ix.entEnd
	if hi < len(ix.offsets) {
		end = ix.offsets[hi]
	}
	return ix.data[ix.offsets[lo]:end]
}

func entryFlags(e []byte) uint16 { return binary.BigEndian.Uint16(e[60:]) }

func entryStage(e []byte) int { return int(entryFlags(e)>>12) & 3 }

// withName returns the entry e (whose name is empty, as replacement entries
// of a split index are) with name.
func withName(e []byte, name string) []byte {
	flags := entryFlags(e)
	fixed := indexEntryFixed
	if flags&indexExtended != 0 {
		fixed += 2
	}
	out := make([]byte, (fixed+len(name)+8)&^7)
	copy(out, e[:fixed])
	binary.BigEndian.PutUint16(out[60:], flags&^indexNameMask|uint16(min(len(name), indexNameMask)))
	copy(out[fixed:], name)
	return out
}

// loadSplit makes the index read from file whole if it is split: it reads
// the shared index its link extension names (in dir) and returns the
// merged index and the split state; an index without a link extension is
// returned as it is, with a nil split state.
func loadSplit(dir string, main *indexFile) (*indexFile, *splitIndex, error) {
	link, ok := main.extension("link")
	if !ok {
		return main, nil, nil
	}
	if len(link) < sha1.Size {
		return nil, nil, errors.New("index: corrupt link extension (too short)")
	}
	sum := plumbing.Hash(link[:sha1.Size])
	if sum.IsZero() {
		ix := *main
		ix.data = append(append([]byte(nil), main.data[:main.entEnd]...), main.withoutExtension("link")...)
		return &ix, nil, nil
	}
	var deleted, replaced []int
	if rest := link[sha1.Size:]; len(rest) > 0 {
		var n int
		var err error
		if deleted, n, err = ewahDecode(rest); err != nil {
			return nil, nil, fmt.Errorf("index: link extension: delete bitmap: %w", err)
		}
		m := 0
		if replaced, m, err = ewahDecode(rest[n:]); err != nil {
			return nil, nil, fmt.Errorf("index: link extension: replace bitmap: %w", err)
		}
		if n+m != len(rest) {
			return nil, nil, errors.New("index: link extension: garbage after the bitmaps")
		}
	}
	path := sharedIndexPath(dir, sum)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("index: the shared index %s it is split on is missing; rebuild the index with `rm %s && git reset` (commits are not affected)", path, filepath.Join(dir, "index"))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("index: %w", err)
	}
	base, err := parseIndex(data)
	if errors.Is(err, errIndexV4) {
		return nil, nil, fmt.Errorf("index: %s: version 4 in a split index: %w (run `git update-index --index-version 2`)", path, errIndexUnsupported)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("index: %s: %w", path, err)
	}
	if !bytes.Equal(data[len(data)-sha1.Size:], sum[:]) {
		return nil, nil, fmt.Errorf("index: %s: checksum does not match its name", path)
	}
	ix, dirty, err := mergeSplit(main, base, deleted, replaced)
	if err != nil {
		return nil, nil, err
	}
	split := newSplit(sum, base)
	for p := range dirty {
		split.update(ix, p)
	}
	return ix, split, nil
}

// mergeSplit applies a split index's entries and bitmaps to its shared
// entries, as git does: deleted entries go, replaced ones take the
// replacing entry's content under their own name, and the other entries of
// the index are added in order (replacing an entry of the same name and
// stage). It returns the whole index and the paths that differ from base.
func mergeSplit(main, base *indexFile, deleted, replaced []int) (*indexFile, map[string]struct{}, error) {
	n := len(base.offsets)
	gone := make([]bool, n)
	repl := make(map[int]int, len(replaced)) // base position → main entry
	dirty := map[string]struct{}{}
	for _, p := range deleted {
		if p >= n {
			return nil, nil, fmt.Errorf("index: link extension: deleted entry %d of %d", p, n)
		}
		gone[p] = true
		dirty[base.name(p)] = struct{}{}
	}
	if len(replaced) > len(main.offsets) {
		return nil, nil, fmt.Errorf("index: link extension: %d replaced entries, %d in the index", len(replaced), len(main.offsets))
	}
	for k, p := range replaced {
		if p >= n || gone[p] {
			return nil, nil, fmt.Errorf("index: link extension: replaced entry %d of %d", p, n)
		}
		if len(main.nameBytes(k)) != 0 {
			return nil, nil, fmt.Errorf("index: link extension: replacing entry %d has a name", k)
		}
		repl[p] = k
		dirty[base.name(p)] = struct{}{}
	}
	added := len(replaced)
	for k := added; k < len(main.offsets); k++ {
		name := main.name(k)
		if name == "" {
			return nil, nil, fmt.Errorf("index: link extension: added entry %d has no name", k)
		}
		dirty[name] = struct{}{}
	}

	version := max(main.version, base.version)
	out := make([]byte, 12, main.entEnd+base.entEnd)
	copy(out, "DIRC")
	var offsets []int
	emit := func(e []byte) {
		if entryFlags(e)&indexExtended != 0 {
			version = 3
		}
		offsets = append(offsets, len(out))
		out = append(out, e...)
	}
	compare := func(bi, mk int) int {
		if c := bytes.Compare(base.nameBytes(bi), main.nameBytes(mk)); c != 0 {
			return c
		}
		return entryStage(base.entry(bi)) - entryStage(main.entry(mk))
	}
	k := added
	for i := range n {
		if gone[i] {
			continue
		}
		for k < len(main.offsets) && compare(i, k) > 0 {
			emit(main.entry(k))
			k++
		}
		if k < len(main.offsets) && compare(i, k) == 0 {
			continue // the added entry replaces it, next round
		}
		if r, ok := repl[i]; ok {
			emit(withName(main.entry(r), base.name(i)))
			continue
		}
		emit(base.entry(i))
	}
	for ; k < len(main.offsets); k++ {
		emit(main.entry(k))
	}
	binary.BigEndian.PutUint32(out[4:], version)
	binary.BigEndian.PutUint32(out[8:], uint32(len(offsets)))
	entEnd := len(out)
	out = append(out, main.withoutExtension("link")...)
	return &indexFile{data: out, version: version, offsets: offsets, entEnd: entEnd}, dirty, nil
}

// splitConfig reads core.splitIndex (-1 unset, 0 false, 1 true) and
// splitIndex.maxPercentChange from the repository's configuration.
func (r *Repository) splitConfig() (mode, maxPercent int) {
	mode, maxPercent = -1, splitIndexMaxPercent
	cfg, err := r.git.Config()
	if err != nil || cfg.Raw == nil {
		return mode, maxPercent
	}
	if core := cfg.Raw.Section("core"); core.HasOption("splitIndex") {
		if b, err := strconv.ParseBool(strings.ToLower(core.Option("splitIndex"))); err == nil {
			mode = 0
			if b {
				mode = 1
			}
		}
	}
	if s := cfg.Raw.Section("splitIndex"); s.HasOption("maxPercentChange") {
		if v, err := strconv.Atoi(s.Option("maxPercentChange")); err == nil && v >= 0 && v <= 100 {
			maxPercent = v
		}
	}
	return mode, maxPercent
}

// writeShared writes the entries of ix as a shared index in dir (unless a
// file of that checksum is there already) and returns the split state that
// starts from it.
func writeShared(dir string, ix *indexFile) (*splitIndex, error) {
	data := make([]byte, ix.entEnd, ix.entEnd+sha1.Size)
	copy(data, ix.data[:ix.entEnd])
	sum := sha1.Sum(data)
	data = append(data, sum[:]...)
	s := newSplit(plumbing.Hash(sum), &indexFile{data: data[:ix.entEnd], version: ix.version, offsets: slices.Clone(ix.offsets), entEnd: ix.entEnd})
	path := sharedIndexPath(dir, s.sum)
	if _, err := os.Stat(path); err == nil {
		return s, nil
	}
	f, err := os.CreateTemp(dir, "sharedindex_")
	if err != nil {
		return nil, fmt.Errorf("shared index: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("shared index %s: %w", path, err)
	}
	return s, nil
}

// encode returns the index file of the split index: the entries that
// differ from the base, the link extension and the other extensions of ix.
func (s *splitIndex) encode(ix *indexFile) []byte {
	version := uint32(2)
	size, count := 12, 0
	for _, p := range s.order {
		e := s.added[p]
		size += len(e.data)
		count += e.n
		if e.extended {
			version = 3
		}
	}
	var deleted []int
	for w, word := range s.gone {
		for word != 0 {
			b := word & -word
			deleted = append(deleted, w*64+bits.TrailingZeros64(b))
			word &^= b
		}
	}
	del, repl := ewahEncode(deleted), ewahEncode(nil)
	ext := ix.data[ix.entEnd:]
	out := make([]byte, 0, size+8+sha1.Size+len(del)+len(repl)+len(ext)+sha1.Size)
	out = append(out, "DIRC"...)
	out = binary.BigEndian.AppendUint32(out, version)
	out = binary.BigEndian.AppendUint32(out, uint32(count))
	for _, p := range s.order {
		out = append(out, s.added[p].data...)
	}
	out = append(out, "link"...)
	out = binary.BigEndian.AppendUint32(out, uint32(sha1.Size+len(del)+len(repl)))
	out = append(out, s.sum[:]...)
	out = append(out, del...)
	out = append(out, repl...)
	out = append(out, ext...)
	sum := sha1.Sum(out)
	return append(out, sum[:]...)
}

// removeOldShared removes the shared index files in dir other than keep's.
func removeOldShared(dir string, keep ...plumbing.Hash) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		hex, ok := strings.CutPrefix(e.Name(), "sharedindex.")
		if !ok || slices.ContainsFunc(keep, func(h plumbing.Hash) bool { return h.String() == hex }) {
			continue
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

// EWAH bitmaps as git serializes them (ewah/ewah_io.c): the number of
// bits, the number of 64-bit words, the words (big-endian), and the
// position of the last run-length word. A run-length word holds a run bit
// (bit 0), a run length in words (bits 1–32) and the number of literal
// words that follow it (bits 33–63); bit j of a literal word k-th in the
// stream is position 64·k + j.

const ewahRunBits = 32

// ewahEncode returns the bitmap of the positions (ascending, unique).
func ewahEncode(positions []int) []byte {
	type run struct {
		zeros    uint64
		literals []uint64
	}
	var runs []run
	cur := run{}
	word, last := uint64(0), -1 // the literal word being filled, its index
	flush := func() {
		if last >= 0 {
			cur.literals = append(cur.literals, word)
		}
	}
	for _, p := range positions {
		w := p / 64
		if w != last {
			flush()
			gap := w - last - 1 // zero words between
			if last < 0 {
				gap = w
			}
			if gap > 0 {
				if len(cur.literals) > 0 {
					runs = append(runs, cur)
					cur = run{}
				}
				cur.zeros = uint64(gap)
			}
			word, last = 0, w
		}
		word |= 1 << (p % 64)
	}
	flush()
	runs = append(runs, cur)

	var words []uint64
	rlw := 0
	for _, r := range runs {
		rlw = len(words)
		words = append(words, r.zeros<<1|uint64(len(r.literals))<<(1+ewahRunBits))
		words = append(words, r.literals...)
	}
	size := 0 // in bits
	if len(positions) > 0 {
		size = positions[len(positions)-1] + 1
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(size))
	out = binary.BigEndian.AppendUint32(out, uint32(len(words)))
	for _, w := range words {
		out = binary.BigEndian.AppendUint64(out, w)
	}
	return binary.BigEndian.AppendUint32(out, uint32(rlw))
}

// ewahDecode returns the set positions of the bitmap at the start of data
// and how many bytes it took.
func ewahDecode(data []byte) ([]int, int, error) {
	if len(data) < 8 {
		return nil, 0, errors.New("truncated")
	}
	n := int(binary.BigEndian.Uint32(data[4:]))
	size := 8 + 8*n + 4
	if n < 0 || len(data) < size {
		return nil, 0, errors.New("truncated")
	}
	if rlw := int(binary.BigEndian.Uint32(data[size-4:])); rlw >= n {
		return nil, 0, fmt.Errorf("run-length word position %d of %d words", rlw, n)
	}
	words := make([]uint64, n)
	for i := range words {
		words[i] = binary.BigEndian.Uint64(data[8+8*i:])
	}
	var out []int
	pos := 0
	for i := 0; i < len(words); {
		w := words[i]
		run := int(w>>1) & (1<<ewahRunBits - 1)
		lits := int(w >> (1 + ewahRunBits))
		if w&1 != 0 {
			for range run * 64 {
				out = append(out, pos)
				pos++
			}
		} else {
			pos += run * 64
		}
		i++
		if lits > len(words)-i {
			return nil, 0, errors.New("literal words beyond the end")
		}
		for _, lit := range words[i : i+lits] {
			for lit != 0 {
				b := lit & -lit
				out = append(out, pos+bits.TrailingZeros64(b))
				lit &^= b
			}
			pos += 64
		}
		i += lits
	}
	return out, size, nil
}
