package controller

import (
	"testing"

	"github.com/dr-syncer/dr-syncer/policies"
)

func TestRefsFor(t *testing.T) {
	plain := &policies.SyncConfig{Spec: policies.Spec{Source: policies.ClusterRef{Name: "prod"}}}
	review := &policies.SyncConfig{Spec: policies.Spec{Source: policies.ClusterRef{Name: "prod"}, Review: policies.Review{Enabled: true}}}
	named := &policies.SyncConfig{Spec: policies.Spec{Source: policies.ClusterRef{Name: "prod"}, Review: policies.Review{Enabled: true, Branch: "pr/dr"}}}
	pin := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name        string
		cfg         *policies.SyncConfig
		branch, ref string
		want        Refs
	}{
		{"defaults", plain, "", "", Refs{Branch: "main", Ref: "main"}},
		{"a branch", plain, "dr", "", Refs{Branch: "dr", Ref: "dr"}},
		{"pinned", plain, "", pin, Refs{Branch: "main", Ref: pin}},
		{"review", review, "", "", Refs{Branch: "snapshots/prod", Ref: "main", Base: "main"}},
		{"review, named branch", named, "", "", Refs{Branch: "pr/dr", Ref: "main", Base: "main"}},
		{"review, followed branch", review, "", "production", Refs{Branch: "snapshots/prod", Ref: "production", Base: "production"}},
		{"review, pinned", review, "", pin[:7], Refs{Branch: "snapshots/prod", Ref: pin[:7], Base: "main"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RefsFor(tc.cfg, tc.branch, tc.ref); got != tc.want {
				t.Errorf("RefsFor = %+v, want %+v", got, tc.want)
			}
		})
	}
}
