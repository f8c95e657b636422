package render

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
)

// Annotations the generated overlay sets on the target.
const (
	// OriginalReplicasAnnotation holds the replicas a Deployment or
	// StatefulSet has on the source, as a decimal string, while it waits on
	// the target at 0 replicas.
	OriginalReplicasAnnotation = "dr-syncer.io/original-replicas"
	// OriginalSuspendAnnotation holds spec.suspend of a CronJob on the
	// source ("true" or "false") while it is suspended on the target.
	OriginalSuspendAnnotation = "dr-syncer.io/original-suspend"
)

const (
	overlaysDir      = "overlays/"
	generatedDir     = "generated"
	clusterDir       = "_cluster" // as in gitstore: not a DNS label, no namespace can collide
	namespaceFile    = "namespace.yaml"
	nameLabel        = "kubernetes.io/metadata.name"
	betaStorageClass = "volume.beta.kubernetes.io/storage-class"
	kustomizationAPI = "kustomize.config.k8s.io/v1beta1"
)

// GeneratedPrefix returns "overlays/<target>/generated/": the subtree that
// Generate owns, which the snapshot stage replaces as a whole.
func GeneratedPrefix(cfg *policies.SyncConfig) string {
	return overlaysDir + cfg.Spec.Target.Name + "/" + generatedDir + "/"
}

// Generate returns the files of overlays/<target>/generated/ for the mapping
// cfg and the cleaned source objects of a snapshot, keyed by their path from
// the repository root. The result depends on nothing else: the same mapping
// and objects give the same bytes.
//
// The objects are the snapshot's (Namespaces included): their namespaces are
// the units of the overlay, and the per-object patches (DR standby, storage
// classes, access modes, namespace references) are computed from their
// fields. See the package documentation for the layout.
func Generate(cfg *policies.SyncConfig, objects []*unstructured.Unstructured) (map[string][]byte, error) {
	if err := checkNames(cfg); err != nil {
		return nil, err
	}
	g := generator{cfg: cfg, source: cfg.Spec.Source.Name, target: cfg.Spec.Target.Name}
	if err := g.mapNamespaces(objects); err != nil {
		return nil, err
	}
	g.storageClasses = nameMap(cfg.Spec.StorageClasses)
	g.accessModes = nameMap(cfg.Spec.AccessModes)

	units := map[string]*unit{} // by directory under generated/: a source namespace or _cluster
	seen := map[string]bool{}
	for _, o := range objects {
		id := objectID(o)
		file, err := gitstore.ObjectPath(g.source, id)
		if err != nil {
			return nil, err
		}
		if seen[file] {
			return nil, fmt.Errorf("%s: given twice", describeID(id))
		}
		seen[file] = true
		dir := cmp.Or(id.Namespace, clusterDir)
		u := units[dir]
		if u == nil {
			u = &unit{dir: dir}
			units[dir] = u
		}
		p := g.patch(o)
		if len(p.sections) == 0 {
			continue
		}
		p.file = strings.TrimPrefix(file, gitstore.SnapshotPrefix(g.source)+dir+"/")
		u.patches = append(u.patches, p)
	}

	files := map[string][]byte{}
	prefix := GeneratedPrefix(cfg)
	dirs := slices.Sorted(maps.Keys(units))
	for _, dir := range dirs {
		u := units[dir]
		slices.SortFunc(u.patches, func(a, b *objectPatch) int { return strings.Compare(a.file, b.file) })
		for _, p := range u.patches {
			files[prefix+dir+"/"+p.file] = p.render()
		}
		if dir == clusterDir {
			files[prefix+dir+"/kustomization.yaml"] = g.clusterKustomization(u)
			continue
		}
		dst := g.namespaces[dir]
		files[prefix+dir+"/kustomization.yaml"] = g.namespaceKustomization(u, dst)
		if dst != dir {
			files[prefix+dir+"/"+namespaceFile] = g.namespaceTransformer(dir, dst)
		}
	}
	files[prefix+"kustomization.yaml"] = g.rootKustomization(dirs)
	return files, nil
}

// standby says whether workloads wait on the target (Deployments and
// StatefulSets at 0 replicas, CronJobs suspended). Always on for now; the
// mapping will get a field (spec.standby.disabled) to turn it off.
func standby(cfg *policies.SyncConfig) bool { return !cfg.Spec.Standby.Disabled }

func checkNames(cfg *policies.SyncConfig) error {
	for _, c := range []struct{ field, name string }{
		{"spec.source.name", cfg.Spec.Source.Name},
		{"spec.target.name", cfg.Spec.Target.Name},
	} {
		if errs := validation.IsDNS1123Label(c.name); len(errs) > 0 {
			return fmt.Errorf("%s: %s: %q: %s", policies.FileName, c.field, c.name, strings.Join(errs, "; "))
		}
	}
	return nil
}

type generator struct {
	cfg            *policies.SyncConfig
	source, target string
	// namespaces maps every source namespace of the snapshot to its target.
	namespaces     map[string]string
	storageClasses map[string]string
	accessModes    map[string]string
}

type unit struct {
	dir     string
	patches []*objectPatch
}

// mapNamespaces maps each namespace of the snapshot: the name of a Namespace
// object, or the namespace of a namespaced object. A namespace whose
// Namespace object is not in the snapshot (its kind excluded) is mapped by
// name, and otherwise kept: only a selector, which maps to the same name,
// can have taken it.
func (g *generator) mapNamespaces(objects []*unstructured.Unstructured) error {
	g.namespaces = map[string]string{}
	var errs []error
	for _, o := range objects {
		if isKind(o, "", "Namespace") {
			dst, ok := g.cfg.TargetNamespace(o.GetName(), o.GetLabels())
			if !ok {
				errs = append(errs, fmt.Errorf("Namespace/%s: not mapped by %s: the snapshot and the mapping disagree", o.GetName(), policies.FileName))
				continue
			}
			g.namespaces[o.GetName()] = dst
		}
	}
	for _, o := range objects {
		ns := o.GetNamespace()
		if ns == "" {
			continue
		}
		if _, ok := g.namespaces[ns]; ok {
			continue
		}
		dst, ok := g.cfg.TargetNamespace(ns, nil)
		if !ok {
			dst = ns
		}
		g.namespaces[ns] = dst
	}
	return errors.Join(errs...)
}

func nameMap(list []policies.NameMapping) map[string]string {
	m := make(map[string]string, len(list))
	for _, n := range list {
		m[n.Source] = n.Target
	}
	return m
}

// moved returns the target of namespace ns when it is a source namespace
// that the mapping renames; ok is false for every other namespace (not in
// the snapshot, or kept under its name).
func (g *generator) moved(ns string) (string, bool) {
	dst, ok := g.namespaces[ns]
	return dst, ok && dst != ns
}

const header = "# Generated by dr-syncer from dr-syncer.yaml and the snapshot, at every\n" +
	"# snapshot: do not edit (your changes would be overwritten). Your own\n" +
	"# changes go to the overlay's kustomization.yaml.\n"

func (g *generator) rootKustomization(dirs []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# The snapshot of %s as %s runs it: namespaces, storage classes, access\n", g.source, g.target)
	b.WriteString("# modes and DR standby, from dr-syncer.yaml. One directory per source\n")
	b.WriteString("# namespace, and _cluster for the cluster-scoped objects.\n")
	b.WriteString(header)
	writeKustomizationHead(&b, len(dirs) == 0)
	for _, dir := range dirs {
		b.WriteString("- " + dir)
		switch dst := g.namespaces[dir]; {
		case dir == clusterDir:
			b.WriteString("  # Namespaces, CustomResourceDefinitions")
		case dst != dir:
			b.WriteString("  # → " + dst)
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

func (g *generator) namespaceKustomization(u *unit, dst string) []byte {
	var b strings.Builder
	if dst != u.dir {
		fmt.Fprintf(&b, "# Namespace %s of %s, as %s on %s.\n", u.dir, g.source, dst, g.target)
	} else {
		fmt.Fprintf(&b, "# Namespace %s of %s, under the same name on %s.\n", u.dir, g.source, g.target)
	}
	b.WriteString(header)
	writeKustomizationHead(&b, false)
	fmt.Fprintf(&b, "- ../../../../%s%s\n", gitstore.SnapshotPrefix(g.source), u.dir)
	writePatches(&b, u.patches)
	if dst != u.dir {
		b.WriteString("transformers:\n- " + namespaceFile + "\n")
	}
	return []byte(b.String())
}

func (g *generator) clusterKustomization(u *unit) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# The cluster-scoped objects of %s (Namespaces, CustomResourceDefinitions) on %s.\n", g.source, g.target)
	b.WriteString(header)
	writeKustomizationHead(&b, false)
	fmt.Fprintf(&b, "- ../../../../%s%s\n", gitstore.SnapshotPrefix(g.source), clusterDir)
	writePatches(&b, u.patches)
	return []byte(b.String())
}

func writeKustomizationHead(b *strings.Builder, empty bool) {
	b.WriteString("apiVersion: " + kustomizationAPI + "\nkind: Kustomization\n")
	if empty {
		// kustomize refuses a kustomization with nothing in it.
		b.WriteString("metadata:\n  name: empty\nresources: []\n")
		return
	}
	b.WriteString("resources:\n")
}

// writePatches lists the patches of a unit. Each targets one object by
// exact kind and name (the name quoted for kustomize's regular expressions);
// they apply before the namespace moves, to the objects as in the snapshot.
func writePatches(b *strings.Builder, patches []*objectPatch) {
	if len(patches) == 0 {
		return
	}
	b.WriteString("patches:\n")
	for _, p := range patches {
		fmt.Fprintf(b, "- path: %s\n  target: {", yamlString(p.file))
		if p.group != "" {
			fmt.Fprintf(b, "group: %s, ", yamlString(p.group))
		}
		fmt.Fprintf(b, "version: %s, kind: %s, ", yamlString(p.version), yamlString(p.id.Kind))
		if p.id.Namespace != "" {
			fmt.Fprintf(b, "namespace: %s, ", yamlString(regexp.QuoteMeta(p.id.Namespace)))
		}
		fmt.Fprintf(b, "name: %s}\n", yamlString(regexp.QuoteMeta(p.id.Name)))
	}
}

func (g *generator) namespaceTransformer(src, dst string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Moves every object of %s to %s. RoleBinding subjects are left alone\n", src, dst)
	b.WriteString("# here: the patches move the subjects of mapped namespaces, and only those.\n")
	b.WriteString(header)
	fmt.Fprintf(&b, "apiVersion: builtin\nkind: NamespaceTransformer\nmetadata:\n  name: %s\n  namespace: %s\n",
		yamlString(src+"-to-"+dst), yamlString(dst))
	b.WriteString("setRoleBindingSubjects: none\nunsetOnly: false\n")
	return []byte(b.String())
}

func objectID(o *unstructured.Unstructured) gitstore.ObjectID {
	gvk := o.GroupVersionKind()
	return gitstore.ObjectID{Group: gvk.Group, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}
}

// describeID gives an object as Kind/namespace/name (group.Kind outside the
// core group), the way errors name objects.
func describeID(id gitstore.ObjectID) string {
	s := id.Kind
	if id.Group != "" {
		s = id.Group + "." + id.Kind
	}
	if id.Namespace != "" {
		s += "/" + id.Namespace
	}
	return s + "/" + id.Name
}

func isKind(o *unstructured.Unstructured, group, kind string) bool {
	gvk := o.GroupVersionKind()
	return gvk.Group == group && gvk.Kind == kind
}

// plainScalar is what yamlString leaves unquoted: safe as a plain scalar in
// block and flow context, and not read as a number, boolean or null.
var plainScalar = regexp.MustCompile(`^[A-Za-z_./][A-Za-z0-9_./\\~-]*$`)

var yamlKeywords = map[string]bool{
	"true": true, "false": true, "yes": true, "no": true, "on": true, "off": true,
	"y": true, "n": true, "null": true, "~": true,
}

// yamlString writes s as a YAML scalar: plain when that reads back as the
// same string, double-quoted otherwise.
func yamlString(s string) string {
	if plainScalar.MatchString(s) && !yamlKeywords[strings.ToLower(s)] {
		return s
	}
	return jsonString(s)
}
