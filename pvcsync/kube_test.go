package pvcsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// testCreds look like credentials; none of their lines may appear in an
// error.
var testCreds = Credentials{
	PrivateKey:  []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"),
	Certificate: []byte("ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIGx0 run\n"),
	KnownHosts:  []byte("10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKey\n"),
}

func checkNoKeys(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, secret := range [][]byte{testCreds.PrivateKey, testCreds.Certificate} {
		for _, line := range strings.Fields(string(secret)) {
			if len(line) >= 16 && strings.Contains(err.Error(), line) {
				t.Errorf("error holds key material %q: %v", line, err)
			}
		}
	}
}

// kubelet plays the job controller and the kubelet for one Job: it waits for
// the Job, hands it to inspect, creates its pod on node and gives the pod
// the status that play makes (unless play returns nil).
type kubelet struct {
	jobs chan *batchv1.Job
	pods chan *corev1.Pod
}

func playJob(t *testing.T, ctx context.Context, c kubernetes.Interface, ns string, play func(*batchv1.Job, *corev1.Pod) *corev1.PodStatus) *kubelet {
	k := &kubelet{jobs: make(chan *batchv1.Job, 1), pods: make(chan *corev1.Pod, 1)}
	go func() {
		defer close(k.jobs)
		defer close(k.pods)
		w, err := c.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Stop()
		var job *batchv1.Job
		for ev := range w.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
				job = j
				break
			}
		}
		if job == nil {
			return
		}
		k.jobs <- job
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: job.Name + "-x7k2p", Namespace: ns, Labels: job.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID}},
			},
			Spec: *job.Spec.Template.Spec.DeepCopy(),
		}
		pod.Spec.NodeName = "target-node"
		pod, err = c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("create the Job's pod: %v", err)
			return
		}
		status := play(job, pod)
		if status == nil {
			k.pods <- pod
			return
		}
		pod.Status = *status
		if pod, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			t.Errorf("update the Job's pod status: %v", err)
		}
		k.pods <- pod
	}()
	return k
}

// terminated is a pod status whose pull container ended with exit code and
// termination message.
func terminated(phase corev1.PodPhase, exit int32, message string) *corev1.PodStatus {
	return &corev1.PodStatus{
		Phase: phase,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: pullerName, Image: "img",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: exit, Message: message, Reason: map[bool]string{true: "Completed", false: "Error"}[exit == 0],
				StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
			}},
		}},
	}
}

func reportJSON(t *testing.T, r PullReport) string {
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func testTransfer(ns string) Transfer {
	return Transfer{
		Source: Claim{"prod", "data"}, Target: Claim{ns, "data"}, Node: "src-node",
		Agent: Endpoint{Host: "10.0.0.1", Port: 2222},
		Path:  "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pv1/mount", Commit: "abc123",
	}
}

// checkCleanedUp checks that no Job or Secret of the runner is left in ns.
func checkCleanedUp(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	jobs, err := c.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		t.Errorf("Job/%s left behind", j.Name)
	}
	secrets, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("Secret/%s left behind", s.Name)
	}
}

func TestKubeRunnerSuccess(t *testing.T) {
	tgt := clusters.Target.Clientset()
	ns := clusters.Target.Namespace(t)
	createPVC(t, tgt, ns, "data", "")
	tr := testTransfer(ns)
	// A pod of an earlier Job of the same name, with a report of its own,
	// must not be taken for the new one's.
	stale := createPod(t, tgt, ns, pullPrefix+"-stale", "target-node", "data", "")
	stale.Labels = map[string]string{"batch.kubernetes.io/job-name": pullPrefix + objectHash("pull", ns, "data"), "batch.kubernetes.io/controller-uid": "0000-old"}
	stale, err := tgt.CoreV1().Pods(ns).Update(t.Context(), stale, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale.Status = *terminated(corev1.PodFailed, 23, reportJSON(t, PullReport{ExitCode: 23, Error: "old"}))
	if _, err := tgt.CoreV1().Pods(ns).UpdateStatus(t.Context(), stale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The same, known by its owner only (a Job controller before 1.27
	// labels pods with job-name alone).
	stale2 := createPod(t, tgt, ns, pullPrefix+"-stale2", "target-node", "data", "")
	stale2.Labels = map[string]string{"job-name": pullPrefix + objectHash("pull", ns, "data")}
	stale2.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: pullPrefix + objectHash("pull", ns, "data"), UID: "0000-old"}}
	if stale2, err = tgt.CoreV1().Pods(ns).Update(t.Context(), stale2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale2.Status = *terminated(corev1.PodFailed, 23, reportJSON(t, PullReport{ExitCode: 23, Error: "old"}))
	if _, err := tgt.CoreV1().Pods(ns).UpdateStatus(t.Context(), stale2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	stats := Stats{Files: 42, FilesTransferred: 3, TotalSize: 1 << 20, TransferredSize: 4096, LiteralBytes: 4000, MatchedBytes: 96, BytesSent: 500, BytesReceived: 4500}
	var secret *corev1.Secret
	k := playJob(t, t.Context(), tgt, ns, func(job *batchv1.Job, _ *corev1.Pod) *corev1.PodStatus {
		// The runner makes the Job the Secret's owner once it has the Job.
		err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			secret, err = tgt.CoreV1().Secrets(ns).Get(ctx, job.Name, metav1.GetOptions{})
			return err == nil && len(secret.OwnerReferences) > 0, err
		})
		if err != nil {
			t.Errorf("the Job's Secret: %v", err)
		}
		return terminated(corev1.PodSucceeded, 0, reportJSON(t, PullReport{ExitCode: 0, Stats: stats}))
	})
	r := &KubeRunner{Client: tgt, Image: "registry.example/dr-syncer:v1", InPlace: true, Sparse: true, Timeout: 90 * time.Minute}
	var progress []Progress
	got, err := r.Run(t.Context(), tr, testCreds, func(p Progress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	if d := gocmp.Diff(stats, got); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	if len(progress) != 1 || progress[0].Percent != 100 {
		t.Errorf("progress %+v, want one final update", progress)
	}
	checkPullJob(t, <-k.jobs, tr, "registry.example/dr-syncer:v1", 90*time.Minute, "--inplace", "--sparse")
	checkPullSecret(t, secret)
	checkCleanedUp(t, tgt, ns)
}

func checkPullSecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	if s == nil {
		return
	}
	if s.Type != corev1.SecretTypeOpaque || s.Labels[kubeLabelManagedBy] != "dr-syncer" || s.Labels[labelTransfer] == "" {
		t.Errorf("Secret type %s, labels %v", s.Type, s.Labels)
	}
	want := map[string]string{KeyFile: string(testCreds.PrivateKey), CertificateFile: string(testCreds.Certificate), KnownHostsFile: string(testCreds.KnownHosts)}
	got := map[string]string{}
	for k, v := range s.Data {
		got[k] = string(v)
	}
	if d := gocmp.Diff(want, got); d != "" {
		t.Errorf("Secret data (-want +got):\n%s", d)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Job" || s.OwnerReferences[0].Name != s.Name {
		t.Errorf("Secret owners %+v, want its Job", s.OwnerReferences)
	}
}

func checkPullJob(t *testing.T, job *batchv1.Job, tr Transfer, image string, timeout time.Duration, extra ...string) {
	t.Helper()
	if job == nil {
		t.Fatal("no Job created")
	}
	var problems []string
	check := func(ok bool, what string, got any) {
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: got %v", what, got))
		}
	}
	check(strings.HasPrefix(job.Name, pullPrefix), "name", job.Name)
	check(job.Labels[kubeLabelManagedBy] == "dr-syncer" && job.Labels[labelTransfer] != "", "labels", job.Labels)
	check(job.Spec.BackoffLimit != nil && *job.Spec.BackoffLimit == 0, "backoffLimit", job.Spec.BackoffLimit)
	check(job.Spec.ActiveDeadlineSeconds != nil && *job.Spec.ActiveDeadlineSeconds == int64(timeout/time.Second), "activeDeadlineSeconds", job.Spec.ActiveDeadlineSeconds)
	check(job.Spec.TTLSecondsAfterFinished != nil && *job.Spec.TTLSecondsAfterFinished > 0, "ttlSecondsAfterFinished", job.Spec.TTLSecondsAfterFinished)
	s := job.Spec.Template.Spec
	check(s.RestartPolicy == corev1.RestartPolicyNever, "restartPolicy", s.RestartPolicy)
	check(s.AutomountServiceAccountToken != nil && !*s.AutomountServiceAccountToken, "automountServiceAccountToken", s.AutomountServiceAccountToken)
	check(s.SecurityContext == nil || s.SecurityContext.FSGroup == nil, "no fsGroup", s.SecurityContext)
	vols := map[string]corev1.Volume{}
	for _, v := range s.Volumes {
		vols[v.Name] = v
	}
	check(vols["data"].PersistentVolumeClaim != nil && vols["data"].PersistentVolumeClaim.ClaimName == tr.Target.Name && !vols["data"].PersistentVolumeClaim.ReadOnly, "data volume", vols["data"])
	sec := vols["ssh"].Secret
	check(sec != nil && sec.SecretName == job.Name && sec.DefaultMode != nil && *sec.DefaultMode == 0o400, "ssh volume", sec)
	check(len(s.Containers) == 1, "containers", len(s.Containers))
	c := s.Containers[0]
	check(c.Image == image, "image", c.Image)
	wantCmd := append([]string{"dr-syncer", "agent", "pull", "--agent", tr.Agent.String(), "--path", tr.Path, "--dest", "/data", "--keys", "/etc/dr-syncer/ssh"}, extra...)
	check(slices.Equal(c.Command, wantCmd), "command", c.Command)
	check(c.TerminationMessagePolicy == corev1.TerminationMessageReadFile, "terminationMessagePolicy", c.TerminationMessagePolicy)
	check(c.Resources.Requests.Cpu().MilliValue() > 0 && c.Resources.Requests.Memory().Value() > 0, "resource requests", c.Resources)
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	check(mounts["data"].MountPath == "/data" && !mounts["data"].ReadOnly, "data mount", mounts["data"])
	check(mounts["ssh"].MountPath == "/etc/dr-syncer/ssh" && mounts["ssh"].ReadOnly, "ssh mount", mounts["ssh"])
	sc := c.SecurityContext
	check(sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0, "runAsUser", sc)
	check(sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation", sc)
	check(sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem", sc)
	check(sc != nil && sc.Privileged == nil, "privileged", sc)
	if sc != nil && sc.Capabilities != nil {
		check(slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}), "capabilities dropped", sc.Capabilities.Drop)
		add := slices.Clone(sc.Capabilities.Add)
		slices.Sort(add)
		check(slices.Equal(add, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP"}), "capabilities added", add)
	} else {
		problems = append(problems, "no capabilities")
	}
	if len(problems) > 0 {
		t.Errorf("Job/%s:\n  %s", job.Name, strings.Join(problems, "\n  "))
	}
}

func TestKubeRunnerPinsToTheNodeOfTheClaim(t *testing.T) {
	tests := []struct {
		name     string
		modes    []corev1.PersistentVolumeAccessMode
		user     corev1.PodPhase // "" : no pod uses the claim
		wantNode string
		wantErr  string
	}{
		{"rwo in use", []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, corev1.PodRunning, "node-7", ""},
		{"rwo unused", []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, "", "", ""},
		{"rwo user not running", []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, corev1.PodSucceeded, "", ""},
		{"rwx in use", []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, corev1.PodRunning, "", ""},
		{"rwop in use", []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}, corev1.PodRunning, "", "ReadWriteOncePod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt := clusters.Target.Clientset()
			ns := clusters.Target.Namespace(t)
			createPVC(t, tgt, ns, "data", "", tt.modes...)
			if tt.user != "" {
				createPod(t, tgt, ns, "app", "node-7", "data", tt.user)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			k := playJob(t, ctx, tgt, ns, func(*batchv1.Job, *corev1.Pod) *corev1.PodStatus {
				return terminated(corev1.PodSucceeded, 0, reportJSON(t, PullReport{}))
			})
			r := &KubeRunner{Client: tgt, Image: "img"}
			_, err := r.Run(t.Context(), testTransfer(ns), testCreds, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				checkCleanedUp(t, tgt, ns)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			job := <-k.jobs
			var node string
			if a := job.Spec.Template.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
				terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
				if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" ||
					terms[0].MatchFields[0].Operator != corev1.NodeSelectorOpIn || len(terms[0].MatchFields[0].Values) != 1 {
					t.Fatalf("affinity %+v", terms)
				}
				node = terms[0].MatchFields[0].Values[0]
			}
			if node != tt.wantNode || job.Spec.Template.Spec.NodeName != "" {
				t.Errorf("pinned to %q (nodeName %q), want %q", node, job.Spec.Template.Spec.NodeName, tt.wantNode)
			}
			checkCleanedUp(t, tgt, ns)
		})
	}
}

func TestKubeRunnerFailures(t *testing.T) {
	tests := []struct {
		name string
		// play gives the pod its status, and may change the Job.
		play    func(t *testing.T, c kubernetes.Interface, job *batchv1.Job) *corev1.PodStatus
		cancel  bool // cancel the context once the pod exists
		wantErr string
		rsync   int // the *RsyncError's exit code, 0: none expected
	}{
		{
			name: "rsync partial transfer",
			play: func(t *testing.T, _ kubernetes.Interface, _ *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodFailed, 23, reportJSON(t, PullReport{ExitCode: 23, Error: "pull 10.0.0.1:2222:/p: rsync exited with code 23: rsync: [sender] read errors mapping \"/p/f\": Input/output error (5)"}))
			},
			wantErr: "rsync exited with code 23: rsync: [sender] read errors", rsync: 23,
		},
		{
			name: "garbage message",
			play: func(*testing.T, kubernetes.Interface, *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodSucceeded, 0, "all good, trust me")
			},
			wantErr: "report that cannot be read",
		},
		{
			name: "no message",
			play: func(*testing.T, kubernetes.Interface, *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodSucceeded, 0, "")
			},
			wantErr: "without a report",
		},
		{
			name: "exit code and report disagree",
			play: func(t *testing.T, _ kubernetes.Interface, _ *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodFailed, 137, reportJSON(t, PullReport{}))
			},
			wantErr: "exit code 137",
		},
		{
			name: "pull failed before rsync",
			play: func(t *testing.T, _ kubernetes.Interface, _ *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodFailed, 1, reportJSON(t, PullReport{ExitCode: -1, Error: "credentials: no such file"}))
			},
			wantErr: "before rsync ended (exit code 1, Error): credentials: no such file",
		},
		{
			name: "key material in the report",
			play: func(t *testing.T, _ kubernetes.Interface, _ *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodFailed, 1, reportJSON(t, PullReport{ExitCode: -1, Error: "bad key " + string(testCreds.PrivateKey)}))
			},
			wantErr: "message withheld",
		},
		{
			name: "foreign key material in the report",
			play: func(t *testing.T, _ kubernetes.Interface, _ *batchv1.Job) *corev1.PodStatus {
				return terminated(corev1.PodFailed, 1, reportJSON(t, PullReport{ExitCode: -1, Error: "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----"}))
			},
			wantErr: "message withheld",
		},
		{
			name: "evicted",
			play: func(*testing.T, kubernetes.Interface, *batchv1.Job) *corev1.PodStatus {
				return &corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: ephemeral-storage."}
			},
			wantErr: "without a report from its container",
		},
		{
			name: "job deadline exceeded",
			play: func(t *testing.T, c kubernetes.Interface, job *batchv1.Job) *corev1.PodStatus {
				job.Status.StartTime = new(metav1.Now())
				job.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline"},
					{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline"},
				}
				if _, err := c.BatchV1().Jobs(job.Namespace).UpdateStatus(t.Context(), job, metav1.UpdateOptions{}); err != nil {
					t.Errorf("Job status: %v", err)
				}
				return &corev1.PodStatus{Phase: corev1.PodRunning}
			},
			wantErr: "failed: DeadlineExceeded: Job was active longer than specified deadline",
		},
		{
			name: "image does not pull",
			play: func(*testing.T, kubernetes.Interface, *batchv1.Job) *corev1.PodStatus {
				return &corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
					Name: pullerName, Image: "img",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image \"img\""}},
				}}}
			},
			wantErr: "did not start within 300ms: ImagePullBackOff",
		},
		{
			name: "cancelled",
			play: func(*testing.T, kubernetes.Interface, *batchv1.Job) *corev1.PodStatus {
				return &corev1.PodStatus{Phase: corev1.PodRunning}
			},
			cancel:  true,
			wantErr: context.Canceled.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tgt := clusters.Target.Clientset()
			ns := clusters.Target.Namespace(t)
			createPVC(t, tgt, ns, "data", "")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			k := playJob(t, t.Context(), tgt, ns, func(job *batchv1.Job, _ *corev1.Pod) *corev1.PodStatus {
				return tt.play(t, tgt, job)
			})
			if tt.cancel {
				go func() {
					<-k.jobs
					<-k.pods
					cancel()
				}()
			}
			r := &KubeRunner{Client: tgt, Image: "img", PollInterval: 50 * time.Millisecond, startGrace: 300 * time.Millisecond}
			stats, err := r.Run(ctx, testTransfer(ns), testCreds, func(Progress) { t.Error("progress reported for a failed copy") })
			if err == nil {
				t.Fatalf("Run succeeded (%+v), want an error with %q", stats, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "Job/"+ns+"/"+pullPrefix) {
				t.Errorf("err = %v, want %q, naming the Job", err, tt.wantErr)
			}
			var re *RsyncError
			if errors.As(err, &re) != (tt.rsync != 0) || re != nil && re.ExitCode != tt.rsync {
				t.Errorf("err = %#v, want an *RsyncError with code %d: %v", err, tt.rsync, errors.As(err, &re))
			}
			if tt.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			checkNoKeys(t, err)
			checkCleanedUp(t, tgt, ns)
		})
	}
}

func TestKubeRunnerRemovesLeftovers(t *testing.T) {
	tgt := clusters.Target.Clientset()
	ns := clusters.Target.Namespace(t)
	createPVC(t, tgt, ns, "data", "")
	name := pullPrefix + objectHash("pull", ns, "data")
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"x": "y"}}
	if _, err := tgt.CoreV1().Secrets(ns).Create(t.Context(), old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := &KubeRunner{Client: tgt, Image: "img"}
	_, err := r.Run(t.Context(), testTransfer(ns), testCreds, nil)
	if err == nil || !strings.Contains(err.Error(), "left by an earlier run") || !apierrors.IsAlreadyExists(err) {
		t.Fatalf("err = %v, want a leftover", err)
	}
	checkCleanedUp(t, tgt, ns)
}

func TestKubeRunnerMissingTargetClaim(t *testing.T) {
	tgt := clusters.Target.Clientset()
	ns := clusters.Target.Namespace(t)
	r := &KubeRunner{Client: tgt, Image: "img"}
	_, err := r.Run(t.Context(), testTransfer(ns), testCreds, nil)
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "PersistentVolumeClaim/"+ns+"/data") {
		t.Fatalf("err = %v, want the claim not found", err)
	}
	checkCleanedUp(t, tgt, ns)
}
