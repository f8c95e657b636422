package policies

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InitOptions are the choices `dr-syncer init` takes from its flags.
type InitOptions struct {
	// Name is metadata.name; default "<source>-to-<target>".
	Name           string
	Source, Target string
	// NamespaceMap maps namespaces by name (Target "" keeps the name). When
	// empty, the file selects the namespaces labelled
	// dr-syncer.io/replicate=true instead.
	NamespaceMap []NameMapping
	// StorageClassMap renames PVC storage classes.
	StorageClassMap []NameMapping
	// Recipients are age recipients for Secrets; when empty, the file sets
	// secrets mode exclude, and says how to switch to encrypt.
	Recipients []string
}

// replicateLabel is the namespace label InitFile selects on when no namespace
// is mapped by name.
const replicateLabel = "dr-syncer.io/replicate"

// InitFile renders a commented dr-syncer.yaml for `dr-syncer init`: every
// section present with a comment saying what it does and its default, and
// commented-out examples of the optional ones. The options are validated
// first, as Decode would validate the file.
func InitFile(opts InitOptions) ([]byte, error) {
	c := opts.config()
	var errs fieldErrors
	for _, e := range c.validate() {
		// A default metadata.name is made of the cluster names, which are
		// checked themselves.
		if e.Field != "metadata.name" || opts.Name != "" {
			errs = append(errs, e)
		}
	}
	if err := errs.join(); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName, err)
	}
	var w initWriter
	w.line(0, "# dr-syncer.yaml: what is replicated from the source cluster to the DR target, and how.")
	w.line(0, "# Reference: go doc github.com/dr-syncer/dr-syncer/policies. Fields left out take")
	w.line(0, "# their defaults; an unknown or misspelt field is an error.")
	w.field(0, "apiVersion", c.APIVersion)
	w.field(0, "kind", c.Kind)
	w.line(0, "metadata:")
	w.field(1, "name", c.Metadata.Name)
	w.line(0, "spec:")

	w.line(1, "# The clusters, by name: the names are directories of this repository")
	w.line(1, "# (snapshots/<source>/, overlays/<target>/). How to reach the clusters")
	w.line(1, "# (kubeconfigs, credentials) is never written here.")
	w.line(1, "source:")
	w.field(2, "name", c.Spec.Source.Name)
	w.line(1, "target:")
	w.field(2, "name", c.Spec.Target.Name)

	w.blank()
	w.line(1, "# The namespaces replicated: at least one mapping. A mapping by name copies")
	w.line(1, "# the source namespace into the target one (target defaults to the same")
	w.line(1, "# name); a mapping by label selector copies every matching source namespace")
	w.line(1, "# into a namespace of the same name. Two mappings may not share a target.")
	w.line(1, "namespaces:")
	for _, m := range c.Spec.Namespaces {
		if m.Selector != nil {
			w.line(2, "- selector:")
			w.line(4, "matchLabels:")
			w.field(5, replicateLabel, "true")
			continue
		}
		w.field(2, "- source", m.Source)
		if m.Target != m.Source {
			w.field(3, "target", m.Target)
		}
	}
	if len(opts.NamespaceMap) > 0 {
		w.line(2, "# - selector:")
		w.line(2, "#     matchLabels:")
		w.line(2, "#       "+replicateLabel+": \"true\"")
	} else {
		w.line(2, "# - source: shop")
		w.line(2, "#   target: shop-dr")
	}

	w.blank()
	w.line(1, "# The kinds and objects taken. By default: every listable kind in the mapped")
	w.line(1, "# namespaces, plus the Namespaces and CustomResourceDefinitions, except the")
	w.line(1, "# default exclusions (events, leases, controller-owned Pods and ReplicaSets,")
	w.line(1, "# service-account tokens, ...; see the package documentation). An object")
	w.line(1, "# labelled "+IgnoreLabel+"=true is never taken.")
	w.line(1, "resources:")
	w.line(2, "# include:                   # only these kinds (default: all)")
	w.line(2, "#   - kind: ConfigMap")
	w.line(2, "#   - group: apps")
	w.line(2, "#     kind: Deployment")
	w.line(2, "# exclude:                   # never these kinds")
	w.line(2, "#   - group: batch")
	w.line(2, "#     kind: CronJob")
	w.line(2, "# excludeObjects:            # single objects: every field given must match")
	w.line(2, "#   - kind: {kind: ConfigMap}")
	w.line(2, "#     name: \"*-cache\"         # glob over the name; namespace: a glob too")
	w.line(2, "#   - selector:")
	w.line(2, "#       matchLabels:")
	w.line(2, "#         app.kubernetes.io/part-of: scratch")
	w.line(2, "# disableDefaultExclusions:  # take what a default exclusion leaves out, by ID")
	w.line(2, "#   - default-service-account")

	w.blank()
	w.line(1, "# Secrets never reach the repository in plaintext. mode: encrypt (the")
	w.line(1, "# default) stores their data encrypted to the age recipients (public keys,")
	w.line(1, "# age1...); mode: exclude leaves Secrets out.")
	w.line(1, "secrets:")
	if c.Spec.Secrets.Mode == SecretModeExclude {
		w.line(2, "# No recipients were given, so Secrets are left out. To replicate them, set")
		w.line(2, "# mode: encrypt and list recipients (age-keygen -y KEYFILE prints one).")
		w.field(2, "mode", string(c.Spec.Secrets.Mode))
		w.line(2, "# recipients:")
		w.line(2, "#   - age1...")
	} else {
		w.field(2, "mode", string(c.Spec.Secrets.Mode))
		w.line(2, "recipients:")
		for _, r := range c.Spec.Secrets.Recipients {
			w.item(3, r)
		}
	}

	w.blank()
	w.line(1, "# PVC storage classes renamed for the target (default: kept).")
	if len(c.Spec.StorageClasses) > 0 {
		w.line(1, "storageClasses:")
		for _, m := range c.Spec.StorageClasses {
			w.field(2, "- source", m.Source)
			w.field(3, "target", m.Target)
		}
	} else {
		w.line(1, "# storageClasses:")
		w.line(1, "#   - source: fast-ssd")
		w.line(1, "#     target: standard")
	}
	w.line(1, "# PVC access modes renamed for the target (default: kept).")
	w.line(1, "# accessModes:")
	w.line(1, "#   - source: ReadWriteOnce")
	w.line(1, "#     target: ReadWriteMany")

	w.blank()
	w.line(1, "# When snapshots are taken. manual (the default): on `dr-syncer sync`;")
	w.line(1, "# continuous: the source is watched and changes are committed within about")
	w.line(1, "# a second; scheduled: on a five-field cron schedule, in a time zone.")
	w.line(1, "replication:")
	w.field(2, "mode", string(c.Spec.Replication.Mode))
	w.line(2, "# mode: scheduled")
	w.line(2, "# schedule: \"0 */6 * * *\"    # minute hour day-of-month month day-of-week")
	w.line(2, "# timeZone: Europe/Berlin    # an IANA name; default UTC")

	w.blank()
	w.line(1, "# Review mode: snapshots are committed to their own branch, and the target")
	w.line(1, "# follows main; a person merges the snapshot branch (a pull request) and only")
	w.line(1, "# then is the change applied. `dr-syncer status` counts the commits waiting.")
	w.line(1, "# review:")
	w.line(1, "#   enabled: true")
	w.line(1, "#   branch: snapshots/"+c.Spec.Source.Name+"    # the default")

	w.blank()
	w.line(1, "# PVC data: after each applied commit, the data of every replicated claim is")
	w.line(1, "# pulled with rsync over SSH from the agent on the source node that mounts it.")
	w.line(1, "# A claim labelled dr-syncer.io/volume-sync=false is never copied.")
	w.line(1, "# volumes:")
	w.line(1, "#   disabled: false")
	w.line(1, "#   selector: {matchLabels: {backup: \"true\"}}   # default: every claim")
	w.line(1, "#   unmounted: Skip     # or Mount: a temporary read-only pod on the source")
	w.line(1, "#   concurrency: 2")
	w.line(1, "#   retries: 3")
	w.line(1, "#   inPlace: false      # true: faster deltas, half-written files if a copy fails")
	w.line(1, "#   sparse: true        # false: faster full copies of data without holes")
	w.line(1, "#   agent: {port: 2222, address: NodeIP}   # or ExternalIP")
	return []byte(w.String()), nil
}

// config is the SyncConfig InitFile writes, defaulted.
func (opts InitOptions) config() *SyncConfig {
	name := opts.Name
	if name == "" {
		name = opts.Source + "-to-" + opts.Target
	}
	c := &SyncConfig{
		Metadata: Metadata{Name: name},
		Spec: Spec{
			Source:         ClusterRef{Name: opts.Source},
			Target:         ClusterRef{Name: opts.Target},
			StorageClasses: opts.StorageClassMap,
			Secrets:        Secrets{Recipients: opts.Recipients},
		},
	}
	for _, m := range opts.NamespaceMap {
		c.Spec.Namespaces = append(c.Spec.Namespaces, NamespaceMapping{Source: m.Source, Target: m.Target})
	}
	if len(opts.NamespaceMap) == 0 {
		c.Spec.Namespaces = []NamespaceMapping{{Selector: &metav1.LabelSelector{
			MatchLabels: map[string]string{replicateLabel: "true"},
		}}}
	}
	if len(opts.Recipients) == 0 {
		c.Spec.Secrets.Mode = SecretModeExclude
	}
	c.Default()
	return c
}

type initWriter struct{ strings.Builder }

func (w *initWriter) line(indent int, s string) {
	w.WriteString(strings.Repeat("  ", indent) + s + "\n")
}

func (w *initWriter) blank() { w.WriteString("\n") }

func (w *initWriter) field(indent int, key, value string) {
	w.line(indent, key+": "+yamlScalar(value))
}

func (w *initWriter) item(indent int, value string) {
	w.line(indent, "- "+yamlScalar(value))
}

// yamlScalar writes a string as YAML would, quoted when it would otherwise
// read as something else ("true", "0755", "a: b").
func yamlScalar(s string) string {
	out, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}
