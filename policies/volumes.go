package policies

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Volumes is the PVC data stage: after a commit is applied, the data of
// every replicated PersistentVolumeClaim is copied from the node where the
// source volume is mounted into the target's claim, with rsync over SSH.
// Read by the PVC stage (package pvcsync).
type Volumes struct {
	// Disabled turns the data stage off: claims are replicated as objects,
	// their data is not copied.
	Disabled bool `json:"disabled,omitempty"`
	// Selector limits the data copy to the source claims whose labels
	// match; nil copies every replicated claim. A claim labelled
	// dr-syncer.io/volume-sync=false is never copied.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Unmounted says what happens to a claim that no running pod mounts in
	// the source: UnmountedSkip (the default) reports it Skipped;
	// UnmountedMount mounts it with a temporary read-only pod on the source
	// for the copy.
	Unmounted UnmountedPolicy `json:"unmounted,omitempty"`
	// Concurrency is how many claims are copied at once. Default 2.
	Concurrency int `json:"concurrency,omitempty"`
	// Retries is how many times a failed copy is tried again, with
	// exponential backoff. Default 3.
	Retries *int `json:"retries,omitempty"`
	// InPlace writes changed files in place (rsync --inplace): about a
	// quarter faster on a delta and almost no extra space, but a copy that
	// fails leaves files half-written, so the target's data is only
	// consistent after a copy that succeeded. Default false: changed files
	// are written beside the old ones and renamed.
	InPlace bool `json:"inPlace,omitempty"`
	// Sparse keeps sparse files sparse (rsync --sparse). Default true:
	// without it a file's holes are written as zeros, and a claim of sparse
	// files (VM images, some databases) may not fit in a target claim of
	// the same size. It costs CPU on the receiving side: 2–28% of a full
	// copy of 2 GiB of random data in BenchmarkPull (pvcsync). false for
	// volumes known to hold no holes, when full-copy throughput matters
	// more.
	Sparse *bool `json:"sparse,omitempty"`
	// Agent is how the target reaches the agents on the source nodes.
	Agent VolumeAgent `json:"agent,omitempty"`
}

// UnmountedPolicy is what happens to a claim no running pod mounts.
type UnmountedPolicy string

// Unmounted policies.
const (
	UnmountedSkip  UnmountedPolicy = "Skip"
	UnmountedMount UnmountedPolicy = "Mount"
)

// AgentAddress says which address of a source node's agent the target dials.
type AgentAddress string

// Agent addresses.
const (
	// AgentAddressNodeIP dials the node's InternalIP (else ExternalIP) at
	// the agent's host port: the target's nodes must reach the source's
	// nodes on that port.
	AgentAddressNodeIP AgentAddress = "NodeIP"
	// AgentAddressExternalIP dials the node's ExternalIP.
	AgentAddressExternalIP AgentAddress = "ExternalIP"
)

// VolumeAgent locates the agents.
type VolumeAgent struct {
	// Port is the agent's SSH port on every source node. Default 2222.
	Port int `json:"port,omitempty"`
	// Address is the node address dialled. Default NodeIP.
	Address AgentAddress `json:"address,omitempty"`
}

// Defaults of Volumes.
const (
	DefaultVolumeConcurrency = 2
	DefaultVolumeRetries     = 3
	DefaultAgentPort         = 2222
)

// VolumeSyncLabel set to "false" on a source claim keeps its data out of the
// copy (the claim object is still replicated).
const VolumeSyncLabel = "dr-syncer.io/volume-sync"

// VolumeConcurrency is Volumes.Concurrency with its default.
func (c *SyncConfig) VolumeConcurrency() int {
	if n := c.Spec.Volumes.Concurrency; n > 0 {
		return n
	}
	return DefaultVolumeConcurrency
}

// VolumeRetries is Volumes.Retries with its default.
func (c *SyncConfig) VolumeRetries() int {
	if r := c.Spec.Volumes.Retries; r != nil {
		return *r
	}
	return DefaultVolumeRetries
}

// AgentPort is Volumes.Agent.Port with its default.
func (c *SyncConfig) AgentPort() int {
	if p := c.Spec.Volumes.Agent.Port; p > 0 {
		return p
	}
	return DefaultAgentPort
}

// AgentAddress is Volumes.Agent.Address with its default.
func (c *SyncConfig) AgentAddress() AgentAddress {
	if a := c.Spec.Volumes.Agent.Address; a != "" {
		return a
	}
	return AgentAddressNodeIP
}

// UnmountedPolicy is Volumes.Unmounted with its default.
func (c *SyncConfig) UnmountedPolicy() UnmountedPolicy {
	if u := c.Spec.Volumes.Unmounted; u != "" {
		return u
	}
	return UnmountedSkip
}

// CopiesData reports whether the data of a source claim with these labels is
// copied.
func (c *SyncConfig) CopiesData(claimLabels map[string]string) bool {
	if c.Spec.Volumes.Disabled || claimLabels[VolumeSyncLabel] == "false" {
		return false
	}
	if c.Spec.Volumes.Selector == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(c.Spec.Volumes.Selector)
	if err != nil { // Validate refuses such selectors
		return false
	}
	return sel.Matches(labels.Set(claimLabels))
}

func (c *SyncConfig) validateVolumes(errs *fieldErrors) {
	const base = "spec.volumes"
	v := c.Spec.Volumes
	if v.Selector != nil {
		validateSelector(errs, base+".selector", v.Selector)
	}
	switch v.Unmounted {
	case "", UnmountedSkip, UnmountedMount:
	default:
		errs.add(base+".unmounted", fmt.Errorf("invalid policy %q: want %q or %q", v.Unmounted, UnmountedSkip, UnmountedMount))
	}
	if v.Concurrency < 0 || v.Concurrency > 64 {
		errs.add(base+".concurrency", fmt.Errorf("is %d, want 1 to 64 (0: the default, %d)", v.Concurrency, DefaultVolumeConcurrency))
	}
	if r := v.Retries; r != nil && (*r < 0 || *r > 20) {
		errs.add(base+".retries", fmt.Errorf("is %d, want 0 to 20", *r))
	}
	if p := v.Agent.Port; p < 0 || p > 65535 {
		errs.add(base+".agent.port", fmt.Errorf("is %d, want 1 to 65535", p))
	}
	switch v.Agent.Address {
	case "", AgentAddressNodeIP, AgentAddressExternalIP:
	default:
		errs.add(base+".agent.address", fmt.Errorf("invalid address %q: want %q or %q", v.Agent.Address, AgentAddressNodeIP, AgentAddressExternalIP))
	}
}

// VolumeSparse reports whether copies keep sparse files sparse:
// spec.volumes.sparse, true when unset.
func (c *SyncConfig) VolumeSparse() bool {
	return c.Spec.Volumes.Sparse == nil || *c.Spec.Volumes.Sparse
}
