package main

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/pvcsync"
)

// TestVolumeRunnerFollowsMapping: spec.volumes.sparse and inPlace reach the
// runner, sparse on unless the mapping turns it off.
func TestVolumeRunnerFollowsMapping(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name            string
		volumes         policies.Volumes
		sparse, inPlace bool
	}{
		{"defaults", policies.Volumes{}, true, false},
		{"sparse off", policies.Volumes{Sparse: &off}, false, false},
		{"in place", policies.Volumes{InPlace: true}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &policies.SyncConfig{}
			cfg.Metadata.Name = "m"
			cfg.Spec.Volumes = tc.volumes
			f := &volumeFlags{localDir: t.TempDir(), agentKeys: t.TempDir()}
			opts, stop, err := f.volumeOptions(&cobra.Command{}, controller.ApplyOptions{Config: cfg, Target: &rest.Config{}}, &rest.Config{})
			require.NoError(t, err)
			defer stop()
			r, ok := opts.Runner.(*pvcsync.LocalRunner)
			require.True(t, ok, "%T", opts.Runner)
			require.Equal(t, tc.sparse, r.Sparse)
			require.Equal(t, tc.inPlace, r.InPlace)
		})
	}
}
