package controller

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// encodeSet lays objects out as the files of snapshots/<source>/, on
// every core.
//
// A file is the object as YAML with its keys sorted, byte for byte what
// sigs.k8s.io/yaml.Marshal writes (a test holds them equal), but encoded
// straight from the map with yaml.v2: sigs.k8s.io/yaml goes through JSON and
// parses it back, which made encoding the largest cost of a snapshot of
// 10,000 objects (1.2 s against 0.45 s).
//
// An object whose content the previous call for the same source already
// encoded is not encoded again (see encodeCache): a controller that resyncs
// every few minutes finds almost every object unchanged, and encoding was
// then the largest cost after the LIST itself. A one-shot run (the CLI) has
// no previous call and encodes everything. The file of an object not
// encoded again is returned in blobs, by the git blob hash of its YAML, not
// in files: the cache keeps only that hash, and
// gitstore.Repository.DiffBlobs compares it with the tip's, reading the YAML
// back from the repository only when the file there differs (a person's
// commit changed it). The others are in files.
//
// encodeSet also returns the fingerprint of the whole set (of the objects'
// fingerprints in order); zero when an object has none.
//
// It replaces each object of objects, once encoded, by what generate needs
// of it (render.GenerateInput: an outline of most kinds), so that a large
// snapshot's objects and their files are not held in full together: the
// objects as maps took about as much memory as their YAML, and the two
// together made the controller's peak in the first snapshot.
func encodeSet(cacheKey, source string, objects []*unstructured.Unstructured) (files map[string][]byte, blobs map[string]plumbing.Hash, set fingerprint, err error) {
	prev := lastEncoded.previous(cacheKey)
	next := make([]fingerprint, len(objects))
	out := make([]encoded, len(objects))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(objects)/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var c canonical
			for i := w; i < len(objects); i += workers {
				fp, ok := c.fingerprint(objects[i].Object)
				switch h, hit := prev[fp]; {
				case !ok:
					out[i] = encodeOne(source, objects[i])
				case hit:
					next[i] = fp
					out[i] = encodePath(source, objects[i])
					out[i].hash, out[i].cached = h, true
				default:
					next[i] = fp
					out[i] = encodeOne(source, objects[i])
					if out[i].err == nil {
						out[i].hash = plumbing.ComputeHash(plumbing.BlobObject, out[i].data)
					}
				}
				objects[i] = render.GenerateInput(objects[i])
			}
		})
	}
	wg.Wait()

	hits := 0
	for _, e := range out {
		if e.cached {
			hits++
		}
	}
	files = make(map[string][]byte, len(objects)-hits)
	blobs = make(map[string]plumbing.Hash, hits)
	cache := make(map[fingerprint]plumbing.Hash, len(objects))
	all := sha256.New()
	whole := true
	for i, e := range out {
		if e.err != nil {
			return nil, nil, fingerprint{}, e.err
		}
		_, dup := files[e.path]
		if _, dupBlob := blobs[e.path]; dup || dupBlob {
			return nil, nil, fingerprint{}, fmt.Errorf("%s: two objects map to %s", idOf(objects[i]), e.path)
		}
		if e.cached {
			blobs[e.path] = e.hash
		} else {
			files[e.path] = e.data
		}
		if next[i] == (fingerprint{}) {
			whole = false
			continue
		}
		cache[next[i]] = e.hash
		all.Write(next[i][:])
	}
	lastEncoded.remember(cacheKey, cache)
	if whole {
		all.Sum(set[:0])
	}
	return files, blobs, set, nil
}

// generate returns render.Generate(cfg, objects), or the files of the
// previous call for the same source when the mapping and the objects (set,
// their fingerprint from encodeSet) are the same: Generate depends on
// nothing else, and on a periodic resync, where nothing changed, it cost
// more than the commit. The files returned are shared: read them only.
func generate(cfg *policies.SyncConfig, objects []*unstructured.Unstructured, set fingerprint) (map[string][]byte, error) {
	source := cfg.Spec.Source.Name
	var key fingerprint
	if set != (fingerprint{}) {
		mapping, err := json.Marshal(cfg)
		if err == nil {
			key = sha256.Sum256(append(set[:], mapping...))
		}
	}
	if key != (fingerprint{}) {
		if files := lastEncoded.generated(source, key); files != nil {
			return files, nil
		}
	}
	files, err := render.Generate(cfg, objects)
	if err != nil {
		return nil, err
	}
	if key != (fingerprint{}) {
		lastEncoded.rememberGenerated(source, key, files)
	}
	return files, nil
}

// encoded is one object's file, or why there is none: its content, or
// only its blob hash when it came from the cache (cached).
type encoded struct {
	path   string
	data   []byte
	hash   plumbing.Hash // of data, when the object has a fingerprint
	cached bool
	err    error
}

func encodeOne(source string, o *unstructured.Unstructured) encoded {
	e := encodePath(source, o)
	if e.err != nil {
		return e
	}
	if e.data, e.err = yamlv2.Marshal(o.Object); e.err != nil {
		e.err = fmt.Errorf("%s: encode: %w", idOf(o), e.err)
	}
	return e
}

func encodePath(source string, o *unstructured.Unstructured) (e encoded) {
	id := idOf(o)
	if e.path, e.err = gitstore.ObjectPath(source, gitstore.ObjectID(id)); e.err != nil {
		e.err = fmt.Errorf("%s: %w", id, e.err)
	}
	return e
}

func idOf(o *unstructured.Unstructured) snapshot.ID {
	return snapshot.ID{Group: o.GroupVersionKind().Group, Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// fingerprint is the SHA-256 of an object's canonical form (see canonical):
// equal fingerprints mean equal content, hence the same YAML.
type fingerprint [sha256.Size]byte

// encodeCache holds, for each source and repository (encodeKey), the git
// blob hashes of the files of the last encodeSet call by the fingerprint of
// the object each came from. Each call replaces its key's entries by those
// of its own objects, so the cache holds one entry per object of the last
// snapshot and never grows with time. The repository is part of the key: a
// hash is only worth something where its blob is — writers of the same
// source on clones of their own (cmd/dr-syncer's TestRemoteConcurrentWriters,
// in one process) each have the blobs of their own commits.
//
// It holds hashes, not the files: the files of every object of a snapshot
// stayed in a long-running controller's heap for good (11 MB at 10,000
// objects) only to be compared with the tip, which holds them already. A
// hash is 20 bytes, and the repository gives the content back by it in the
// rare case it is needed (see encodeSet).
//
// A hash is a pure function of the key, so it is valid whatever changed in
// between (mapping, sealed Secrets, the tip): a changed object has another
// fingerprint. What can go is the blob itself (a gc after a person's
// commit replaced the file, a shallow clone): then DiffBlobs fails with
// gitstore.ErrBlobMissing and Snapshot makes the cache forget the key
// (forget) and takes the snapshot again.
type encodeCache struct {
	mu       sync.Mutex
	bySource map[string]map[fingerprint]plumbing.Hash
	// generatedBy holds, for each source, the generated overlay of the
	// last snapshot and the fingerprint of what it was generated from.
	generatedBy map[string]generatedFiles
}

type generatedFiles struct {
	key   fingerprint
	files map[string][]byte
}

// lastEncoded is the process's cache: a snapshot is a function call, and a
// controller that resyncs calls it again and again.
//
// encodeKey is its key for source in repo.
func encodeKey(repo *gitstore.Repository, source string) string {
	return repo.RefsDir() + "\x00" + source
}

var lastEncoded = &encodeCache{bySource: map[string]map[fingerprint]plumbing.Hash{}, generatedBy: map[string]generatedFiles{}}

func (c *encodeCache) previous(source string) map[fingerprint]plumbing.Hash {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySource[source] // never written once published
}

func (c *encodeCache) remember(source string, blobs map[fingerprint]plumbing.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bySource[source] = blobs
}

// forget drops what the cache holds for source, so that the next
// encodeSet encodes every object: the repository lost blobs it named.
func (c *encodeCache) forget(source string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.bySource, source)
}

// generated returns the generated overlay remembered for source if it was
// generated from key, else nil.
func (c *encodeCache) generated(source string, key fingerprint) map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.generatedBy[source]; g.key == key {
		return g.files
	}
	return nil
}

func (c *encodeCache) rememberGenerated(source string, key fingerprint, files map[string][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generatedBy[source] = generatedFiles{key, files}
}

// canonical serializes objects unambiguously: a tag per Go type, lengths
// before contents, map keys sorted. Walking an object this way costs a small
// part of encoding it as YAML. One per goroutine: keys is scratch space,
// a stack of the sorted keys of the maps being walked.
type canonical struct {
	buf  []byte
	keys []string
}

// fingerprint returns the fingerprint of v, and false for a value holding a
// type append does not know, which is then simply not cached.
func (c *canonical) fingerprint(v any) (fingerprint, bool) {
	c.buf = c.buf[:0]
	if !c.append(v) {
		return fingerprint{}, false
	}
	return sha256.Sum256(c.buf), true
}

func (c *canonical) append(v any) bool {
	b := c.buf
	switch v := v.(type) {
	case nil:
		b = append(b, 'n')
	case bool:
		if v {
			b = append(b, 't')
		} else {
			b = append(b, 'f')
		}
	case string:
		b = binary.AppendUvarint(append(b, 's'), uint64(len(v)))
		b = append(b, v...)
	case int64:
		b = binary.BigEndian.AppendUint64(append(b, 'i'), uint64(v))
	case int:
		b = binary.BigEndian.AppendUint64(append(b, 'I'), uint64(v))
	case float64:
		b = binary.BigEndian.AppendUint64(append(b, 'd'), math.Float64bits(v))
	case []any:
		c.buf = binary.AppendUvarint(append(b, 'l'), uint64(len(v)))
		for _, e := range v {
			if !c.append(e) {
				return false
			}
		}
		return true
	case map[string]any:
		c.buf = binary.AppendUvarint(append(b, 'm'), uint64(len(v)))
		start := len(c.keys)
		for k := range v {
			c.keys = append(c.keys, k)
		}
		slices.Sort(c.keys[start:])
		for i := start; i < start+len(v); i++ {
			k := c.keys[i] // c.keys may grow (and move) in the walk below
			c.buf = binary.AppendUvarint(c.buf, uint64(len(k)))
			c.buf = append(c.buf, k...)
			if !c.append(v[k]) {
				c.keys = c.keys[:start]
				return false
			}
		}
		c.keys = c.keys[:start]
		return true
	default:
		return false
	}
	c.buf = b
	return true
}
