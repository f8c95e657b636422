package pvcsync

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// VolumeStatus is what the target holds of one claim's data, and how the
// last copy went.
type VolumeStatus struct {
	Target Claim `json:"target"`
	Source Claim `json:"source"`
	// DataCommit is the commit of the last copy that succeeded: the data
	// the target holds (unless Dirty). Empty until one succeeds.
	DataCommit string `json:"dataCommit,omitempty"`
	// CopiedAt is when that copy ended, Duration how long it took, Bytes
	// what it received and Files how many files the volume held.
	CopiedAt time.Time     `json:"copiedAt,omitzero"`
	Duration time.Duration `json:"duration,omitempty"`
	Bytes    int64         `json:"bytes,omitempty"`
	Files    int64         `json:"files,omitempty"`
	// LastAttempt is the latest result, whatever it was.
	LastAttempt Attempt `json:"lastAttempt"`
	// Dirty: a copy after DataCommit failed after it may have written, so
	// the target holds a mix of DataCommit's data and newer data. The next
	// copy that succeeds clears it. See RecordStore.Update for the rule.
	Dirty bool `json:"dirty,omitempty"`
}

// Attempt is the outcome of a commit's copy of one claim.
type Attempt struct {
	Commit   string    `json:"commit"`
	State    State     `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at,omitzero"`
	Attempts int       `json:"attempts,omitempty"`
	// ExitCode is rsync's, as in Result.
	ExitCode int `json:"exitCode,omitempty"`
}

// RecordNamespace is where the record is kept, beside the reconciler's
// inventory.
const RecordNamespace = "dr-syncer-system"

// RecordName is the name of the record's ConfigMap for a mapping (or target)
// name, as the inventory is "inventory-<name>".
func RecordName(name string) string { return "volumes-" + name }

// RecordStore keeps the per-commit record of the data copies in a
// ConfigMap of the target: one JSON document of VolumeStatus, keyed by
// target claim. It implements Recorder.
type RecordStore struct {
	Client kubernetes.Interface
	// Namespace (default RecordNamespace) and Name (see RecordName) of the
	// ConfigMap.
	Namespace, Name string
}

var _ Recorder = (*RecordStore)(nil)

const (
	recordFormat = "dr-syncer.io/volumes-v1"
	recordKey    = "volumes.json"
	labelRecord  = "dr-syncer.io/volumes"
)

// recordDoc is the stored document.
type recordDoc struct {
	Volumes []VolumeStatus `json:"volumes"`
}

// Load returns the record, by target claim ("namespace/name"). It is empty,
// not an error, when nothing was recorded yet.
func (s *RecordStore) Load(ctx context.Context) (map[string]VolumeStatus, error) {
	vols, _, err := s.read(ctx)
	return vols, err
}

// Update records the results of a commit's copies:
//
//   - Skipped: only LastAttempt changes; the data is what it was.
//   - Succeeded: the target holds the commit's data: DataCommit, CopiedAt,
//     Duration, Bytes (received) and Files are set, Dirty is cleared.
//   - Failed: LastAttempt is set, and Dirty once the failed copy may have
//     written into the target. It may not have when nothing ran
//     (Attempts 0: the copy could not even be planned) or when rsync
//     stopped before the transfer with one of its start-up codes (1 syntax,
//     2 protocol, 4 unsupported action, 5 client-server start-up). Any
//     other code, and -1 (rsync did not run to an exit: killed, timed out,
//     or no report), counts as "may have written": a pod killed midway
//     leaves no exit code, and believing such a target clean would be
//     worse than a false alarm. Dirty stays until a copy succeeds.
//
// Results without a target claim are not recorded. Update retries when
// someone else changed the record in between.
func (s *RecordStore) Update(ctx context.Context, results []Result) error {
	now := time.Now()
	return s.modify(ctx, func(vols map[string]VolumeStatus) {
		for _, r := range results {
			if r.Transfer.Target.Name == "" {
				continue
			}
			key := r.Transfer.Target.String()
			v := vols[key]
			v.Target, v.Source = r.Transfer.Target, r.Transfer.Source
			at := now
			if !r.Started.IsZero() {
				at = r.Started.Add(r.Duration)
			}
			v.LastAttempt = Attempt{
				Commit: r.Transfer.Commit, State: r.State, Reason: r.Reason,
				At: at.UTC(), Attempts: r.Attempts, ExitCode: r.ExitCode,
			}
			switch r.State {
			case StateSucceeded:
				v.DataCommit, v.CopiedAt, v.Duration = r.Transfer.Commit, at.UTC(), r.Duration
				v.Bytes, v.Files = r.Stats.BytesReceived, r.Stats.Files
				v.Dirty = false
			case StateFailed:
				v.Dirty = v.Dirty || mayHaveWritten(r)
			}
			vols[key] = v
		}
	})
}

// recordBackoff spaces the retries of a write that lost a race.
var recordBackoff = wait.Backoff{Steps: 12, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5}

// rsyncStartupCodes are rsync's exit codes for a run that stopped before
// it transferred anything.
var rsyncStartupCodes = []int{1, 2, 4, 5}

func mayHaveWritten(r Result) bool {
	return r.Attempts > 0 && !slices.Contains(rsyncStartupCodes, r.ExitCode)
}

// Prune removes the claims not in keep (those that left the rendered
// state), so that the status shows no ghosts.
func (s *RecordStore) Prune(ctx context.Context, keep []Claim) error {
	kept := map[string]bool{}
	for _, c := range keep {
		kept[c.String()] = true
	}
	return s.modify(ctx, func(vols map[string]VolumeStatus) {
		maps.DeleteFunc(vols, func(k string, _ VolumeStatus) bool { return !kept[k] })
	})
}

func (s *RecordStore) namespace() string { return cmp.Or(s.Namespace, RecordNamespace) }

func (s *RecordStore) ref() string { return "ConfigMap/" + s.namespace() + "/" + s.Name }

// read returns the record and the ConfigMap it was read from (nil when
// there is none).
func (s *RecordStore) read(ctx context.Context) (map[string]VolumeStatus, *corev1.ConfigMap, error) {
	cm, err := s.Client.CoreV1().ConfigMaps(s.namespace()).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]VolumeStatus{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read volume record: %w", s.ref(), err)
	}
	if f := cm.Data["format"]; f != recordFormat {
		return nil, nil, fmt.Errorf("%s: read volume record: unknown format %q (want %q)", s.ref(), f, recordFormat)
	}
	var doc recordDoc
	if err := json.Unmarshal([]byte(cm.Data[recordKey]), &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: read volume record: %w", s.ref(), err)
	}
	vols := make(map[string]VolumeStatus, len(doc.Volumes))
	for _, v := range doc.Volumes {
		vols[v.Target.String()] = v
	}
	return vols, cm, nil
}

// modify reads the record, changes it and writes it back, again from the
// start when someone else wrote it in between (the resourceVersion guards
// the write).
func (s *RecordStore) modify(ctx context.Context, change func(map[string]VolumeStatus)) error {
	if s.Name == "" {
		return fmt.Errorf("volume record: RecordStore.Name is required")
	}
	if err := s.ensureNamespace(ctx); err != nil {
		return err
	}
	cms := s.Client.CoreV1().ConfigMaps(s.namespace())
	err := retry.OnError(recordBackoff, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		vols, cm, err := s.read(ctx)
		if err != nil {
			return err
		}
		change(vols)
		doc := recordDoc{Volumes: slices.SortedFunc(maps.Values(vols), func(a, b VolumeStatus) int {
			return cmp.Or(cmp.Compare(a.Target.Namespace, b.Target.Namespace), cmp.Compare(a.Target.Name, b.Target.Name))
		})}
		if doc.Volumes == nil {
			doc.Volumes = []VolumeStatus{}
		}
		data, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		if cm == nil {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				Name: s.Name, Namespace: s.namespace(),
				Labels: map[string]string{kubeLabelManagedBy: kubeManagedBy, labelRecord: s.Name},
			}}
			cm.Data = map[string]string{"format": recordFormat, recordKey: string(data)}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			return err
		}
		cm.Data = map[string]string{"format": recordFormat, recordKey: string(data)}
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: write volume record: %w", s.ref(), err)
	}
	return nil
}

func (s *RecordStore) ensureNamespace(ctx context.Context) error {
	nss := s.Client.CoreV1().Namespaces()
	_, err := nss.Get(ctx, s.namespace(), metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("Namespace/%s: %w", s.namespace(), err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: s.namespace(), Labels: map[string]string{kubeLabelManagedBy: kubeManagedBy},
	}}
	if _, err := nss.Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("Namespace/%s: create: %w", s.namespace(), err)
	}
	return nil
}
