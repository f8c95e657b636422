package controller

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
)

// Failover turns DR standby off for good: one commit on the branch sets
// spec.standby.disabled in dr-syncer.yaml and regenerates the generated
// overlay without the standby patches, then the branch is applied, so the
// target runs the source's replica counts and CronJob schedules. Being in
// the mapping, the choice holds for every later snapshot and apply, and it
// is reviewable (and revertable) like any commit. In a clone of a remote
// the commit is pushed before the apply.
func Failover(ctx context.Context, opts ApplyOptions) (plumbing.Hash, ApplyResult, error) {
	branch := cmp.Or(opts.Ref, DefaultBranch)
	var cfg *policies.SyncConfig
	// Built on the tip it is given: in a clone of a remote, a rejected
	// push builds the failover again on the remote's new tip.
	build := func(ctx context.Context, tip plumbing.Hash) ([]gitstore.Change, gitstore.CommitOptions, error) {
		if tip.IsZero() {
			return nil, gitstore.CommitOptions{}, fmt.Errorf("branch %s has no commit", branch)
		}
		mapping, err := opts.Repo.ReadFile(ctx, tip.String(), policies.FileName)
		if err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		edited, err := disableStandby(mapping)
		if err != nil {
			return nil, gitstore.CommitOptions{}, fmt.Errorf("%s: %w", policies.FileName, err)
		}
		if cfg, err = policies.Decode(policies.FileName, edited); err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		objects, err := snapshotObjects(ctx, opts.Repo, tip.String(), cfg.Spec.Source.Name)
		if err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		generated, err := render.Generate(cfg, objects)
		if err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		gcs, err := opts.Repo.Diff(ctx, branch, render.GeneratedPrefix(cfg), generated)
		if err != nil {
			return nil, gitstore.CommitOptions{}, err
		}
		changes := append([]gitstore.Change{{Path: policies.FileName, Content: edited}}, gcs.Changes...)
		return changes, gitstore.CommitOptions{
			Message: fmt.Sprintf("failover: %s leaves DR standby\n\nWorkloads run with the replica counts and schedules of %s.\nRevert this commit to go back to standby.\n",
				cfg.Spec.Target.Name, cfg.Spec.Source.Name),
		}, nil
	}
	hash, err := commit(ctx, opts.Repo, branch, build)
	if err != nil {
		return plumbing.ZeroHash, ApplyResult{}, err
	}
	opts.Config, opts.Ref = cfg, hash.String()
	res, err := Apply(ctx, opts)
	return hash, res, err
}

// disableStandby sets spec.standby.disabled to true in a mapping file,
// keeping its comments.
func disableStandby(data []byte) ([]byte, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yamlv3.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("not a YAML document")
	}
	spec := child(doc.Content[0], "spec")
	if spec == nil {
		return nil, fmt.Errorf("no spec")
	}
	standby := child(spec, "standby")
	if standby == nil {
		standby = &yamlv3.Node{Kind: yamlv3.MappingNode}
		spec.Content = append(spec.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: "standby"}, standby)
	}
	standby.Style = 0 // block style, even if it was written {…}
	if v := child(standby, "disabled"); v != nil {
		v.Kind, v.Tag, v.Value = yamlv3.ScalarNode, "!!bool", "true"
	} else {
		standby.Content = append(standby.Content,
			&yamlv3.Node{Kind: yamlv3.ScalarNode, Value: "disabled"},
			&yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	var buf bytes.Buffer
	enc := yamlv3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

func child(m *yamlv3.Node, key string) *yamlv3.Node {
	if m == nil || m.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// snapshotObjects reads the objects of the snapshot of source at rev.
func snapshotObjects(ctx context.Context, repo *gitstore.Repository, rev, source string) ([]*unstructured.Unstructured, error) {
	files, err := repo.Files(ctx, rev, gitstore.SnapshotPrefix(source))
	if err != nil {
		return nil, err
	}
	var objects []*unstructured.Unstructured
	for _, p := range slices.Sorted(maps.Keys(files)) {
		data, err := repo.ReadBlob(ctx, files[p])
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		objects = append(objects, u)
	}
	return objects, nil
}
