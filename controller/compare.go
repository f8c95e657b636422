package controller

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/dr-syncer/dr-syncer/gitstore"
)

// Actions of a RefDiff.
const (
	ActionAdded   = "added"
	ActionChanged = "changed"
	ActionRemoved = "removed"
)

// ObjectChange is an object of a snapshot that differs between two refs.
type ObjectChange struct {
	Action    string `json:"action"` // added, changed or removed
	Source    string `json:"source"`
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// Object names the object as "Kind[.group] [namespace/]name".
func (c ObjectChange) Object() string {
	kind := c.Kind
	if c.Group != "" {
		kind += "." + c.Group
	}
	if c.Namespace == "" {
		return kind + " " + c.Name
	}
	return kind + " " + c.Namespace + "/" + c.Name
}

// FileChange is any other file that differs: the mapping, overlays.
type FileChange struct {
	Action string `json:"action"`
	Path   string `json:"path"`
}

// KindSummary counts the object changes of one kind in one namespace.
type KindSummary struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Added     int    `json:"added"`
	Changed   int    `json:"changed"`
	Removed   int    `json:"removed"`
}

// RefDiff is what differs between the trees of two commits, as a reviewer
// of replicated changes reads it: objects added, changed and removed, per
// kind and namespace, beside the other files.
type RefDiff struct {
	From    string         `json:"from"`
	To      string         `json:"to"`
	Summary []KindSummary  `json:"summary"`
	Objects []ObjectChange `json:"objects"`
	Files   []FileChange   `json:"files"`
}

// Empty reports whether the two trees are the same.
func (d RefDiff) Empty() bool { return len(d.Objects) == 0 && len(d.Files) == 0 }

// CompareRefs compares the trees of the commits that from and to name
// (`git diff from to`, not the changes since their merge base): files
// under snapshots/ that are objects (gitstore.ParseObjectPath) are listed
// as objects, the rest as files. It reads no cluster.
func CompareRefs(ctx context.Context, repo *gitstore.Repository, from, to string) (RefDiff, error) {
	var d RefDiff
	fromHash, err := repo.Resolve(ctx, from)
	if err != nil {
		return d, err
	}
	toHash, err := repo.Resolve(ctx, to)
	if err != nil {
		return d, err
	}
	d.From, d.To = fromHash.String(), toHash.String()
	a, err := repo.Files(ctx, d.From, "")
	if err != nil {
		return d, err
	}
	b, err := repo.Files(ctx, d.To, "")
	if err != nil {
		return d, err
	}
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	type key struct{ group, kind, ns string }
	sums := map[key]*KindSummary{}
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		ha, inA := a[p]
		hb, inB := b[p]
		action := changeAction(ha, inA, hb, inB)
		if action == "" {
			continue
		}
		source, id, err := gitstore.ParseObjectPath(p)
		if err != nil {
			d.Files = append(d.Files, FileChange{Action: action, Path: p})
			continue
		}
		d.Objects = append(d.Objects, ObjectChange{Action: action, Source: source,
			Group: id.Group, Kind: id.Kind, Namespace: id.Namespace, Name: id.Name})
		k := key{id.Group, id.Kind, id.Namespace}
		s := sums[k]
		if s == nil {
			s = &KindSummary{Group: id.Group, Kind: id.Kind, Namespace: id.Namespace}
			sums[k] = s
		}
		switch action {
		case ActionAdded:
			s.Added++
		case ActionChanged:
			s.Changed++
		default:
			s.Removed++
		}
	}
	for _, s := range sums {
		d.Summary = append(d.Summary, *s)
	}
	slices.SortFunc(d.Summary, func(x, y KindSummary) int {
		return cmp.Or(strings.Compare(x.Kind, y.Kind), strings.Compare(x.Group, y.Group), strings.Compare(x.Namespace, y.Namespace))
	})
	slices.SortStableFunc(d.Objects, func(x, y ObjectChange) int {
		return cmp.Or(strings.Compare(x.Kind, y.Kind), strings.Compare(x.Group, y.Group),
			strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Name, y.Name))
	})
	return d, nil
}

func changeAction(a plumbing.Hash, inA bool, b plumbing.Hash, inB bool) string {
	switch {
	case inA && inB && a == b, !inA && !inB:
		return ""
	case !inA:
		return ActionAdded
	case !inB:
		return ActionRemoved
	}
	return ActionChanged
}
