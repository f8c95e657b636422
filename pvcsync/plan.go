package pvcsync

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dr-syncer/dr-syncer/policies"
)

// SourceClaim is a source PersistentVolumeClaim that a commit replicated.
type SourceClaim struct {
	Namespace string
	Name      string
	Labels    map[string]string
}

// PlanInput is what Plan needs.
type PlanInput struct {
	Config *policies.SyncConfig
	// Commit is the commit the copies run for.
	Commit string
	// Claims are the source claims the commit replicated.
	Claims []SourceClaim
	// Rendered are the target objects rendered from the commit; a claim is
	// copied into the PersistentVolumeClaim of the same name in its mapped
	// namespace, if the rendered state holds one.
	Rendered []*unstructured.Unstructured
	// Source is the source cluster.
	Source kubernetes.Interface
	// KubeletDir is the kubelet's root directory on the source nodes.
	// Default DefaultKubeletDir.
	KubeletDir string
	// MountImage runs the temporary pods that mount unmounted claims
	// (policy Mount); it needs a `sleep` binary.
	MountImage string
	// MountTimeout is how long a temporary mount pod may take to run.
	// Default 2 minutes.
	MountTimeout time.Duration
}

// TransferPlan is what a commit's PVC stage does: the copies to make, and
// the claims that get none.
type TransferPlan struct {
	// Transfers are sorted by target claim.
	Transfers []Transfer
	// Skipped are the claims that get no copy, each a Result whose State is
	// StateSkipped (nothing to do, on purpose: unbound, unmounted under the
	// skip policy, not in the rendered state) or StateFailed (the copy
	// cannot be planned: a node without an address, a mount pod that did
	// not run), with the Reason. Sorted by target, then source, claim.
	Skipped []Result

	source    kubernetes.Interface
	mountPods []mountPod
}

type mountPod struct{ namespace, name string }

// Plan finds, for each claim of the commit whose data is copied, the source
// node where its volume is mounted, the volume's directory there and the
// agent that serves it. A volume mounted on several nodes (ReadWriteMany)
// is copied once, from the first node by name.
//
// Under the Mount policy, Plan mounts unmounted claims with temporary pods
// on the source, which must stay until the copies end: call Release then.
func Plan(ctx context.Context, in PlanInput) (*TransferPlan, error) {
	p := &planner{
		in:       in,
		kubelet:  cmp.Or(in.KubeletDir, DefaultKubeletDir),
		plan:     &TransferPlan{source: in.Source},
		rendered: renderedClaims(in.Rendered),
		nsLabels: map[string]map[string]string{},
		pods:     map[string][]corev1.Pod{},
		nodes:    map[string]*corev1.Node{},
		migrated: map[string]map[string]bool{},
	}
	if err := p.run(ctx); err != nil {
		if rerr := p.plan.Release(context.WithoutCancel(ctx)); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	sortPlanned(p.plan.Transfers)
	slices.SortFunc(p.plan.Skipped, func(a, b Result) int { return comparePlanned(a.Transfer, b.Transfer) })
	return p.plan, nil
}

// Release deletes the temporary mount pods. It is safe to call more than
// once, and on a nil plan.
func (p *TransferPlan) Release(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var errs []error
	for _, mp := range p.mountPods {
		if err := deleteMountPod(ctx, p.source, mp); err != nil {
			errs = append(errs, err)
		}
	}
	p.mountPods = nil
	return errors.Join(errs...)
}

func deleteMountPod(ctx context.Context, c kubernetes.Interface, mp mountPod) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := c.CoreV1().Pods(mp.namespace).Delete(ctx, mp.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("Pod/%s/%s: delete mount pod: %w", mp.namespace, mp.name, err)
	}
	return nil
}

// planner holds what one Plan looked up, so that each namespace's pods and
// each node are read once.
type planner struct {
	in       PlanInput
	kubelet  string
	plan     *TransferPlan
	rendered map[Claim]bool
	nsLabels map[string]map[string]string
	pods     map[string][]corev1.Pod
	nodes    map[string]*corev1.Node
	migrated map[string]map[string]bool // node → in-tree plugins served by CSI
}

// pending is a claim waiting for its temporary mount pod.
type pending struct {
	t   Transfer
	pv  *corev1.PersistentVolume
	pod string
}

func (p *planner) run(ctx context.Context) error {
	var waiting []pending
	for _, sc := range p.in.Claims {
		if !p.in.Config.CopiesData(sc.Labels) {
			continue
		}
		t, pv, skip, err := p.claim(ctx, sc)
		if err != nil {
			return err
		}
		if skip != nil {
			p.plan.Skipped = append(p.plan.Skipped, *skip)
			continue
		}
		pod := choosePod(p.pods[sc.Namespace], sc.Name)
		if pod != nil {
			if err := p.add(ctx, t, pv, pod); err != nil {
				return err
			}
			continue
		}
		if p.in.Config.UnmountedPolicy() != policies.UnmountedMount {
			p.skip(t, StateSkipped, "not mounted by a running pod")
			continue
		}
		name, err := p.createMountPod(ctx, t.Source)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			p.skip(t, StateFailed, err.Error())
			continue
		}
		waiting = append(waiting, pending{t: t, pv: pv, pod: name})
	}
	return p.waitMountPods(ctx, waiting)
}

// claim resolves one source claim to its target claim and volume. skip is
// set when the claim gets no copy.
func (p *planner) claim(ctx context.Context, sc SourceClaim) (t Transfer, pv *corev1.PersistentVolume, skip *Result, err error) {
	t = Transfer{Source: Claim{Namespace: sc.Namespace, Name: sc.Name}, Commit: p.in.Commit}
	skipped := func(state State, reason string) (Transfer, *corev1.PersistentVolume, *Result, error) {
		return t, nil, &Result{Transfer: t, State: state, Reason: reason}, nil
	}
	labels, err := p.namespaceLabels(ctx, sc.Namespace)
	if err != nil {
		return t, nil, nil, err
	}
	targetNS, ok := p.in.Config.TargetNamespace(sc.Namespace, labels)
	if !ok {
		return skipped(StateSkipped, "namespace "+sc.Namespace+" is not replicated")
	}
	t.Target = Claim{Namespace: targetNS, Name: sc.Name}
	if !p.rendered[t.Target] {
		return skipped(StateSkipped, fmt.Sprintf("PersistentVolumeClaim/%s is not in the rendered state of the commit", t.Target))
	}

	pvcs := p.in.Source.CoreV1().PersistentVolumeClaims(sc.Namespace)
	pvc, err := pvcs.Get(ctx, sc.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return skipped(StateSkipped, "no longer in the source")
	}
	if err != nil {
		return t, nil, nil, fmt.Errorf("PersistentVolumeClaim/%s: %w", t.Source, err)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
		return skipped(StateSkipped, "not bound")
	}
	pv, err = p.in.Source.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return skipped(StateFailed, fmt.Sprintf("its PersistentVolume/%s does not exist", pvc.Spec.VolumeName))
	}
	if err != nil {
		return t, nil, nil, fmt.Errorf("PersistentVolumeClaim/%s: PersistentVolume/%s: %w", t.Source, pvc.Spec.VolumeName, err)
	}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return skipped(StateSkipped, "a block volume: only filesystem volumes are copied")
	}
	if _, err := pluginDir(pv, nil); err != nil {
		return skipped(StateSkipped, err.Error())
	}
	if _, err := p.namespacePods(ctx, sc.Namespace); err != nil {
		return t, nil, nil, err
	}
	return t, pv, nil, nil
}

func (p *planner) skip(t Transfer, state State, reason string) {
	p.plan.Skipped = append(p.plan.Skipped, Result{Transfer: t, State: state, Reason: reason})
}

// add plans the copy of pv, mounted by pod, or fails the claim when the
// node's agent cannot be reached.
func (p *planner) add(ctx context.Context, t Transfer, pv *corev1.PersistentVolume, pod *corev1.Pod) error {
	node, err := p.node(ctx, pod.Spec.NodeName)
	if err != nil {
		return err
	}
	if node == nil {
		p.skip(t, StateFailed, fmt.Sprintf("mounted on Node/%s, which does not exist", pod.Spec.NodeName))
		return nil
	}
	host, err := agentHost(node, p.in.Config.AgentAddress())
	if err != nil {
		p.skip(t, StateFailed, err.Error())
		return nil
	}
	migrated, err := p.migratedPlugins(ctx, node.Name)
	if err != nil {
		return err
	}
	dir, err := volumeDir(p.kubelet, pod, pv, migrated)
	if err != nil { // checked in claim already
		p.skip(t, StateSkipped, err.Error())
		return nil
	}
	t.Node = node.Name
	t.Agent = Endpoint{Host: host, Port: p.in.Config.AgentPort()}
	t.Path = dir
	p.plan.Transfers = append(p.plan.Transfers, t)
	return nil
}

func (p *planner) namespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	if l, ok := p.nsLabels[name]; ok {
		return l, nil
	}
	ns, err := p.in.Source.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		p.nsLabels[name] = nil
	case err != nil:
		return nil, fmt.Errorf("Namespace/%s: %w", name, err)
	default:
		p.nsLabels[name] = ns.Labels
	}
	return p.nsLabels[name], nil
}

func (p *planner) namespacePods(ctx context.Context, ns string) ([]corev1.Pod, error) {
	if pods, ok := p.pods[ns]; ok {
		return pods, nil
	}
	list, err := p.in.Source.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Pods in %s: %w", ns, err)
	}
	p.pods[ns] = list.Items
	return list.Items, nil
}

// node returns the node, or nil when it does not exist.
func (p *planner) node(ctx context.Context, name string) (*corev1.Node, error) {
	if n, ok := p.nodes[name]; ok {
		return n, nil
	}
	n, err := p.in.Source.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("Node/%s: %w", name, err)
	}
	p.nodes[name] = n
	return n, nil
}

// migratedPlugins reads which in-tree plugins the node's kubelet hands to
// CSI drivers, from its CSINode; nil when the node has no CSINode.
func (p *planner) migratedPlugins(ctx context.Context, node string) (map[string]bool, error) {
	if m, ok := p.migrated[node]; ok {
		return m, nil
	}
	csiNode, err := p.in.Source.StorageV1().CSINodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		p.migrated[node] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("CSINode/%s: %w", node, err)
	}
	m := map[string]bool{}
	for name := range strings.SplitSeq(csiNode.Annotations[corev1.MigratedPluginsAnnotationKey], ",") {
		if name = strings.TrimSpace(name); name != "" {
			m[name] = true
		}
	}
	p.migrated[node] = m
	return m, nil
}

// choosePod returns the running pod that mounts the claim on the first node
// by name (then the first pod by name), or nil.
func choosePod(pods []corev1.Pod, claim string) *corev1.Pod {
	var best *corev1.Pod
	for i := range pods {
		pod := &pods[i]
		if pod.Status.Phase != corev1.PodRunning || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil || !mountsClaim(pod, claim) {
			continue
		}
		if best == nil || pod.Spec.NodeName < best.Spec.NodeName ||
			pod.Spec.NodeName == best.Spec.NodeName && pod.Name < best.Name {
			best = pod
		}
	}
	return best
}

// mountsClaim reports whether the pod uses the claim, directly or as a
// generic ephemeral volume (whose claim is named <pod>-<volume>).
func mountsClaim(pod *corev1.Pod, claim string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim ||
			v.Ephemeral != nil && pod.Name+"-"+v.Name == claim {
			return true
		}
	}
	return false
}

// agentHost is the node's address the target dials: InternalIP (else
// ExternalIP) for NodeIP, ExternalIP only for ExternalIP.
func agentHost(node *corev1.Node, which policies.AgentAddress) (string, error) {
	want := []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP}
	if which == policies.AgentAddressExternalIP {
		want = want[1:]
	}
	for _, typ := range want {
		for _, a := range node.Status.Addresses {
			if a.Type == typ && a.Address != "" {
				return a.Address, nil
			}
		}
	}
	names := make([]string, len(want))
	for i, typ := range want {
		names[i] = string(typ)
	}
	return "", fmt.Errorf("Node/%s has no %s address to reach its agent (spec.volumes.agent.address is %s)", node.Name, strings.Join(names, " or "), which)
}

// csiPlugin is the kubelet's CSI plugin; its pod volume directories hold a
// "mount" subdirectory that is the mount point.
const csiPlugin = "kubernetes.io/csi"

// inTreePlugins are the in-tree volume plugins of PersistentVolumes, by the
// names the kubelet gives them (pkg/volume/*: GetPluginName). The kubelet
// mounts a pod's volume at <kubelet>/pods/<uid>/volumes/<plugin, with "/"
// escaped as "~">/<pv name>.
var inTreePlugins = []struct {
	name string
	has  func(*corev1.PersistentVolumeSource) bool
	// migrated: the in-tree code is gone (CSI migration is GA and the
	// plugin was removed from the kubelet), so the volume is always the CSI
	// driver's, whatever the node's CSINode says.
	migrated bool
}{
	{"kubernetes.io/aws-ebs", func(s *corev1.PersistentVolumeSource) bool { return s.AWSElasticBlockStore != nil }, true},
	{"kubernetes.io/gce-pd", func(s *corev1.PersistentVolumeSource) bool { return s.GCEPersistentDisk != nil }, true},
	{"kubernetes.io/azure-disk", func(s *corev1.PersistentVolumeSource) bool { return s.AzureDisk != nil }, true},
	{"kubernetes.io/azure-file", func(s *corev1.PersistentVolumeSource) bool { return s.AzureFile != nil }, true},
	{"kubernetes.io/cinder", func(s *corev1.PersistentVolumeSource) bool { return s.Cinder != nil }, true},
	{"kubernetes.io/vsphere-volume", func(s *corev1.PersistentVolumeSource) bool { return s.VsphereVolume != nil }, true},
	{"kubernetes.io/portworx-volume", func(s *corev1.PersistentVolumeSource) bool { return s.PortworxVolume != nil }, true},
	{"kubernetes.io/nfs", func(s *corev1.PersistentVolumeSource) bool { return s.NFS != nil }, false},
	{"kubernetes.io/iscsi", func(s *corev1.PersistentVolumeSource) bool { return s.ISCSI != nil }, false},
	{"kubernetes.io/fc", func(s *corev1.PersistentVolumeSource) bool { return s.FC != nil }, false},
	{"kubernetes.io/rbd", func(s *corev1.PersistentVolumeSource) bool { return s.RBD != nil }, false},
	{"kubernetes.io/cephfs", func(s *corev1.PersistentVolumeSource) bool { return s.CephFS != nil }, false},
	{"kubernetes.io/glusterfs", func(s *corev1.PersistentVolumeSource) bool { return s.Glusterfs != nil }, false},
}

// pluginDir returns the kubelet's directory name for pv's plugin and
// whether it is CSI's (then the mount point is a "mount" subdirectory);
// "" for a hostPath volume, which the kubelet does not mount. migrated
// lists the in-tree plugins that the node hands to CSI drivers.
func pluginDir(pv *corev1.PersistentVolume, migrated map[string]bool) (string, error) {
	s := &pv.Spec.PersistentVolumeSource
	switch {
	case s.CSI != nil:
		return csiPlugin, nil
	case s.HostPath != nil:
		return "", nil
	case s.Local != nil:
		return "kubernetes.io/local-volume", nil
	case s.FlexVolume != nil:
		return s.FlexVolume.Driver, nil
	}
	for _, pl := range inTreePlugins {
		if pl.has(s) {
			if pl.migrated || migrated[pl.name] {
				return csiPlugin, nil
			}
			return pl.name, nil
		}
	}
	return "", errors.New("volume type not supported for copies")
}

// volumeDir is the directory of pv's data on the node where pod runs.
func volumeDir(kubelet string, pod *corev1.Pod, pv *corev1.PersistentVolume, migrated map[string]bool) (string, error) {
	plugin, err := pluginDir(pv, migrated)
	if err != nil {
		return "", err
	}
	if plugin == "" {
		return path.Clean(pv.Spec.HostPath.Path), nil
	}
	dir := path.Join(kubelet, "pods", string(pod.UID), "volumes", strings.ReplaceAll(plugin, "/", "~"), pv.Name)
	if plugin == csiPlugin {
		dir = path.Join(dir, "mount")
	}
	return dir, nil
}

// renderedClaims are the PersistentVolumeClaims of the rendered state.
func renderedClaims(objs []*unstructured.Unstructured) map[Claim]bool {
	claims := map[Claim]bool{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Group == "" && gvk.Kind == "PersistentVolumeClaim" {
			claims[Claim{Namespace: o.GetNamespace(), Name: o.GetName()}] = true
		}
	}
	return claims
}

// The temporary mount pods.
const (
	kubeLabelManagedBy = "app.kubernetes.io/managed-by"
	kubeManagedBy      = "dr-syncer"
	labelMountFor      = "dr-syncer.io/mount"
	annotationPVC      = "dr-syncer.io/claim"
	mountPrefix        = "dr-syncer-mount-"
	// mountPodDeadline bounds a mount pod's life should Release never run
	// (a crashed controller): the pod sleeps that long and the kubelet ends
	// it then.
	mountPodDeadline = 24 * time.Hour
	// defaultMountTimeout is how long a mount pod may take to run.
	defaultMountTimeout = 2 * time.Minute
	mountUID            = 65534 // nobody
)

// objectHash names objects after what they are for, so that a run finds
// what a crashed run left behind.
func objectHash(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:5])
}

func mountPodSpec(c Claim, image string) *corev1.Pod {
	hash := objectHash("mount", c.Namespace, c.Name)
	deadline := int64(mountPodDeadline / time.Second)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        mountPrefix + hash,
			Namespace:   c.Namespace,
			Labels:      map[string]string{kubeLabelManagedBy: kubeManagedBy, labelMountFor: hash},
			Annotations: map[string]string{annotationPVC: c.Name},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: new(int64(1)), // sleep as PID 1 ignores SIGTERM
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				RunAsUser:      new(int64(mountUID)),
				RunAsGroup:     new(int64(mountUID)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: []corev1.Volume{{
				Name: "data",
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
					ClaimName: c.Name, ReadOnly: true,
				}},
			}},
			Containers: []corev1.Container{{
				Name:    "mount",
				Image:   image,
				Command: []string{"sleep", strconv.FormatInt(deadline, 10)},
				VolumeMounts: []corev1.VolumeMount{{
					Name: "data", MountPath: "/data", ReadOnly: true,
				}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("1m"),
						corev1.ResourceMemory: resource.MustParse("8Mi"),
					},
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false),
					ReadOnlyRootFilesystem:   new(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// createMountPod creates the temporary pod that mounts the claim, or finds
// the one a previous run left.
func (p *planner) createMountPod(ctx context.Context, c Claim) (string, error) {
	pod := mountPodSpec(c, p.in.MountImage)
	pods := p.in.Source.CoreV1().Pods(c.Namespace)
	_, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Left by a run that ended before its Release: use it while it
		// lives, else replace it.
		old, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr == nil && old.Labels[kubeLabelManagedBy] == kubeManagedBy && old.DeletionTimestamp == nil &&
			(old.Status.Phase == corev1.PodPending || old.Status.Phase == corev1.PodRunning) && mountsClaim(old, c.Name) {
			err = nil
		} else if gerr == nil && old.Labels[kubeLabelManagedBy] == kubeManagedBy {
			// Ended, or ending: it cannot serve this run.
			if err = deleteMountPod(ctx, p.in.Source, mountPod{c.Namespace, pod.Name}); err == nil {
				_, err = pods.Create(ctx, pod, metav1.CreateOptions{})
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("create mount Pod/%s/%s: %w", c.Namespace, pod.Name, err)
	}
	p.plan.mountPods = append(p.plan.mountPods, mountPod{c.Namespace, pod.Name})
	return pod.Name, nil
}

// waitMountPods waits, up to MountTimeout for all of them together, until
// each mount pod runs, then plans its claim's copy through it. A pod that
// does not run fails its claim and is deleted.
func (p *planner) waitMountPods(ctx context.Context, waiting []pending) error {
	if len(waiting) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(p.in.MountTimeout, defaultMountTimeout))
	defer cancel()
	ran := make([]*corev1.Pod, len(waiting))
	why := make([]string, len(waiting))
	var wg sync.WaitGroup
	for i, w := range waiting {
		wg.Go(func() { ran[i], why[i] = waitMountPod(ctx, p.in.Source, w.t.Source.Namespace, w.pod) })
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err // the caller's context: cancelled
	}
	parent := context.WithoutCancel(ctx)
	for i, w := range waiting {
		if ran[i] != nil {
			if err := p.add(parent, w.t, w.pv, ran[i]); err != nil {
				return err
			}
			continue
		}
		p.skip(w.t, StateFailed, fmt.Sprintf("mount Pod/%s/%s did not run: %s", w.t.Source.Namespace, w.pod, why[i]))
		mp := mountPod{w.t.Source.Namespace, w.pod}
		if err := deleteMountPod(parent, p.in.Source, mp); err != nil {
			return err
		}
		p.plan.mountPods = slices.DeleteFunc(p.plan.mountPods, func(o mountPod) bool { return o == mp })
	}
	return nil
}

// waitMountPod watches the pod until it runs on a node (it returns it), it
// ends, or ctx is done (it returns why it did not run).
func waitMountPod(ctx context.Context, c kubernetes.Interface, ns, name string) (*corev1.Pod, string) {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := podListWatch(c, ns, func(o *metav1.ListOptions) { o.FieldSelector = sel })
	var ran *corev1.Pod
	why := "not seen"
	err := watchUntil(ctx, 0, func(stores []cache.Store) (bool, error) {
		obj, ok, _ := stores[0].GetByKey(ns + "/" + name)
		if !ok {
			why = "deleted"
			return false, nil
		}
		pod := obj.(*corev1.Pod)
		why = podStatusReason(pod)
		switch {
		case pod.Status.Phase == corev1.PodRunning && pod.Spec.NodeName != "" && pod.DeletionTimestamp == nil:
			ran = pod
			return true, nil
		case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
			return true, nil
		}
		return false, nil
	}, watchSource{lw, &corev1.Pod{}})
	if err != nil && ran == nil {
		why += " (" + err.Error() + ")"
	}
	return ran, why
}

// podStatusReason says in a few words where a pod is: its phase, and the
// reason the scheduler or the kubelet gave.
func podStatusReason(pod *corev1.Pod) string {
	parts := []string{"phase " + cmp.Or(string(pod.Status.Phase), "unknown")}
	if pod.Status.Reason != "" {
		parts = append(parts, pod.Status.Reason)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			parts = append(parts, strings.TrimSpace(c.Reason+" "+c.Message))
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			parts = append(parts, strings.TrimSpace(w.Reason+" "+w.Message))
		}
	}
	if pod.Spec.NodeName == "" {
		parts = append(parts, "not scheduled")
	}
	return strings.Join(parts, ", ")
}

func sortPlanned(ts []Transfer) { slices.SortFunc(ts, comparePlanned) }

func comparePlanned(a, b Transfer) int {
	return cmp.Or(
		cmp.Compare(a.Target.Namespace, b.Target.Namespace),
		cmp.Compare(a.Target.Name, b.Target.Name),
		cmp.Compare(a.Source.Namespace, b.Source.Namespace),
		cmp.Compare(a.Source.Name, b.Source.Name),
	)
}
