package policies

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The identity of the mapping file.
const (
	APIVersion = "dr-syncer.io/v1alpha1"
	Kind       = "SyncConfig"
	FileName   = "dr-syncer.yaml"
)

// IgnoreLabel on an object (or a namespace) with the value "true" keeps it out
// of the snapshot, whatever the mapping says.
const IgnoreLabel = "dr-syncer.io/ignore"

// SyncConfig is the mapping file, dr-syncer.yaml.
type SyncConfig struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata names the mapping.
type Metadata struct {
	Name string `json:"name"`
}

// Spec is what is replicated, from where to where, and how.
type Spec struct {
	// Source and Target name the clusters. The names are path components of
	// the DR repository (snapshots/<source>/, overlays/<target>/); how to
	// reach the clusters (kubeconfigs, credentials) is never written here.
	Source ClusterRef `json:"source"`
	Target ClusterRef `json:"target"`
	// Namespaces maps source namespaces to target namespaces; at least one.
	Namespaces []NamespaceMapping `json:"namespaces"`
	Resources  Resources          `json:"resources,omitempty"`
	Secrets    Secrets            `json:"secrets,omitempty"`
	// StorageClasses renames PVC storage classes on the way to the target
	// (read by the render stage).
	StorageClasses []NameMapping `json:"storageClasses,omitempty"`
	// AccessModes renames PVC access modes, e.g. ReadWriteOnce to
	// ReadWriteMany (read by the render stage).
	AccessModes []NameMapping `json:"accessModes,omitempty"`
	Replication Replication   `json:"replication,omitempty"`
	// Standby keeps replicated workloads idle in the target until failover:
	// Deployments and StatefulSets at 0 replicas, CronJobs suspended. Read by
	// the render stage (overlays/<target>/generated/).
	Standby Standby `json:"standby,omitempty"`
	// Apply tunes how the target is changed. Read by the reconcile stage.
	Apply Apply `json:"apply,omitempty"`
	// Volumes is the PVC data stage.
	Volumes Volumes `json:"volumes,omitempty"`
	// Review holds snapshots for review: they are committed to a branch of
	// their own, and the target follows the main branch, where a person
	// merges them.
	Review Review `json:"review,omitempty"`
}

// Review is review mode. Off (the zero value), snapshots are committed to
// the branch the target follows and applied at once.
type Review struct {
	// Enabled commits snapshots to Branch; the target follows "main" (or
	// the ref given on the command line) and gets a change only once a
	// person has merged it there.
	Enabled bool `json:"enabled,omitempty"`
	// Branch receives the snapshots; default "snapshots/<source>". Only
	// with Enabled.
	Branch string `json:"branch,omitempty"`
}

// ReviewBranch is the branch snapshots go to in review mode, its default
// applied, or "" when review mode is off.
func (c *SyncConfig) ReviewBranch() string {
	if !c.Spec.Review.Enabled {
		return ""
	}
	if c.Spec.Review.Branch != "" {
		return c.Spec.Review.Branch
	}
	return "snapshots/" + c.Spec.Source.Name
}

// ClusterRef names a cluster.
type ClusterRef struct {
	Name string `json:"name"`
}

// NamespaceMapping maps one source namespace by name (Source, Target), or every
// source namespace whose labels match Selector to a namespace of the same name.
type NamespaceMapping struct {
	Source string `json:"source,omitempty"`
	// Target defaults to Source.
	Target   string                `json:"target,omitempty"`
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// NameMapping renames one value.
type NameMapping struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// Resources chooses the kinds and objects taken.
type Resources struct {
	// Include, when not empty, is the list of kinds taken (Namespaces and
	// CustomResourceDefinitions are always included unless excluded).
	// Empty: every listable kind.
	Include []KindRef `json:"include,omitempty"`
	// Exclude lists kinds never taken.
	Exclude []KindRef `json:"exclude,omitempty"`
	// ExcludeObjects leaves out single objects; a filter matches an object
	// when all of its set fields match.
	ExcludeObjects []ObjectFilter `json:"excludeObjects,omitempty"`
	// DisableDefaultExclusions turns rows of DefaultExclusions off, by ID.
	DisableDefaultExclusions []string `json:"disableDefaultExclusions,omitempty"`
}

// KindRef names a kind; Group "" is the core group.
type KindRef struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind"`
}

// ObjectFilter matches objects; at least one field is set, and an object
// matches when every set field matches.
type ObjectFilter struct {
	Kind *KindRef `json:"kind,omitempty"`
	// Namespace is a glob (path.Match syntax) over the source namespace.
	Namespace string `json:"namespace,omitempty"`
	// Name is a glob (path.Match syntax) over the object's name.
	Name     string                `json:"name,omitempty"`
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// SecretMode says how Secrets reach the repository.
type SecretMode string

// Secret modes.
const (
	// SecretModeEncrypt stores Secret data encrypted to the age recipients.
	SecretModeEncrypt SecretMode = "encrypt"
	// SecretModeExclude does not take Secrets at all.
	SecretModeExclude SecretMode = "exclude"
)

// Secrets decides how Secrets are handled; they never reach the repository
// in plaintext.
type Secrets struct {
	// Mode defaults to SecretModeEncrypt.
	Mode SecretMode `json:"mode,omitempty"`
	// Recipients are age recipients (age1…), one per entry; at least one
	// when Mode is encrypt and Secrets are taken.
	Recipients []string `json:"recipients,omitempty"`
}

// ReplicationMode says when snapshots are taken.
type ReplicationMode string

// Replication modes.
const (
	ReplicationModeManual     ReplicationMode = "manual"
	ReplicationModeScheduled  ReplicationMode = "scheduled"
	ReplicationModeContinuous ReplicationMode = "continuous"
)

// Replication says when snapshots are taken.
type Replication struct {
	// Mode defaults to ReplicationModeManual.
	Mode ReplicationMode `json:"mode,omitempty"`
	// Schedule is a five-field cron expression, required when (and only
	// when) Mode is scheduled.
	Schedule string `json:"schedule,omitempty"`
	// TimeZone is an IANA time zone for Schedule; empty means UTC.
	TimeZone string `json:"timeZone,omitempty"`
}

// Default fills in what the file may leave out: apiVersion and kind, the
// target of a namespace mapped by name (its own name), the Secret mode
// (encrypt) and the replication mode (manual). Decode calls it; call it
// after building a SyncConfig in Go to get the same meaning.
func (c *SyncConfig) Default() {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	for i := range c.Spec.Namespaces {
		m := &c.Spec.Namespaces[i]
		if m.Source != "" && m.Target == "" {
			m.Target = m.Source
		}
	}
	if c.Spec.Secrets.Mode == "" {
		c.Spec.Secrets.Mode = SecretModeEncrypt
	}
	if c.Spec.Replication.Mode == "" {
		c.Spec.Replication.Mode = ReplicationModeManual
	}
}

func (c *SyncConfig) secretMode() SecretMode {
	if c.Spec.Secrets.Mode == "" {
		return SecretModeEncrypt
	}
	return c.Spec.Secrets.Mode
}

func (c *SyncConfig) replicationMode() ReplicationMode {
	if c.Spec.Replication.Mode == "" {
		return ReplicationModeManual
	}
	return c.Spec.Replication.Mode
}

// Standby is the DR standby setting. The zero value means standby is on.
type Standby struct {
	// Disabled runs the workloads in the target with the source's replica
	// counts and schedules (an active-active copy). Default false.
	Disabled bool `json:"disabled,omitempty"`
}

// Apply tunes how a commit is applied to the target.
type Apply struct {
	// Recreate lists the kinds whose objects may be deleted and created
	// again when a commit changes a field that cannot change. Default: Job
	// (batch) and Service. CustomResourceDefinitions, Namespaces and
	// PersistentVolumeClaims are never recreated: deleting them deletes
	// data.
	Recreate []KindRef `json:"recreate,omitempty"`
	// MaxPrunePercent refuses an apply that would prune more than this share
	// of what the target holds, unless --allow-mass-prune: a DR copy must
	// not follow a wipe of the source. Default 25.
	MaxPrunePercent *int `json:"maxPrunePercent,omitempty"`
}

// DefaultMaxPrunePercent is Apply.MaxPrunePercent's default.
const DefaultMaxPrunePercent = 25

// DefaultRecreate is Apply.Recreate's default.
var DefaultRecreate = []KindRef{{Group: "batch", Kind: "Job"}, {Kind: "Service"}}

// neverRecreated are the kinds that Apply.Recreate may not name.
var neverRecreated = []KindRef{
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"},
	{Kind: "Namespace"},
	{Kind: "PersistentVolumeClaim"},
}

// MayRecreate reports whether objects of a kind may be recreated.
func (c *SyncConfig) MayRecreate(group, kind string) bool {
	if slices.Contains(neverRecreated, KindRef{Group: group, Kind: kind}) {
		return false
	}
	list := c.Spec.Apply.Recreate
	if list == nil {
		list = DefaultRecreate
	}
	return slices.Contains(list, KindRef{Group: group, Kind: kind})
}

// MaxPruneRatio is Apply.MaxPrunePercent as a ratio, its default applied.
func (c *SyncConfig) MaxPruneRatio() float64 {
	if p := c.Spec.Apply.MaxPrunePercent; p != nil {
		return float64(*p) / 100
	}
	return DefaultMaxPrunePercent / 100.0
}
