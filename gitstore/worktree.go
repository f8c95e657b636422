package gitstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// indexLock is git's index.lock: whoever creates it may write the index, by
// writing the lock file and renaming it over the index.
type indexLock struct {
	f     *os.File
	index string
	unown func() // removes the owner record (see createLock)
}

func (r *Repository) lockIndex() (*indexLock, error) {
	index := filepath.Join(r.gitDir, "index")
	f, unown, err := r.createLock(index + ".lock")
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s.lock exists: another git process is using the work tree (remove the file if none is)", index)
	}
	if err != nil {
		return nil, err
	}
	return &indexLock{f: f, index: index, unown: unown}, nil
}

// release removes the lock unless commit has renamed it into place.
func (l *indexLock) release() {
	if l.f != nil {
		l.f.Close()
		os.Remove(l.f.Name())
		l.unown()
		l.f = nil
	}
}

func (l *indexLock) commit() error {
	name := l.f.Name()
	err := l.f.Close()
	l.f = nil
	if err == nil {
		err = os.Rename(name, l.index)
	}
	if err != nil {
		os.Remove(name)
	}
	l.unown()
	return err
}

// updateWorkTree makes the files and index entries of the updated paths
// match the new commit, leaving everything else alone. A file that cannot be
// written still gets its new index entry, without file system information,
// so that git shows the difference instead of hiding it.
func (r *Repository) updateWorkTree(lock *indexLock, cur *currentIndex, updates []fileUpdate) error {
	// Removals first: a directory may have to go before a file of its name
	// is written.
	slices.SortFunc(updates, func(a, b fileUpdate) int {
		if ra, rb := a.content == nil, b.content == nil; ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return strings.Compare(a.path, b.path)
	})
	ups := make([]indexUpdate, len(updates))
	var errs []error
	var writes []int
	for i, u := range updates {
		ups[i] = indexUpdate{path: u.path, remove: u.content == nil, mode: u.mode, hash: u.hash}
		if u.content == nil {
			if err := removeWorkFile(r.workTree, u.path); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		writes = append(writes, i)
	}
	errs = append(errs, writeWorkFiles(r.workTree, updates, writes, ups)...)
	slices.SortFunc(ups, func(a, b indexUpdate) int { return strings.Compare(a.path, b.path) })

	if err := r.writeIndex(lock, cur, ups); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// indexCache keeps the index file Commit last wrote, parsed, with the SHA-1
// states of its hash (see hashIndex), so that the next Commit neither reads
// nor parses it again nor rehashes the part before the first changed entry,
// as long as the file on disk is still that one. It costs about twice the
// index size in memory (the content and a buffer for the next one), three
// times for a split index (and its shared entries).
type indexCache struct {
	file  os.FileInfo // the index file as written; nil: nothing cached
	ix    *indexFile  // the whole index (merged, when split)
	split *splitIndex // nil: not split
	sum   []byte      // the file's checksum
	marks [][]byte    // hash states of a whole (not split) index
	spare []byte
}

// load returns the parsed index (whole: merged with its shared index when
// split), its split state, and whether it is the cached one (so that the
// hash marks apply), or, for a version 4 index, errIndexV4 and the file.
func (c *indexCache) load(name string) (*indexFile, *splitIndex, bool, []byte, error) {
	if c.file != nil && c.current(name) {
		return c.ix, c.split, true, nil, nil
	}
	c.file, c.split, c.marks = nil, nil, nil
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, nil, false, nil, err
	}
	ix, err := parseIndex(data)
	if err != nil {
		return nil, nil, false, data, err
	}
	ix, split, err := loadSplit(filepath.Dir(name), ix)
	return ix, split, false, data, err
}

// current reports whether the index file is still the one c holds: same
// inode, size, times and checksum (go-git rewrites the index in place).
func (c *indexCache) current(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !os.SameFile(fi, c.file) || fi.Size() != c.file.Size() ||
		!fi.ModTime().Equal(c.file.ModTime()) || !sameChangeTime(fi, c.file) || fi.Size() < sha1.Size {
		return false
	}
	sum := make([]byte, sha1.Size)
	_, err = f.ReadAt(sum, fi.Size()-sha1.Size)
	return err == nil && bytes.Equal(sum, c.sum)
}

// currentIndex is the index as Commit found it, under index.lock.
type currentIndex struct {
	ix     *indexFile  // nil for a version 4 index: see raw
	split  *splitIndex // nil: not split
	cached bool        // ix is the cached one, whose hash marks apply
	raw    []byte      // the file, when it was read
}

// readIndex reads the index (the cached one if still current) and checks
// that Commit can update it, before anything is written. Without an index
// it starts from the files of oldTree.
func (r *Repository) readIndex(lock *indexLock, oldTree plumbing.Hash) (*currentIndex, error) {
	ix, split, cached, raw, err := r.idx.load(lock.index)
	if errors.Is(err, fs.ErrNotExist) {
		if raw, err = r.indexOfTree(oldTree); err == nil {
			ix, err = parseIndex(raw)
		}
	}
	if errors.Is(err, errIndexV4) {
		return &currentIndex{raw: raw}, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := ix.extensions(nil); err != nil {
		return nil, err
	}
	return &currentIndex{ix: ix, split: split, cached: cached, raw: raw}, nil
}

// writeIndex writes the index with ups applied into the lock and puts it in
// place.
func (r *Repository) writeIndex(lock *indexLock, cur *currentIndex, ups []indexUpdate) error {
	c := &r.idx
	if cur.ix == nil {
		w := bufio.NewWriterSize(lock.f, 1<<16)
		if err := patchIndexGoGit(cur.raw, ups, w); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return lock.commit()
	}
	ix, cached := cur.ix, cur.cached
	c.file = nil // apply may change the cached index in place
	same, old, err := ix.apply(ups, c.spare)
	if err != nil {
		return err
	}
	if old != nil {
		c.spare = old[:0]
	}

	mode, maxPercent := r.splitConfig()
	split := cur.split
	if mode == 1 || mode == -1 && (split != nil || len(ix.offsets) >= splitIndexMinEntries) {
		return r.writeSplitIndex(lock, ix, split, ups, maxPercent)
	}
	if !cached {
		same = 0 // no hash states of this content (none after a split write either)
	}

	// Hash on one core while the other writes: the two cost about the same.
	type hashed struct {
		sum   []byte
		marks [][]byte
	}
	ch := make(chan hashed, 1)
	go func() {
		sum, marks := hashIndex(ix.data, c.marks, same)
		ch <- hashed{sum, marks}
	}()
	_, werr := lock.f.Write(ix.data)
	h := <-ch
	if werr != nil {
		return werr
	}
	if _, err := lock.f.Write(h.sum); err != nil {
		return err
	}
	if err := lock.commit(); err != nil {
		return err
	}
	if fi, err := os.Stat(lock.index); err == nil {
		c.file, c.ix, c.split, c.sum, c.marks = fi, ix, nil, h.sum, h.marks
	}
	return nil
}

// writeSplitIndex writes ix (ups applied) as a split index: only the
// entries that differ from the shared index, or a new shared index when
// there is none yet, its file is gone, or the differences reach maxPercent
// of its entries.
func (r *Repository) writeSplitIndex(lock *indexLock, ix *indexFile, split *splitIndex, ups []indexUpdate, maxPercent int) error {
	dir := filepath.Dir(lock.index)
	var replaced plumbing.Hash
	if split != nil {
		if _, err := os.Stat(sharedIndexPath(dir, split.sum)); err == nil {
			for _, u := range ups {
				split.update(ix, u.path)
			}
			if 100*split.changes() > maxPercent*len(split.base.offsets) {
				replaced, split = split.sum, nil
			}
		} else {
			split = nil
		}
	}
	if split == nil {
		var err error
		if split, err = writeShared(dir, ix); err != nil {
			return err
		}
	}
	data := split.encode(ix)
	if _, err := lock.f.Write(data); err != nil {
		return err
	}
	if err := lock.commit(); err != nil {
		return err
	}
	if !replaced.IsZero() {
		removeOldShared(dir, split.sum, replaced)
	}
	c := &r.idx
	if fi, err := os.Stat(lock.index); err == nil {
		c.file, c.ix, c.split, c.sum, c.marks = fi, ix, split, data[len(data)-sha1.Size:], nil
	}
	return nil
}

// indexOfTree returns the index a work tree without one is taken to have:
// the files of the tree it was committed from (none for a first commit).
func (r *Repository) indexOfTree(tree plumbing.Hash) ([]byte, error) {
	var files []indexUpdate
	entries, err := r.readTree(tree)
	if err != nil {
		return nil, err
	}
	err = r.walk(context.Background(), entries, "", func(p string, e object.TreeEntry) {
		files = append(files, indexUpdate{path: p, mode: e.Mode, hash: e.Hash})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b indexUpdate) int { return strings.Compare(a.path, b.path) })
	return newIndexData(files), nil
}

// checkDirs makes sure the directories leading to rel exist inside root as
// real directories, creating them if create is set. A symbolic link or a file
// in the way is an error: git never writes through a symbolic link, or
// a link committed by someone could make it write outside the work tree.
// It reports false when a directory is missing and create is not set.
func checkDirs(root, rel string, create bool) (bool, error) {
	dir := root
	segs := strings.Split(rel, "/")
	for _, seg := range segs[:len(segs)-1] {
		dir = filepath.Join(dir, seg)
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if err := os.Mkdir(dir, 0o777); err != nil {
				return false, fmt.Errorf("%s: %w", rel, err)
			}
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("%s: %w", rel, err)
		case !fi.IsDir():
			return false, fmt.Errorf("%s: %s is not a directory", rel, dir)
		}
	}
	return true, nil
}

// parallelWrites is the number of files from which writeWorkFiles writes on
// several goroutines, and writeWorkers how many.
const (
	parallelWrites = 64
	writeWorkers   = 8
)

// writeWorkFiles writes the files of updates[writes] (sorted by path) and
// records their file system information in ups. A first snapshot writes
// thousands of small files, and the time goes to system calls that overlap
// well, so many files are written by several goroutines, each taking a run
// of consecutive paths: files of one directory are created one after the
// other (the kernel serializes creations in a directory anyway). Each
// directory is checked (and created) once, before any file is written.
func writeWorkFiles(root string, updates []fileUpdate, writes []int, ups []indexUpdate) []error {
	dirOK := map[string]bool{}
	for _, i := range writes {
		dir, _ := splitPath(updates[i].path)
		if _, done := dirOK[dir]; !done {
			_, err := checkDirs(root, updates[i].path, true)
			dirOK[dir] = err == nil
		}
	}
	errs := make([]error, len(writes))
	write := func(k int) {
		u := &updates[writes[k]]
		dir, _ := splitPath(u.path)
		var st indexStat
		var err error
		if dirOK[dir] {
			st, err = writeWorkFileIn(root, u.path, u.content, u.mode == filemode.Executable)
		} else { // report the problem for this file
			st, err = writeWorkFile(root, u.path, u.content, u.mode == filemode.Executable)
		}
		if err != nil {
			errs[k] = err
			return
		}
		ups[writes[k]].stat = st
	}
	if len(writes) < parallelWrites {
		for k := range writes {
			write(k)
		}
	} else {
		chunk := (len(writes) + writeWorkers - 1) / writeWorkers
		var wg sync.WaitGroup
		for lo := 0; lo < len(writes); lo += chunk {
			wg.Go(func() {
				for k := lo; k < min(lo+chunk, len(writes)); k++ {
					write(k)
				}
			})
		}
		wg.Wait()
	}
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

func writeWorkFile(root, rel string, content []byte, executable bool) (indexStat, error) {
	if _, err := checkDirs(root, rel, true); err != nil {
		return indexStat{}, err
	}
	return writeWorkFileIn(root, rel, content, executable)
}

// writeWorkFileIn writes a file whose directories checkDirs has checked.
func writeWorkFileIn(root, rel string, content []byte, executable bool) (indexStat, error) {
	name := filepath.Join(root, filepath.FromSlash(rel))
	if fi, err := os.Lstat(name); err == nil {
		if fi.IsDir() {
			return indexStat{}, fmt.Errorf("%s: is a directory in the work tree", rel)
		}
		if !fi.Mode().IsRegular() {
			if err := os.Remove(name); err != nil {
				return indexStat{}, fmt.Errorf("%s: %w", rel, err)
			}
		}
	}
	perm := os.FileMode(0o666)
	if executable {
		perm = 0o777
	}
	if err := os.WriteFile(name, content, perm); err != nil {
		return indexStat{}, fmt.Errorf("%s: %w", rel, err)
	}
	fi, err := os.Lstat(name)
	if err != nil {
		return indexStat{}, fmt.Errorf("%s: %w", rel, err)
	}
	// An existing file keeps its permissions on write; fix the x bits.
	if p := fi.Mode().Perm(); (p&0o111 != 0) != executable {
		if executable {
			p |= (p & 0o444) >> 2
		} else {
			p &^= 0o111
		}
		if err := os.Chmod(name, p); err != nil {
			return indexStat{}, fmt.Errorf("%s: %w", rel, err)
		}
		if fi, err = os.Lstat(name); err != nil {
			return indexStat{}, fmt.Errorf("%s: %w", rel, err)
		}
	}
	return statOf(fi), nil
}

// removeWorkFile removes a file and then every directory the removal left
// empty, up to the work tree root.
func removeWorkFile(root, rel string) error {
	ok, err := checkDirs(root, rel, false)
	if err != nil || !ok {
		return err
	}
	name := filepath.Join(root, filepath.FromSlash(rel))
	fi, err := os.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("%s: %w", rel, err)
	case fi.IsDir():
		return fmt.Errorf("%s: is a directory in the work tree", rel)
	default:
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	for dir := filepath.Dir(name); dir != root && strings.HasPrefix(dir, root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty (or gone): stop
			break
		}
	}
	return nil
}
