package gitstore

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// packThreshold is the number of new objects from which Commit writes one
// pack instead of loose objects. A loose object costs a temporary file, a
// rename and a directory entry; 10,000 of them (a first snapshot) took most
// of the time of the commit, one pack of them a few tens of milliseconds.
// Below the threshold loose objects are as fast and leave no small packs
// behind for git gc to merge.
const packThreshold = 256

// packObject is one object to write: its type, hash and content.
type packObject struct {
	typ  plumbing.ObjectType
	hash plumbing.Hash
	data []byte
}

// packEntry is an object as it is in the pack: header and zlib stream.
type packEntry struct {
	hash plumbing.Hash
	raw  []byte // type and size header, then the compressed content
	crc  uint32 // of raw, for the index
}

// writePack writes objs (unique hashes) as one pack and its index in
// objects/pack, as git's index-pack would leave them: undeltified entries,
// version 2 index. Both are written under temporary names ("tmp_pack_*",
// "tmp_idx_*", which git gc removes when they are left behind), synced, and
// renamed into place, the pack before the index: git and go-git only look at
// packs that have an index, so a reader never sees a partial pack, and a
// crash leaves at worst an unreferenced pack. The caller moves the branch
// only after writePack has returned.
func writePack(ctx context.Context, objectsDir string, objs []packObject) error {
	entries, err := compressObjects(ctx, objs)
	if err != nil {
		return err
	}
	dir := filepath.Join(objectsDir, "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	pack, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return err
	}
	packDone := false
	defer func() {
		if !packDone {
			pack.Close()
			os.Remove(pack.Name())
		}
	}()
	sum := sha1.New()
	w := io.MultiWriter(pack, sum)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(entries)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	offsets := make([]uint64, len(entries))
	off := uint64(len(hdr))
	// One write per few hundred KiB rather than per object.
	buf := make([]byte, 0, 1<<18)
	for i := range entries {
		offsets[i] = off
		off += uint64(len(entries[i].raw))
		if len(buf)+len(entries[i].raw) > cap(buf) && len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		buf = append(buf, entries[i].raw...)
	}
	if _, err := w.Write(buf); err != nil {
		return err
	}
	var packSum plumbing.Hash
	copy(packSum[:], sum.Sum(nil))
	if _, err := pack.Write(packSum[:]); err != nil {
		return err
	}
	if err := closeSynced(pack); err != nil {
		return err
	}

	idx := packIndex(entries, offsets, packSum)
	idxTmp, err := os.CreateTemp(dir, "tmp_idx_")
	if err != nil {
		return err
	}
	if _, err := idxTmp.Write(idx); err != nil {
		idxTmp.Close()
		os.Remove(idxTmp.Name())
		return err
	}
	if err := closeSynced(idxTmp); err != nil {
		os.Remove(idxTmp.Name())
		return err
	}

	base := filepath.Join(dir, "pack-"+packSum.String())
	if err := os.Rename(pack.Name(), base+".pack"); err != nil {
		os.Remove(idxTmp.Name())
		return err
	}
	packDone = true
	if err := os.Rename(idxTmp.Name(), base+".idx"); err != nil {
		os.Remove(idxTmp.Name())
		os.Remove(base + ".pack")
		return err
	}
	return syncDir(dir)
}

// closeSynced makes f read-only, as git leaves packs, syncs and closes it.
func closeSynced(f *os.File) error {
	err := f.Chmod(0o444)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// compressObjects encodes every object as a pack entry, on every core.
// Compression is zlib's fastest level: snapshot YAML compresses nearly as
// well with it, at a third of the cost, and git repack recompresses when
// someone wants smaller packs.
func compressObjects(ctx context.Context, objs []packObject) ([]packEntry, error) {
	entries := make([]packEntry, len(objs))
	workers := min(runtime.GOMAXPROCS(0), 1+len(objs)/256)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			var b bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&b, zlib.BestSpeed)
			for i := w; i < len(objs); i += workers {
				if i%1024 == w && ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				o := &objs[i]
				b.Reset()
				b.Write(packEntryHeader(o.typ, len(o.data)))
				zw.Reset(&b)
				zw.Write(o.data)
				if err := zw.Close(); err != nil {
					errs[w] = err
					return
				}
				raw := bytes.Clone(b.Bytes())
				entries[i] = packEntry{hash: o.hash, raw: raw, crc: crc32.ChecksumIEEE(raw)}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return entries, nil
}

// packEntryHeader is the type and size of an undeltified entry: 3 bits of
// type and 4 bits of size in the first byte, 7 bits of size in each next
// one, the top bit saying that another byte follows.
func packEntryHeader(t plumbing.ObjectType, size int) []byte {
	b := []byte{byte(t)<<4 | byte(size&0x0f)}
	size >>= 4
	for size > 0 {
		b[len(b)-1] |= 0x80
		b = append(b, byte(size&0x7f))
		size >>= 7
	}
	return b
}

// packIndex returns the version 2 index of a pack (gitformat-pack(5)):
// fan-out table, sorted object ids, CRC-32s, offsets (large ones in a
// second table), the pack's checksum and the index's own.
func packIndex(entries []packEntry, offsets []uint64, packSum plumbing.Hash) []byte {
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(entries[a].hash[:], entries[b].hash[:]) })

	be := binary.BigEndian
	n := len(entries)
	out := make([]byte, 0, 8+256*4+n*(20+4+4)+40)
	out = append(out, 0xff, 't', 'O', 'c', 0, 0, 0, 2)
	var fanout [256]uint32
	for _, e := range entries {
		fanout[e.hash[0]]++
	}
	var total uint32
	for i := range fanout {
		total += fanout[i]
		out = be.AppendUint32(out, total)
	}
	for _, i := range order {
		out = append(out, entries[i].hash[:]...)
	}
	for _, i := range order {
		out = be.AppendUint32(out, entries[i].crc)
	}
	var large []uint64
	for _, i := range order {
		if o := offsets[i]; o < 1<<31 {
			out = be.AppendUint32(out, uint32(o))
		} else {
			out = be.AppendUint32(out, 1<<31|uint32(len(large)))
			large = append(large, o)
		}
	}
	for _, o := range large {
		out = be.AppendUint64(out, o)
	}
	out = append(out, packSum[:]...)
	sum := sha1.Sum(out)
	return append(out, sum[:]...)
}
