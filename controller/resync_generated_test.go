package controller

import (
	"testing"
	"time"

	"github.com/dr-syncer/dr-syncer/render"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// TestRunContinuousGeneratedAfterResync: the commits that follow a full
// snapshot derive the generated overlay from the one the snapshot
// committed, and it stays what a full snapshot generates: a Deployment's
// new replica count reaches the target's standby annotation, a snapshot
// taken afterwards finds nothing to change in the overlay, and the overlay
// a snapshot hands on (SnapshotResult.generated, what resync keeps) is the
// one on the branch.
func TestRunContinuousGeneratedAfterResync(t *testing.T) {
	f := newRunFixture(t, "continuous")
	ctx := t.Context()
	deployments := clusters.Source.Clientset().AppsV1().Deployments(f.ns)
	labels := map[string]string{"app": "web"}
	_, err := deployments.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	createConfigMap(t, clusters.Source, f.ns, "before", "0")
	f.start(t, f.opts)
	original := func() string {
		d, err := clusters.Target.Clientset().AppsV1().Deployments(f.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
			return ""
		}
		return d.Annotations["dr-syncer.io/original-replicas"]
	}
	require.Eventually(t, func() bool { return original() == "2" }, 30*time.Second, 50*time.Millisecond, "the full snapshot is applied")

	_, err = deployments.Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	createConfigMap(t, clusters.Source, f.ns, "after", "1")
	require.Eventually(t, func() bool { return original() == "5" && targetValue(f.ns, "after") == "1" }, 30*time.Second, 50*time.Millisecond,
		"the change is committed with its patch of the generated overlay, and applied")

	res, err := Snapshot(ctx, SnapshotOptions{Repo: f.repo, Config: f.opts.Config, Source: f.opts.Source})
	require.NoError(t, err)
	require.Zero(t, res.Generated, "the generated overlay of continuous mode is the one a full snapshot generates")

	// What a resync hands continuous mode (res.generated) is the overlay
	// the branch holds, file for file: without it (nil) the next commit
	// would generate it from every object again.
	tip, err := f.repo.Head(ctx, DefaultBranch)
	require.NoError(t, err)
	files, err := f.repo.Files(ctx, tip.String(), render.GeneratedPrefix(f.opts.Config))
	require.NoError(t, err)
	require.Len(t, res.generated, len(files))
	for path := range files {
		data, err := f.repo.ReadFile(ctx, tip.String(), path)
		require.NoError(t, err)
		require.Equal(t, string(data), string(res.generated[path]), path)
	}
}
