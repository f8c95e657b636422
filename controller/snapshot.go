package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// DefaultBranch is the branch snapshots are committed to, and the target
// follows, unless review mode says otherwise.
const DefaultBranch = "main"

// SnapshotOptions say what to snapshot and where to record it.
type SnapshotOptions struct {
	Repo   *gitstore.Repository
	Branch string // default DefaultBranch
	Config *policies.SyncConfig
	Source *rest.Config
	// Sealer seals Secrets; required unless the mapping excludes them.
	Sealer *snapshot.Sealer
	// Mode is recorded in the Snapshot-Mode trailer: manual, scheduled or
	// continuous. Default manual.
	Mode string
	// Base, in review mode (Refs.Base), is the branch that Branch starts
	// from when it does not exist, and moves up to when everything on it
	// has been merged there.
	Base string
}

// SnapshotResult is what one snapshot did.
type SnapshotResult struct {
	// Commit is the new commit, or the current tip when nothing changed.
	Commit                   plumbing.Hash
	Changed                  bool
	Added, Modified, Removed []string // paths in the repository
	Objects                  int      // objects in the snapshot
	Generated                int      // files of overlays/<target>/generated/ changed
	Skipped                  map[string]int

	// generated is the generated overlay that Commit holds (shared with
	// the encode cache: read only), for continuous mode, which would
	// otherwise generate it again from every object at its next commit.
	generated map[string][]byte
}

// Snapshot reads the source, writes its object set under
// snapshots/<source>/ as one commit touching only what changed, and returns
// what it did. Nothing changed: no commit. In a clone of a remote the
// commit is pushed, and rebuilt on the new tip when the push is rejected.
func Snapshot(ctx context.Context, opts SnapshotOptions) (SnapshotResult, error) {
	res, err := snapshotOnce(ctx, opts)
	if errors.Is(err, gitstore.ErrBlobMissing) {
		// The encode cache named the blob of an unchanged object that the
		// repository no longer has (a gc after a person's commit replaced
		// the file, a shallow clone), and the file differs from the tip.
		// Its YAML is gone with the object (encodeSet keeps outlines), so
		// the snapshot is taken again with the cache forgotten, which
		// encodes every object: once, since a snapshot with nothing cached
		// gives DiffBlobs no blob to miss. Rare enough that reading the
		// source twice is cheaper than keeping the files for it.
		lastEncoded.forget(encodeKey(opts.Repo, opts.Config.Spec.Source.Name))
		res, err = snapshotOnce(ctx, opts)
	}
	return res, err
}

func snapshotOnce(ctx context.Context, opts SnapshotOptions) (SnapshotResult, error) {
	branch := cmp.Or(opts.Branch, DefaultBranch)
	mode := cmp.Or(opts.Mode, "manual")
	source := opts.Config.Spec.Source.Name

	// Listing every kind would print the deprecation warning of each
	// deprecated one (v1 Endpoints...) at every snapshot: they say nothing
	// about the snapshot.
	srcCfg := rest.CopyConfig(opts.Source)
	srcCfg.WarningHandler = rest.NoWarnings{}
	if opts.Base != "" {
		if err := startBranch(ctx, opts.Repo, branch, opts.Base); err != nil {
			return SnapshotResult{}, err
		}
	}
	tip, err := opts.Repo.Head(ctx, branch)
	if err != nil {
		return SnapshotResult{}, err
	}
	takeOpts := snapshot.Options{Sealer: opts.Sealer}
	if !tip.IsZero() {
		// Read from the commit, not the branch, so that every object
		// comes from the same snapshot even if the branch moves meanwhile.
		prev := &previousObjects{repo: opts.Repo, rev: tip.String(), source: source, last: lastPrevious.get(source)}
		takeOpts.Previous = prev.get
		defer func() { lastPrevious.remember(source, prev.read) }()
	}
	set, err := snapshot.Take(ctx, opts.Config, srcCfg, takeOpts)
	if err != nil {
		return SnapshotResult{}, fmt.Errorf("source %s: %w", source, err)
	}

	files, blobs, fp, err := encodeSet(encodeKey(opts.Repo, source), source, set.Objects)
	if err != nil {
		return SnapshotResult{}, err
	}
	// The target's generated overlay follows the mapping and the snapshot,
	// in the same commit, so that every commit renders as it was reviewed.
	generated, err := generate(opts.Config, set.Objects, fp)
	if err != nil {
		return SnapshotResult{}, err
	}
	res := SnapshotResult{Objects: len(set.Objects), Skipped: set.Skipped, generated: generated}
	// build compares with the tip it is given: in a clone of a remote, a
	// rejected push builds again on the remote's new tip (the source is not
	// read again: the snapshot is the same, only what it changes differs).
	build := func(ctx context.Context, _ plumbing.Hash) ([]gitstore.Change, gitstore.CommitOptions, error) {
		cs, err := opts.Repo.DiffBlobs(ctx, branch, gitstore.SnapshotPrefix(source), files, blobs)
		if err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		gcs, err := opts.Repo.Diff(ctx, branch, render.GeneratedPrefix(opts.Config), generated)
		if err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		res.Added, res.Modified, res.Removed, res.Generated = cs.Added, cs.Modified, cs.Removed, len(gcs.Changes)
		return append(cs.Changes, gcs.Changes...), gitstore.CommitOptions{Message: snapshotMessage(source, mode, res)}, nil
	}
	res.Commit, err = commit(ctx, opts.Repo, branch, build)
	if errors.Is(err, gitstore.ErrNoChange) {
		res.Added, res.Modified, res.Removed, res.Generated = nil, nil, nil, 0
		res.Commit, err = opts.Repo.Head(ctx, branch)
		return res, err
	}
	if err != nil {
		return SnapshotResult{}, err
	}
	res.Changed = true
	return res, nil
}

// snapshotMessage is the commit message: a subject a reviewer can scan in
// `git log --oneline`, and trailers that map the commit to its origin.
func snapshotMessage(source, mode string, r SnapshotResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "snapshot %s: +%d ~%d -%d\n\n", source, len(r.Added), len(r.Modified), len(r.Removed))
	for _, group := range []struct {
		sign  string
		paths []string
	}{{"+", r.Added}, {"~", r.Modified}, {"-", r.Removed}} {
		for i, p := range group.paths {
			if i == 20 {
				fmt.Fprintf(&b, "%s … and %d more\n", group.sign, len(group.paths)-20)
				break
			}
			fmt.Fprintf(&b, "%s %s\n", group.sign, strings.TrimPrefix(p, gitstore.SnapshotPrefix(source)))
		}
	}
	if r.Generated > 0 {
		fmt.Fprintf(&b, "(and %d files of the generated overlay)\n", r.Generated)
	}
	fmt.Fprintf(&b, "\nSource-Cluster: %s\nSnapshot-Mode: %s\n", source, mode)
	fmt.Fprintf(&b, "Objects-Added: %d\nObjects-Changed: %d\nObjects-Removed: %d\n", len(r.Added), len(r.Modified), len(r.Removed))
	for _, reason := range slices.Sorted(maps.Keys(r.Skipped)) {
		if reason == "secrets-excluded" {
			fmt.Fprintf(&b, "Secrets-Excluded: %d\n", r.Skipped[reason])
		}
	}
	return b.String()
}

// previousObjects reads objects as the commit rev records them, for a full
// snapshot that asks for every Secret: it lists the files of each kind's
// directory of a namespace once, the first time it is asked for one of
// them, and then reads each blob by its hash. Reading each file by its path
// walked the trees from the root again for each of them, which cost more
// than the rest of an unchanged snapshot's sealing.
//
// A blob that the previous snapshot of the same source read (last) is not
// read and decoded again: blobs are named by their content, so the object
// decoded then is the object now.
type previousObjects struct {
	repo   *gitstore.Repository
	rev    string
	source string
	last   map[plumbing.Hash]*unstructured.Unstructured

	mu   sync.Mutex
	dirs map[string]map[string]plumbing.Hash // directory → its files
	read map[plumbing.Hash]*unstructured.Unstructured
}

func (p *previousObjects) get(ctx context.Context, id snapshot.ID) (*unstructured.Unstructured, error) {
	path, err := gitstore.ObjectPath(p.source, gitstore.ObjectID(id))
	if err != nil {
		return nil, err
	}
	dir := path[:strings.LastIndexByte(path, '/')+1]
	p.mu.Lock()
	files, ok := p.dirs[dir]
	if !ok {
		if files, err = p.repo.Files(ctx, p.rev, dir); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if p.dirs == nil {
			p.dirs = map[string]map[string]plumbing.Hash{}
		}
		p.dirs[dir] = files
	}
	h, ok := files[path]
	u := p.last[h]
	p.mu.Unlock()
	if !ok {
		return nil, nil
	}
	if u == nil {
		data, err := p.repo.ReadBlob(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if u, err = decodePrevious(path, data); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	if p.read == nil {
		p.read = map[plumbing.Hash]*unstructured.Unstructured{}
	}
	p.read[h] = u
	p.mu.Unlock()
	return u, nil
}

// previousCache holds, for each source, the objects that the last
// snapshot read from the repository (see previousObjects), by blob hash.
// Each snapshot replaces its source's entries, so it holds one snapshot's
// Secrets at most.
type previousCache struct {
	mu       sync.Mutex
	bySource map[string]map[plumbing.Hash]*unstructured.Unstructured
}

var lastPrevious = &previousCache{bySource: map[string]map[plumbing.Hash]*unstructured.Unstructured{}}

func (c *previousCache) get(source string) map[plumbing.Hash]*unstructured.Unstructured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySource[source] // never written once published
}

func (c *previousCache) remember(source string, objects map[plumbing.Hash]*unstructured.Unstructured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bySource[source] = objects
}

// previous reads an object as the commit rev records it, or nil.
func previous(ctx context.Context, repo *gitstore.Repository, rev, source string, id snapshot.ID) (*unstructured.Unstructured, error) {
	path, err := gitstore.ObjectPath(source, gitstore.ObjectID(id))
	if err != nil {
		return nil, err
	}
	data, err := repo.ReadFile(ctx, rev, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodePrevious(path, data)
}

func decodePrevious(path string, data []byte) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}
