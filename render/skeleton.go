package render

import (
	"fmt"

	"github.com/dr-syncer/dr-syncer/policies"
)

// OverlayPath is the user-owned kustomization of the target:
// overlays/<target>/kustomization.yaml.
func OverlayPath(cfg *policies.SyncConfig) string {
	return "overlays/" + cfg.Spec.Target.Name + "/kustomization.yaml"
}

// Skeleton is the content of OverlayPath as `dr-syncer init` writes it, once.
// People own the file from then on; dr-syncer never rewrites it.
func Skeleton(cfg *policies.SyncConfig) []byte {
	return fmt.Appendf(nil, `# The overlay that turns the snapshot of %[1]s into what %[2]s runs.
#
# This file is yours: dr-syncer wrote it once (init) and never rewrites it.
# generated/ is dr-syncer's: it is regenerated from dr-syncer.yaml and the
# snapshot at every snapshot (namespaces, storage classes, access modes, DR
# standby); do not edit it. Add your own changes here (images, labels,
# patches): they apply on top of generated/. Patches with a target keep
# renders of large snapshots fast.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- generated
`, cfg.Spec.Source.Name, cfg.Spec.Target.Name)
}
