package pvcsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
	"github.com/dr-syncer/dr-syncer/policies"
)

// testConfig maps each pair of names (source, target) and copies every
// claim.
func testConfig(nsPairs ...string) *policies.SyncConfig {
	c := &policies.SyncConfig{}
	c.Metadata.Name = "test"
	c.Spec.Source.Name, c.Spec.Target.Name = "src", "dst"
	for i := 0; i+1 < len(nsPairs); i += 2 {
		c.Spec.Namespaces = append(c.Spec.Namespaces, policies.NamespaceMapping{Source: nsPairs[i], Target: nsPairs[i+1]})
	}
	c.Default()
	return c
}

// runNonce tells this test process's cluster-scoped objects from those of
// another run against the same clusters.
var runNonce = strconv.FormatInt(time.Now().UnixNano(), 36)

var uniqSuffixes sync.Map // *testing.T → string

// uniq makes a cluster-scoped name unique to the test run (and the same for
// the same name within it).
func uniq(t *testing.T, name string) string {
	suffix, _ := uniqSuffixes.LoadOrStore(t, objectHash(t.Name(), runNonce, strconv.FormatInt(time.Now().UnixNano(), 10))[:6])
	return name + "-" + suffix.(string)
}

func createNode(t *testing.T, c kubernetes.Interface, name string, addrs ...corev1.NodeAddress) {
	t.Helper()
	ctx := t.Context()
	node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Node/%s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if len(addrs) > 0 {
		node.Status.Addresses = addrs
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("Node/%s: update status: %v", name, err)
		}
	}
}

func internalIP(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

func externalIP(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip}
}

func createPV(t *testing.T, c kubernetes.Interface, name string, src corev1.PersistentVolumeSource, mode ...corev1.PersistentVolumeMode) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: src,
		},
	}
	if len(mode) > 0 {
		pv.Spec.VolumeMode = &mode[0]
	}
	if src.Local != nil {
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"n"}}},
		}}}}
	}
	if _, err := c.CoreV1().PersistentVolumes().Create(t.Context(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PersistentVolume/%s: %v", name, err)
	}
	t.Cleanup(func() {
		// The apiserver gave it the kubernetes.io/pv-protection finalizer,
		// which only a controller removes.
		ctx := context.Background()
		_, _ = c.CoreV1().PersistentVolumes().Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		_ = c.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

// createPVC creates a claim; bound to volume when volume is not empty.
func createPVC(t *testing.T, c kubernetes.Interface, ns, name, volume string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	t.Helper()
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: modes,
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:  volume,
		},
	}
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Create(t.Context(), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PersistentVolumeClaim/%s/%s: %v", ns, name, err)
	}
	if volume != "" {
		pvc.Status.Phase = corev1.ClaimBound
		if pvc, err = c.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(t.Context(), pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("PersistentVolumeClaim/%s/%s: update status: %v", ns, name, err)
		}
	}
	return pvc
}

// createPod creates a pod on node that mounts the claim, in phase.
func createPod(t *testing.T, c kubernetes.Interface, ns, name, node, claim string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "app"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
	pod, err := c.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Pod/%s/%s: %v", ns, name, err)
	}
	if phase != "" {
		pod.Status.Phase = phase
		if pod, err = c.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("Pod/%s/%s: update status: %v", ns, name, err)
		}
	}
	return pod
}

func renderedPVCs(claims ...Claim) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, c := range claims {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("PersistentVolumeClaim")
		u.SetNamespace(c.Namespace)
		u.SetName(c.Name)
		out = append(out, u)
		// Another kind of the same name must not count.
		cm := &unstructured.Unstructured{}
		cm.SetAPIVersion("v1")
		cm.SetKind("ConfigMap")
		cm.SetNamespace(c.Namespace)
		cm.SetName(c.Name + "-cm")
		out = append(out, cm)
	}
	return out
}

func TestPlanVolumeTypes(t *testing.T) {
	src := clusters.Source.Clientset()
	ns := clusters.Source.Namespace(t)
	node := uniq(t, "node")
	createNode(t, src, node, internalIP("10.0.0.7"), externalIP("203.0.113.7"))
	// The node's kubelet hands rbd to a CSI driver.
	csiNode := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{
		Name:        node,
		Annotations: map[string]string{corev1.MigratedPluginsAnnotationKey: "kubernetes.io/rbd"},
	}}
	if _, err := src.StorageV1().CSINodes().Create(t.Context(), csiNode, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.StorageV1().CSINodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })

	tests := []struct {
		name string
		src  corev1.PersistentVolumeSource
		// want is the path with {uid} and {pv} to fill in.
		want string
	}{
		{"csi", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~csi/{pv}/mount"},
		{"local", corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/disks/a"}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~local-volume/{pv}"},
		{"hostpath", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/data/"}},
			"/srv/data"},
		{"nfs", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs.example", Path: "/export"}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~nfs/{pv}"},
		{"iscsi", corev1.PersistentVolumeSource{ISCSI: &corev1.ISCSIPersistentVolumeSource{TargetPortal: "10.0.0.1:3260", IQN: "iqn.2001-04.com.example:storage", Lun: 0}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~iscsi/{pv}"},
		{"cephfs", corev1.PersistentVolumeSource{CephFS: &corev1.CephFSPersistentVolumeSource{Monitors: []string{"10.0.0.1:6789"}}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~cephfs/{pv}"},
		// In-tree plugins that CSI migration replaced are mounted by the
		// CSI driver, under the CSI plugin's directory.
		{"aws-ebs-migrated", corev1.PersistentVolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-2"}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~csi/{pv}/mount"},
		{"rbd-migrated-on-node", corev1.PersistentVolumeSource{RBD: &corev1.RBDPersistentVolumeSource{CephMonitors: []string{"10.0.0.1:6789"}, RBDImage: "img"}},
			"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~csi/{pv}/mount"},
		{"flex", corev1.PersistentVolumeSource{FlexVolume: &corev1.FlexPersistentVolumeSource{Driver: "example.com/lvm"}},
			"/var/lib/kubelet/pods/{uid}/volumes/example.com~lvm/{pv}"},
	}
	var claims []SourceClaim
	var rendered []Claim
	want := map[string]Transfer{}
	for _, tt := range tests {
		pv := uniq(t, "pv-"+tt.name)
		createPV(t, src, pv, tt.src)
		createPVC(t, src, ns, tt.name, pv)
		pod := createPod(t, src, ns, "app-"+tt.name, node, tt.name, corev1.PodRunning)
		claims = append(claims, SourceClaim{Namespace: ns, Name: tt.name})
		rendered = append(rendered, Claim{Namespace: ns, Name: tt.name})
		path := strings.NewReplacer("{uid}", string(pod.UID), "{pv}", pv).Replace(tt.want)
		want[tt.name] = Transfer{
			Source: Claim{ns, tt.name}, Target: Claim{ns, tt.name}, Node: node,
			Agent: Endpoint{Host: "10.0.0.7", Port: 2222}, Path: path, Commit: "c1",
		}
	}

	plan, err := Plan(t.Context(), PlanInput{
		Config: testConfig(ns, ""), Commit: "c1", Claims: claims,
		Rendered: renderedPVCs(rendered...), Source: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Release(context.Background())
	if len(plan.Skipped) != 0 {
		t.Errorf("skipped: %+v", plan.Skipped)
	}
	got := map[string]Transfer{}
	for i, tr := range plan.Transfers {
		got[tr.Source.Name] = tr
		if i > 0 && plan.Transfers[i-1].Target.Name >= tr.Target.Name {
			t.Errorf("transfers not sorted: %s before %s", plan.Transfers[i-1].Target, tr.Target)
		}
	}
	if d := gocmp.Diff(want, got); d != "" {
		t.Errorf("transfers (-want +got):\n%s", d)
	}
}

func TestPlanRWXCopiedOnce(t *testing.T) {
	src := clusters.Source.Clientset()
	ns := clusters.Source.Namespace(t)
	nodeA, nodeB := uniq(t, "a"), uniq(t, "b")
	createNode(t, src, nodeA, internalIP("10.0.0.1"))
	createNode(t, src, nodeB, internalIP("10.0.0.2"))
	pv := uniq(t, "pv")
	createPV(t, src, pv, corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "nfs.csi.k8s.io", VolumeHandle: "h"}})
	createPVC(t, src, ns, "shared", pv, corev1.ReadWriteMany)
	// Pods on both nodes; the one on the first node by name, and the first
	// by name there, serves the copy.
	createPod(t, src, ns, "z-on-b", nodeB, "shared", corev1.PodRunning)
	createPod(t, src, ns, "y-on-a", nodeA, "shared", corev1.PodRunning)
	chosen := createPod(t, src, ns, "x-on-a", nodeA, "shared", corev1.PodRunning)
	createPod(t, src, ns, "a-pending-on-a", nodeA, "shared", corev1.PodPending)

	plan, err := Plan(t.Context(), PlanInput{
		Config: testConfig(ns, ""), Commit: "c1",
		Claims:   []SourceClaim{{Namespace: ns, Name: "shared"}},
		Rendered: renderedPVCs(Claim{ns, "shared"}), Source: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Transfers) != 1 || len(plan.Skipped) != 0 {
		t.Fatalf("want one transfer, got %+v, skipped %+v", plan.Transfers, plan.Skipped)
	}
	tr := plan.Transfers[0]
	if tr.Node != nodeA || !strings.Contains(tr.Path, string(chosen.UID)) {
		t.Errorf("transfer from %s %s, want node %s and Pod/%s (%s)", tr.Node, tr.Path, nodeA, chosen.Name, chosen.UID)
	}
}

func TestPlanSkipsAndFails(t *testing.T) {
	src := clusters.Source.Clientset()
	srcNS := clusters.Source.Namespace(t)
	dstNS := testcluster.NamespaceName(t) // only named: Plan reads the rendered state, not the target
	node, bare := uniq(t, "node"), uniq(t, "bare")
	createNode(t, src, node, internalIP("10.1.0.1"))
	createNode(t, src, bare, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "bare"})
	csi := func(h string) corev1.PersistentVolumeSource {
		return corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "d", VolumeHandle: h}}
	}
	for _, name := range []string{"mapped", "unmounted", "not-rendered", "no-address", "opted-out", "terminating", "gone-node", "block"} {
		var mode []corev1.PersistentVolumeMode
		if name == "block" { // a block volume is not copied
			mode = append(mode, corev1.PersistentVolumeBlock)
		}
		createPV(t, src, uniq(t, name), csi(name), mode...)
		createPVC(t, src, srcNS, name, uniq(t, name))
	}
	createPVC(t, src, srcNS, "unbound", "")
	createPod(t, src, srcNS, "app-mapped", node, "mapped", corev1.PodRunning)
	createPod(t, src, srcNS, "app-unbound", node, "unbound", corev1.PodRunning)
	createPod(t, src, srcNS, "app-not-rendered", node, "not-rendered", corev1.PodRunning)
	createPod(t, src, srcNS, "app-no-address", bare, "no-address", corev1.PodRunning)
	createPod(t, src, srcNS, "app-opted-out", node, "opted-out", corev1.PodRunning)
	createPod(t, src, srcNS, "app-gone-node", "no-such-node", "gone-node", corev1.PodRunning)
	createPod(t, src, srcNS, "app-unmounted", node, "unmounted", corev1.PodSucceeded)
	// A pod that is being deleted does not count.
	term := createPod(t, src, srcNS, "app-terminating", node, "terminating", corev1.PodRunning)
	term.Finalizers = []string{"example.com/hold"}
	if _, err := src.CoreV1().Pods(srcNS).Update(t.Context(), term, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := src.CoreV1().Pods(srcNS).Delete(t.Context(), term.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, src, srcNS, "app-block", node, "block", corev1.PodRunning)

	var claims []SourceClaim
	var rendered []Claim
	for _, name := range []string{"mapped", "unmounted", "not-rendered", "no-address", "opted-out", "terminating", "unbound", "gone-node", "block"} {
		sc := SourceClaim{Namespace: srcNS, Name: name}
		if name == "opted-out" {
			sc.Labels = map[string]string{policies.VolumeSyncLabel: "false"}
		}
		claims = append(claims, sc)
		if name != "not-rendered" {
			rendered = append(rendered, Claim{dstNS, name})
		}
	}
	// The source namespace's own name in the rendered state must not count.
	rendered = append(rendered, Claim{srcNS, "not-rendered"})
	plan, err := Plan(t.Context(), PlanInput{
		Config: testConfig(srcNS, dstNS), Commit: "c2", Claims: claims,
		Rendered: renderedPVCs(rendered...), Source: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantTransfers := []Transfer{{
		Source: Claim{srcNS, "mapped"}, Target: Claim{dstNS, "mapped"}, Node: node,
		Agent: Endpoint{Host: "10.1.0.1", Port: 2222}, Commit: "c2",
	}}
	for i := range plan.Transfers {
		plan.Transfers[i].Path = ""
	}
	if d := gocmp.Diff(wantTransfers, plan.Transfers); d != "" {
		t.Errorf("transfers (-want +got):\n%s", d)
	}
	type outcome struct {
		State  State
		Target Claim
		Reason string // a part of it
	}
	want := map[string]outcome{
		"block":        {StateSkipped, Claim{dstNS, "block"}, "block volume"},
		"gone-node":    {StateFailed, Claim{dstNS, "gone-node"}, "Node/no-such-node, which does not exist"},
		"no-address":   {StateFailed, Claim{dstNS, "no-address"}, "Node/" + bare + " has no InternalIP or ExternalIP address"},
		"not-rendered": {StateSkipped, Claim{dstNS, "not-rendered"}, "not in the rendered state"},
		"terminating":  {StateSkipped, Claim{dstNS, "terminating"}, "not mounted by a running pod"},
		"unbound":      {StateSkipped, Claim{dstNS, "unbound"}, "not bound"},
		"unmounted":    {StateSkipped, Claim{dstNS, "unmounted"}, "not mounted by a running pod"},
	}
	got := map[string]outcome{}
	for _, r := range plan.Skipped {
		got[r.Transfer.Source.Name] = outcome{r.State, r.Transfer.Target, r.Reason}
		if r.Transfer.Commit != "c2" {
			t.Errorf("%s: commit %q", r.Transfer.Source, r.Transfer.Commit)
		}
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if g.State != w.State || g.Target != w.Target || !strings.Contains(g.Reason, w.Reason) {
			t.Errorf("%s: got %s %s %q, want %s %s %q", name, g.State, g.Target, g.Reason, w.State, w.Target, w.Reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("results for %d claims, want %d (the opted-out claim has none): %+v", len(got), len(want), got)
	}
}

func TestAgentHost(t *testing.T) {
	tests := []struct {
		name    string
		addrs   []corev1.NodeAddress
		policy  policies.AgentAddress
		want    string
		wantErr string
	}{
		{"internal first", []corev1.NodeAddress{externalIP("203.0.113.1"), internalIP("10.0.0.1")}, policies.AgentAddressNodeIP, "10.0.0.1", ""},
		{"external fallback", []corev1.NodeAddress{externalIP("203.0.113.1")}, policies.AgentAddressNodeIP, "203.0.113.1", ""},
		{"external only", []corev1.NodeAddress{internalIP("10.0.0.1"), externalIP("203.0.113.1")}, policies.AgentAddressExternalIP, "203.0.113.1", ""},
		{"no external", []corev1.NodeAddress{internalIP("10.0.0.1")}, policies.AgentAddressExternalIP, "", "no ExternalIP address"},
		{"hostname only", []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}}, policies.AgentAddressNodeIP, "", "no InternalIP or ExternalIP address"},
		{"empty address", []corev1.NodeAddress{internalIP(""), externalIP("203.0.113.1")}, policies.AgentAddressNodeIP, "203.0.113.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: tt.addrs}}
			got, err := agentHost(node, tt.policy)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("agentHost = %q, %v; want %q, error with %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// waitForPod waits until a pod with the prefix is created in ns, and
// returns it.
func waitForPod(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, prefix string) *corev1.Pod {
	w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Error(err)
		return nil
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added && strings.HasPrefix(pod.Name, prefix) {
			return pod
		}
	}
	t.Errorf("no pod %s… created in %s", prefix, ns)
	return nil
}

func TestPlanMountsUnmountedClaims(t *testing.T) {
	src := clusters.Source.Clientset()
	ns := clusters.Source.Namespace(t)
	node := uniq(t, "node")
	createNode(t, src, node, internalIP("10.2.0.1"))
	pv := uniq(t, "pv")
	createPV(t, src, pv, corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "d", VolumeHandle: "h"}})
	createPVC(t, src, ns, "idle", pv)
	cfg := testConfig(ns, "")
	cfg.Spec.Volumes.Unmounted = policies.UnmountedMount

	// Play the scheduler and the kubelet: bind the mount pod, make it run.
	played := make(chan *corev1.Pod, 1)
	go func() {
		pod := waitForPod(t.Context(), t, src, ns, mountPrefix)
		if pod == nil {
			close(played)
			return
		}
		binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
		if err := src.CoreV1().Pods(ns).Bind(t.Context(), binding, metav1.CreateOptions{}); err != nil {
			t.Errorf("bind: %v", err)
		}
		pod, err := src.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Error(err)
		}
		pod.Status.Phase = corev1.PodRunning
		if pod, err = src.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
			t.Error(err)
		}
		played <- pod
	}()

	plan, err := Plan(t.Context(), PlanInput{
		Config: cfg, Commit: "c3", Claims: []SourceClaim{{Namespace: ns, Name: "idle"}},
		Rendered: renderedPVCs(Claim{ns, "idle"}), Source: src,
		MountImage: "registry.example/busybox:1", MountTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	pod := <-played
	if pod == nil {
		t.FailNow()
	}
	checkMountPod(t, pod, "idle", "registry.example/busybox:1")
	want := []Transfer{{
		Source: Claim{ns, "idle"}, Target: Claim{ns, "idle"}, Node: node, Commit: "c3",
		Agent: Endpoint{Host: "10.2.0.1", Port: 2222},
		Path:  "/var/lib/kubelet/pods/" + string(pod.UID) + "/volumes/kubernetes.io~csi/" + pv + "/mount",
	}}
	if d := gocmp.Diff(want, plan.Transfers); d != "" || len(plan.Skipped) != 0 {
		t.Errorf("transfers (-want +got):\n%s\nskipped: %+v", d, plan.Skipped)
	}

	// The pod stays until Release.
	if _, err := src.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("mount pod gone before Release: %v", err)
	}
	if err := plan.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkDeleted(t, src, ns, pod.Name)
}

// checkDeleted checks that the pod is gone or going (a pod bound to a node
// waits for its kubelet, which the test clusters do not have).
func checkDeleted(t *testing.T, c kubernetes.Interface, ns, name string) {
	t.Helper()
	pod, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err == nil && pod.DeletionTimestamp == nil {
		t.Errorf("Pod/%s/%s not deleted", ns, name)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
	}
}

func checkMountPod(t *testing.T, pod *corev1.Pod, claim, image string) {
	t.Helper()
	s := pod.Spec
	var problems []string
	check := func(ok bool, what string) {
		if !ok {
			problems = append(problems, what)
		}
	}
	check(pod.Labels[kubeLabelManagedBy] == "dr-syncer", "managed-by label")
	check(len(s.Volumes) == 1 && s.Volumes[0].PersistentVolumeClaim != nil &&
		s.Volumes[0].PersistentVolumeClaim.ClaimName == claim && s.Volumes[0].PersistentVolumeClaim.ReadOnly, "claim volume read-only")
	check(len(s.Containers) == 1, "one container")
	c := s.Containers[0]
	check(c.Image == image, "image")
	check(len(c.Command) == 2 && c.Command[0] == "sleep", "sleeps")
	check(len(c.VolumeMounts) == 1 && c.VolumeMounts[0].ReadOnly, "mount read-only")
	check(s.AutomountServiceAccountToken != nil && !*s.AutomountServiceAccountToken, "no service account token")
	check(s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds > 0, "activeDeadlineSeconds")
	for _, tol := range s.Tolerations { // the apiserver's DefaultTolerationSeconds adds two
		check(tol.Key == corev1.TaintNodeNotReady || tol.Key == corev1.TaintNodeUnreachable, "no tolerations")
	}
	check(s.SecurityContext != nil && s.SecurityContext.RunAsNonRoot != nil && *s.SecurityContext.RunAsNonRoot &&
		s.SecurityContext.RunAsUser != nil && *s.SecurityContext.RunAsUser != 0, "runs as non-root")
	sc := c.SecurityContext
	check(sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "no privilege escalation")
	check(sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "read-only root")
	check(sc != nil && sc.Capabilities != nil && fmt.Sprint(sc.Capabilities.Drop) == "[ALL]" && len(sc.Capabilities.Add) == 0, "all capabilities dropped")
	if len(problems) > 0 {
		t.Errorf("mount pod: wrong %s:\n%+v", strings.Join(problems, ", "), s)
	}
}

func TestPlanMountPodThatNeverRuns(t *testing.T) {
	src := clusters.Source.Clientset()
	ns := clusters.Source.Namespace(t)
	pv := uniq(t, "pv")
	createPV(t, src, pv, corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "d", VolumeHandle: "h"}})
	createPVC(t, src, ns, "stuck", pv)
	cfg := testConfig(ns, "")
	cfg.Spec.Volumes.Unmounted = policies.UnmountedMount

	start := time.Now()
	plan, err := Plan(t.Context(), PlanInput{
		Config: cfg, Commit: "c4", Claims: []SourceClaim{{Namespace: ns, Name: "stuck"}},
		Rendered: renderedPVCs(Claim{ns, "stuck"}), Source: src,
		MountImage: "busybox", MountTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Plan took %s with a 1 s mount timeout", took)
	}
	if len(plan.Transfers) != 0 || len(plan.Skipped) != 1 {
		t.Fatalf("transfers %+v, skipped %+v", plan.Transfers, plan.Skipped)
	}
	r := plan.Skipped[0]
	if r.State != StateFailed || !strings.Contains(r.Reason, "did not run") || !strings.Contains(r.Reason, "not scheduled") {
		t.Errorf("result %s %q, want Failed, did not run, not scheduled", r.State, r.Reason)
	}
	pods, err := src.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		checkDeleted(t, src, ns, p.Name)
	}
	if len(plan.mountPods) != 0 {
		t.Errorf("plan still holds mount pods %v", plan.mountPods)
	}
}
