package pvcsync

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// KubeRunner runs each copy as a Job in the target cluster: its pod mounts
// the target claim and runs `dr-syncer agent pull` against the source
// node's agent, with the run's credentials from a Secret, and reports
// rsync's result as its termination message (a PullReport).
//
// The Job and its Secret are named after the target claim
// (dr-syncer-pull-<hash>), so at most one copy into a claim runs at a time;
// a Job or Secret left by a run that crashed is removed, and that attempt
// fails (the Stage retries it).
type KubeRunner struct {
	// Client is the target cluster.
	Client kubernetes.Interface
	// Image holds the dr-syncer binary, rsync and the OpenSSH client.
	Image string
	// InPlace and Sparse add --inplace and --sparse to the pull.
	InPlace, Sparse bool
	// Timeout bounds one copy: the Job's activeDeadlineSeconds. Default 6
	// hours.
	Timeout time.Duration
	// PollInterval is how often a pod that waits (an image that does not
	// pull, a volume that does not mount) is looked at again, between the
	// changes that the watch delivers. Default 5 s.
	PollInterval time.Duration
	Logger       *slog.Logger

	// startGrace is how long the pod may wait in a state that does not fix
	// itself (ImagePullBackOff, CreateContainerConfigError, …) before the
	// copy fails. Default 2 minutes.
	startGrace time.Duration
}

var _ Runner = (*KubeRunner)(nil)

const (
	pullPrefix           = "dr-syncer-pull-"
	labelTransfer        = "dr-syncer.io/transfer"
	annotationCommit     = "dr-syncer.io/commit"
	annotationSource     = "dr-syncer.io/source"
	defaultPullTimeout   = 6 * time.Hour
	defaultPollInterval  = 5 * time.Second
	defaultStartGrace    = 2 * time.Minute
	pullTTLAfterFinished = 10 * time.Minute
	// The pod's paths.
	pullDataDir  = "/data"
	pullKeysDir  = "/etc/dr-syncer/ssh"
	pullTmpDir   = "/tmp"
	pullerName   = "pull"
	cleanupLimit = 30 * time.Second
)

// The labels of the Job controller on the pods of a Job: the first since
// Kubernetes 1.27, the second before (and still).
var jobNameLabels = []string{"batch.kubernetes.io/job-name", "job-name"}
var jobUIDLabels = []string{"batch.kubernetes.io/controller-uid", "controller-uid"}

// Run copies t into the target claim with one Job, waits for its pod to
// end and returns the figures of its report. With a progress function, it
// follows the running pod's log for the progress lines of `dr-syncer agent
// pull` (best effort: without the right to read pods/log there are none
// until the end); without one, it reads no log. Whatever happens, the Job, its
// pods and the Secret are deleted before Run returns.
func (r *KubeRunner) Run(ctx context.Context, t Transfer, creds Credentials, progress func(Progress)) (Stats, error) {
	hash := objectHash("pull", t.Target.Namespace, t.Target.Name)
	ns, name := t.Target.Namespace, pullPrefix+hash
	jobRef := "Job/" + ns + "/" + name
	log := cmp.Or(r.Logger, slog.New(slog.DiscardHandler)).With("job", ns+"/"+name, "pvc", t.Target.String(), "commit", t.Commit)
	timeout := cmp.Or(r.Timeout, defaultPullTimeout)
	// The Job's deadline needs a job controller; this one does not.
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	defer r.cleanup(ctx, ns, name, log)

	pvc, err := r.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, t.Target.Name, metav1.GetOptions{})
	if err != nil {
		return Stats{}, fmt.Errorf("PersistentVolumeClaim/%s: %w", t.Target, err)
	}
	node, err := r.pinnedNode(ctx, pvc)
	if err != nil {
		return Stats{}, err
	}
	secrets := r.Client.CoreV1().Secrets(ns)
	secret := pullSecret(ns, name, hash, creds)
	if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return Stats{}, leftover("Secret/"+ns+"/"+name, err)
	}
	job := r.pullJob(t, name, hash, timeout, node)
	job, err = r.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		return Stats{}, leftover(jobRef, err)
	}
	log.Info("pull Job created", "node", cmp.Or(node, "(any)"), "agent", t.Agent.String(), "path", t.Path)
	if err := r.ownSecret(ctx, job); err != nil {
		// Only the garbage collector's safety net is lost: Run deletes the
		// Secret itself.
		log.Warn("Secret not owned by its Job", "error", err)
	}

	f := &follower{progress: progress, log: log, open: r.podLog(ns)}
	rep, err := r.wait(ctx, job, creds, f)
	f.stop()
	if err != nil {
		return Stats{}, fmt.Errorf("%s: %w", jobRef, err)
	}
	if progress != nil {
		progress(Progress{Bytes: rep.Stats.TransferredSize, Percent: 100, Total: rep.Stats.Files})
	}
	return rep.Stats, nil
}

// podLog opens the log of the pull container of a pod, followed as it is
// written.
func (r *KubeRunner) podLog(ns string) func(ctx context.Context, pod string) (io.ReadCloser, error) {
	return func(ctx context.Context, pod string) (io.ReadCloser, error) {
		return r.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: pullerName, Follow: true}).Stream(ctx)
	}
}

// follower reads the progress lines of the pull pods' logs while Run
// waits: one reader per running pod, all stopped before Run returns, so
// that progress is never called after it.
type follower struct {
	progress func(Progress)
	log      *slog.Logger
	open     func(ctx context.Context, pod string) (io.ReadCloser, error)

	mu       sync.Mutex
	followed map[types.UID]bool
	cancels  []context.CancelFunc
	stopped  bool
	wg       sync.WaitGroup
	// serial: progress is called by one reader at a time.
	serial sync.Mutex
}

// pod starts following the log of pod once it runs.
func (f *follower) pod(ctx context.Context, pod *corev1.Pod) {
	if f == nil || f.progress == nil || pod.Status.Phase != corev1.PodRunning {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.followed[pod.UID] {
		return
	}
	if f.followed == nil {
		f.followed = map[types.UID]bool{}
	}
	f.followed[pod.UID] = true
	ctx, cancel := context.WithCancel(ctx)
	f.cancels = append(f.cancels, cancel)
	name := pod.Name
	f.wg.Go(func() {
		err := followProgress(ctx, func(ctx context.Context) (io.ReadCloser, error) { return f.open(ctx, name) }, func(p Progress) {
			f.serial.Lock()
			defer f.serial.Unlock()
			f.progress(p)
		})
		if err != nil {
			// The outcome does not depend on it: it comes from the pod's
			// termination message.
			f.log.Debug("no progress from the pull pod's log", "pod", name, "error", err)
		}
	})
}

// stop ends every reader and waits for them.
func (f *follower) stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.stopped = true
	for _, cancel := range f.cancels {
		cancel()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// leftover turns AlreadyExists into an error that says what happened: the
// object of a run that did not clean up, which Run's cleanup now removes.
func leftover(ref string, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%s: left by an earlier run that did not end cleanly; removed, the next attempt can run: %w", ref, err)
	}
	return fmt.Errorf("%s: create: %w", ref, err)
}

// pinnedNode is the node where a running target pod mounts the claim, if
// the claim cannot be mounted on two nodes at once; "" when the copy may run
// anywhere.
func (r *KubeRunner) pinnedNode(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (string, error) {
	pods, err := r.Client.CoreV1().Pods(pvc.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list Pods in %s: %w", pvc.Namespace, err)
	}
	user := choosePod(pods.Items, pvc.Name)
	if user == nil {
		return "", nil
	}
	modes := pvc.Spec.AccessModes
	if slices.Contains(modes, corev1.ReadWriteOncePod) {
		return "", fmt.Errorf("PersistentVolumeClaim/%s/%s is ReadWriteOncePod and Pod/%s uses it: the copy cannot mount it", pvc.Namespace, pvc.Name, user.Name)
	}
	if slices.Contains(modes, corev1.ReadWriteMany) {
		return "", nil
	}
	return user.Spec.NodeName, nil
}

func pullSecret(ns, name, hash string, creds Credentials) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels: map[string]string{kubeLabelManagedBy: kubeManagedBy, labelTransfer: hash},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			KeyFile:         creds.PrivateKey,
			CertificateFile: creds.Certificate,
			KnownHostsFile:  creds.KnownHosts,
		},
	}
}

// pullCapabilities are the only capabilities of the pull container. It
// runs as root so that rsync, as the receiver of -aHAX --numeric-ids, can
// give every file its source owner; but root without capabilities is an
// ordinary user, so it gets back exactly what that needs:
//
//   - CHOWN: set the files' numeric owner and group (-o -g in -a);
//   - DAC_OVERRIDE: write into, and delete from, directories whose modes
//     would not let root's uid in (any source directory not owned by 0);
//   - FOWNER: set modes, times, ACLs (-A) and xattrs (-X) on files that,
//     once chowned, belong to someone else;
//   - FSETID: keep setgid bits on files whose group the process is not in
//     (the kernel clears them silently otherwise);
//   - SETFCAP: write security.capability xattrs (file capabilities), which
//     -X copies; harmless here, as allowPrivilegeEscalation is false.
//
// Not granted: MKNOD (device files of a volume fail the copy with code 23
// rather than appear on the target), SYS_ADMIN (trusted.* xattrs), SETUID,
// SETGID and everything else. No fsGroup either: the kubelet would
// re-own the whole target volume.
var pullCapabilities = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP"}

// pullCommand is the pull container's command line.
func (r *KubeRunner) pullCommand(t Transfer) []string {
	cmd := []string{
		"dr-syncer", "agent", "pull",
		"--agent", t.Agent.String(),
		"--path", t.Path,
		"--dest", pullDataDir,
		"--keys", pullKeysDir,
	}
	if r.InPlace {
		cmd = append(cmd, "--inplace")
	}
	if r.Sparse {
		cmd = append(cmd, "--sparse")
	}
	return cmd
}

func (r *KubeRunner) pullJob(t Transfer, name, hash string, timeout time.Duration, node string) *batchv1.Job {
	labels := map[string]string{kubeLabelManagedBy: kubeManagedBy, labelTransfer: hash}
	var affinity *corev1.Affinity
	if node != "" {
		// Required node affinity on the node's name rather than nodeName:
		// the pod still goes through the scheduler, which checks resources,
		// taints and volume limits and leaves it Pending with a reason when
		// it cannot fit, where nodeName would bypass all that and fail at
		// the kubelet. matchFields, not the hostname label, which may
		// differ from the node's name.
		affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchFields: []corev1.NodeSelectorRequirement{{
						Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
					}},
				}},
			},
		}}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: t.Target.Namespace, Labels: labels,
			Annotations: map[string]string{annotationCommit: t.Commit, annotationSource: t.Source.String()},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            new(int32(0)), // retries are the Stage's, with fresh credentials
			ActiveDeadlineSeconds:   new(int64(timeout / time.Second)),
			TTLSecondsAfterFinished: new(int32(pullTTLAfterFinished / time.Second)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  new(false),
					EnableServiceLinks:            new(false),
					TerminationGracePeriodSeconds: new(int64(15)), // the pull stops rsync and writes its report
					Affinity:                      affinity,
					SecurityContext: &corev1.PodSecurityContext{
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Volumes: []corev1.Volume{
						{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: t.Target.Name}}},
						{Name: "ssh", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name, DefaultMode: new(int32(0o400))}}},
						// ssh and rsync may want a scratch file; the root
						// filesystem is read-only (rsync's own temporary
						// files go to the destination directory).
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("64Mi"))}}},
					},
					Containers: []corev1.Container{{
						Name:                     pullerName,
						Image:                    r.Image,
						Command:                  r.pullCommand(t),
						Env:                      []corev1.EnvVar{{Name: "HOME", Value: pullTmpDir}},
						TerminationMessagePath:   corev1.TerminationMessagePathDefault,
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
						VolumeMounts: []corev1.VolumeMount{
							{Name: "data", MountPath: pullDataDir},
							{Name: "ssh", MountPath: pullKeysDir, ReadOnly: true},
							{Name: "tmp", MountPath: pullTmpDir},
						},
						// Requests only: rsync's memory grows with the number
						// of files, and a limit would kill large copies.
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:    resource.MustParse("100m"),
							corev1.ResourceMemory: resource.MustParse("128Mi"),
						}},
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                new(int64(0)),
							RunAsGroup:               new(int64(0)),
							RunAsNonRoot:             new(false),
							AllowPrivilegeEscalation: new(false),
							ReadOnlyRootFilesystem:   new(true),
							Capabilities: &corev1.Capabilities{
								Drop: []corev1.Capability{"ALL"},
								Add:  pullCapabilities,
							},
						},
					}},
				},
			},
		},
	}
}

// ownSecret makes the Job the Secret's owner, so that deleting the Job (by
// its TTL, or by hand) takes the Secret with it.
func (r *KubeRunner) ownSecret(ctx context.Context, job *batchv1.Job) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"ownerReferences": []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
		}},
	}})
	if err != nil {
		return err
	}
	_, err = r.Client.CoreV1().Secrets(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// cleanup deletes the Job, its pods and the Secret, with a context of its
// own: it runs after failures and cancellations too. A failure is logged:
// the copy's outcome does not change with it.
func (r *KubeRunner) cleanup(ctx context.Context, ns, name string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupLimit)
	defer cancel()
	var errs []error
	background := metav1.DeletePropagationBackground
	if err := r.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete Job/%s/%s: %w", ns, name, err))
	}
	// The garbage collector deletes the pods too, in its own time: a pod
	// still pulling should stop now.
	for _, label := range jobNameLabels {
		pods, err := r.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: label + "=" + name})
		if err != nil {
			errs = append(errs, fmt.Errorf("list the pods of Job/%s/%s: %w", ns, name, err))
			continue
		}
		for _, pod := range pods.Items {
			if err := r.Client.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete Pod/%s/%s: %w", ns, pod.Name, err))
			}
		}
	}
	if err := r.Client.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete Secret/%s/%s: %w", ns, name, err))
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("pull Job not cleaned up", "error", err)
	}
}

// wait watches the Job and its pods until the pod ends (it returns the
// pod's report), or the copy fails otherwise.
func (r *KubeRunner) wait(ctx context.Context, job *batchv1.Job, creds Credentials, f *follower) (*PullReport, error) {
	ns := job.Namespace
	pods := podListWatch(r.Client, ns, nil)
	jobs := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", job.Name).String()
			return r.Client.BatchV1().Jobs(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", job.Name).String()
			return r.Client.BatchV1().Jobs(ns).Watch(ctx, o)
		},
	}
	w := &jobWait{job: job, creds: creds, grace: cmp.Or(r.startGrace, defaultStartGrace), stuckSince: map[types.UID]time.Time{}, follow: f}
	var rep *PullReport
	err := watchUntil(ctx, cmp.Or(r.PollInterval, defaultPollInterval), func(stores []cache.Store) (bool, error) {
		var done bool
		var err error
		rep, done, err = w.check(ctx, r.Client, stores[0], stores[1])
		return done, err
	}, watchSource{pods, &corev1.Pod{}}, watchSource{jobs, &batchv1.Job{}})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// jobWait is the state of one wait.
type jobWait struct {
	job        *batchv1.Job
	creds      Credentials
	grace      time.Duration
	seen       bool                    // the Job was in the store once
	stuckSince map[types.UID]time.Time // pods waiting in a state that does not fix itself
	follow     *follower               // progress from the logs of running pods
}

// Waiting reasons that do not fix themselves soon.
var stuckReasons = []string{
	"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
	"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}

func (w *jobWait) check(ctx context.Context, c kubernetes.Interface, podStore, jobStore cache.Store) (*PullReport, bool, error) {
	pods := w.pods(podStore.List())
	for _, pod := range pods {
		if rep, ok, err := w.ended(pod); ok {
			return rep, true, err
		}
	}
	for _, pod := range pods {
		if err := w.stuck(pod); err != nil {
			return nil, true, err
		}
		w.follow.pod(ctx, pod)
	}

	obj, exists, _ := jobStore.GetByKey(w.job.Namespace + "/" + w.job.Name)
	if !exists {
		if w.seen {
			return nil, true, errors.New("deleted while the copy ran")
		}
		return nil, false, nil
	}
	w.seen = true
	job := obj.(*batchv1.Job)
	if job.UID != w.job.UID {
		return nil, true, errors.New("replaced by another Job of the same name while the copy ran")
	}
	for _, cond := range job.Status.Conditions {
		if cond.Status != corev1.ConditionTrue || cond.Type != batchv1.JobFailed && cond.Type != batchv1.JobComplete {
			continue
		}
		// The Job ended; its pod's last state may not have reached this
		// watch yet: read them once more.
		list, err := c.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, true, fmt.Errorf("%s: list its pods: %w", cond.Type, err)
		}
		for _, pod := range w.pods(podPointers(list.Items)) {
			if rep, ok, err := w.ended(pod); ok {
				return rep, true, err
			}
		}
		if cond.Type == batchv1.JobComplete {
			return nil, true, errors.New("complete, but no pod with a report was found")
		}
		return nil, true, fmt.Errorf("failed: %s", w.scrub(strings.TrimSpace(cond.Reason+": "+cond.Message)))
	}
	return nil, false, nil
}

func podPointers(pods []corev1.Pod) []any {
	out := make([]any, len(pods))
	for i := range pods {
		out[i] = &pods[i]
	}
	return out
}

// pods are the Job's pods among objs: those with its name in a job-name
// label, and its UID if they carry one (a pod left by an earlier Job of the
// same name does not count).
func (w *jobWait) pods(objs []any) []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range objs {
		pod := o.(*corev1.Pod)
		if !slices.ContainsFunc(jobNameLabels, func(l string) bool { return pod.Labels[l] == w.job.Name }) {
			continue
		}
		if slices.ContainsFunc(jobUIDLabels, func(l string) bool {
			uid, ok := pod.Labels[l]
			return ok && uid != string(w.job.UID)
		}) || slices.ContainsFunc(pod.OwnerReferences, func(ref metav1.OwnerReference) bool {
			return ref.Kind == "Job" && ref.UID != w.job.UID
		}) {
			continue
		}
		out = append(out, pod)
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ended reads the outcome of a pod that ended: ok is false while it runs.
func (w *jobWait) ended(pod *corev1.Pod) (rep *PullReport, ok bool, err error) {
	ref := "Pod/" + pod.Name
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != pullerName || cs.State.Terminated == nil {
			continue
		}
		rep, err := w.report(cs.State.Terminated)
		if err != nil {
			return nil, true, fmt.Errorf("%s: %w", ref, err)
		}
		return rep, true, nil
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return nil, true, fmt.Errorf("%s: ended (%s) without a report from its container", ref, w.scrub(podStatusReason(pod)))
	}
	return nil, false, nil
}

// report turns the pull container's termination into its outcome: success
// only when the container exited 0 and left a report that says so.
func (w *jobWait) report(term *corev1.ContainerStateTerminated) (*PullReport, error) {
	exit := fmt.Sprintf("exit code %d", term.ExitCode)
	if term.Reason != "" {
		exit += ", " + term.Reason
	}
	msg := strings.TrimSpace(term.Message)
	if msg == "" {
		return nil, fmt.Errorf("the pull ended (%s) without a report", exit)
	}
	var rep PullReport
	dec := json.NewDecoder(strings.NewReader(msg))
	if err := dec.Decode(&rep); err != nil || dec.More() {
		if err == nil {
			err = errors.New("trailing data")
		}
		return nil, fmt.Errorf("the pull ended (%s) with a report that cannot be read (%d bytes): %w", exit, len(msg), err)
	}
	rep.Error = w.scrub(rep.Error)
	switch {
	case rep.ExitCode > 0:
		return nil, &RsyncError{ExitCode: rep.ExitCode, Message: trimRsyncPrefix(rep.Error, rep.ExitCode)}
	case rep.ExitCode < 0:
		return nil, fmt.Errorf("the pull failed before rsync ended (%s): %s", exit, cmp.Or(rep.Error, "no reason given"))
	case rep.Error != "":
		return nil, fmt.Errorf("the pull failed (%s): %s", exit, rep.Error)
	case term.ExitCode != 0:
		return nil, fmt.Errorf("the pull ended with %s, but its report says rsync succeeded", exit)
	}
	return &rep, nil
}

// trimRsyncPrefix drops what RsyncError.Error will say again.
func trimRsyncPrefix(msg string, code int) string {
	prefix := "rsync exited with code " + strconv.Itoa(code)
	if i := strings.LastIndex(msg, prefix); i >= 0 {
		msg = strings.TrimPrefix(msg[i+len(prefix):], ":")
	}
	return strings.TrimSpace(msg)
}

// stuck fails a pod that has waited too long in a state that does not fix
// itself.
func (w *jobWait) stuck(pod *corev1.Pod) error {
	var reason string
	for _, cs := range pod.Status.ContainerStatuses {
		if wt := cs.State.Waiting; wt != nil && slices.Contains(stuckReasons, wt.Reason) {
			reason = strings.TrimSpace(wt.Reason + ": " + wt.Message)
		}
	}
	if reason == "" {
		delete(w.stuckSince, pod.UID)
		return nil
	}
	since, ok := w.stuckSince[pod.UID]
	if !ok {
		w.stuckSince[pod.UID] = time.Now()
		return nil
	}
	if time.Since(since) < w.grace {
		return nil
	}
	return fmt.Errorf("Pod/%s: did not start within %s: %s", pod.Name, w.grace, w.scrub(reason))
}

// scrub keeps key material out of messages: anything that holds a piece of
// the run's credentials, or a PEM private key, is withheld.
func (w *jobWait) scrub(msg string) string {
	if strings.Contains(msg, "PRIVATE KEY") {
		return "(message withheld: it holds key material)"
	}
	for _, secret := range [][]byte{w.creds.PrivateKey, w.creds.Certificate} {
		for _, field := range bytes.Fields(secret) {
			if len(field) >= 16 && strings.Contains(msg, string(field)) {
				return "(message withheld: it holds key material)"
			}
		}
	}
	return msg
}

// watchSource is one kind of object to watch.
type watchSource struct {
	lw      cache.ListerWatcher
	example runtime.Object
}

func podListWatch(c kubernetes.Interface, ns string, opts func(*metav1.ListOptions)) *cache.ListWatch {
	if opts == nil {
		opts = func(*metav1.ListOptions) {}
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			opts(&o)
			return c.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			opts(&o)
			return c.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
}

// watchUntil keeps an informer's store of each source, and calls check with
// the stores (in the order of the sources) after every change, and every
// tick if tick > 0, until check says it is done or fails, or ctx ends.
// Informers re-list after a broken watch, so no change is lost.
func watchUntil(ctx context.Context, tick time.Duration, check func([]cache.Store) (bool, error), sources ...watchSource) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	stores := make([]cache.Store, len(sources))
	synced := make([]cache.InformerSynced, len(sources))
	for i, s := range sources {
		inf := cache.NewSharedIndexInformer(s.lw, s.example, 0, cache.Indexers{})
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		stores[i], synced[i] = inf.GetStore(), inf.HasSynced
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return context.Cause(ctx)
	}
	var ticks <-chan time.Time
	if tick > 0 {
		t := time.NewTicker(tick)
		defer t.Stop()
		ticks = t.C
	}
	for {
		done, err := check(stores)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-changed:
		case <-ticks:
		}
	}
}
