// Package testvolume plays, for tests, the parts of a source cluster that
// envtest does not run: the scheduler and kubelet that leave a claim bound
// and mounted by a running pod on a node, with the volume's directory under
// a kubelet directory, and the agent that serves it on loopback.
package testvolume

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/dr-syncer/dr-syncer/pvcsync"
)

// Agent is an agent serving a kubelet directory on 127.0.0.1.
type Agent struct {
	KubeletDir string
	// Keys holds the agent keys (pvcsync.GenerateAgentKeys): what
	// `--agent-keys` points at.
	Keys string
	Port int
	mu   sync.Mutex
	log  bytes.Buffer
}

// Log is what the agent logged so far.
func (a *Agent) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

func (a *Agent) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.Write(p)
}

// StartAgent starts an agent with new keys on a free loopback port; it stops
// with the test.
func StartAgent(t testing.TB) *Agent {
	t.Helper()
	a := &Agent{KubeletDir: filepath.Join(t.TempDir(), "kubelet"), Keys: filepath.Join(t.TempDir(), "agent-keys")}
	require.NoError(t, os.MkdirAll(filepath.Join(a.KubeletDir, "pods"), 0o755))
	require.NoError(t, pvcsync.GenerateAgentKeys(a.Keys))
	cfg, err := pvcsync.LoadAgentConfig(filepath.Join(a.Keys, pvcsync.HostKeyFile), "", filepath.Join(a.Keys, pvcsync.UserCAFile+".pub"))
	require.NoError(t, err)
	cfg.KubeletDir = a.KubeletDir
	cfg.Logger = slog.New(slog.NewTextHandler(a, nil))
	agent, err := pvcsync.NewAgent(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a.Port = l.Addr().(*net.TCPAddr).Port
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = agent.Serve(ctx, l) }()
	t.Cleanup(func() { stop(); <-done })
	return a
}

// MountedClaim creates, in namespace ns of the source cluster c, a node
// reachable at 127.0.0.1, a CSI PersistentVolume, the claim bound to it and
// a running pod on the node that mounts it (owned by a ReplicaSet, so that
// snapshots leave the pod out), and returns the directory where the kubelet
// would have mounted the volume, under kubeletDir. Node and volume names are
// derived from ns; they are deleted with the test.
func MountedClaim(t testing.TB, c kubernetes.Interface, ns, claim, kubeletDir string) string {
	t.Helper()
	ctx := t.Context()
	node, pv := ns+"-node", ns+"-"+claim
	cleanup := context.Background()
	_, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	if err != nil && !isAlreadyExists(err) {
		require.NoError(t, err)
	}
	t.Cleanup(func() { _ = c.CoreV1().Nodes().Delete(cleanup, node, metav1.DeleteOptions{}) })
	n, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	require.NoError(t, err)
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	require.NoError(t, err)

	_, err = c.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pv},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "disk.csi.example.com", VolumeHandle: pv,
			}},
			ClaimRef: &corev1.ObjectReference{Namespace: ns, Name: claim},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CoreV1().PersistentVolumes().Delete(cleanup, pv, metav1.DeleteOptions{}) })
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:  pv,
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	pvc.Status.Phase = corev1.ClaimBound
	_, err = c.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
	require.NoError(t, err)

	yes := true
	pod, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: claim + "-user", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "ReplicaSet", Name: claim + "-user", UID: types.UID("00000000-0000-0000-0000-000000000001"), Controller: &yes,
		}}},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "app:1"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	pod.Status.Phase = corev1.PodRunning
	pod, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	dir := filepath.Join(kubeletDir, "pods", string(pod.UID), "volumes", "kubernetes.io~csi", pv, "mount")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
