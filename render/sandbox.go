package render

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// The sandbox: before kustomize sees anything, every kustomization that the
// overlay reaches is read from the commit and checked here. kustomize itself
// would fetch a URL over HTTP, run `git clone` for a remote base, and run
// helm or a plugin when asked to; the in-memory filesystem alone does not
// stop any of that. So every field that names a file is checked (no URL, no
// absolute path, nothing outside the repository, only what the commit
// holds), and what would run a program is refused. The checks are by field
// of types.Kustomization (kustomizationFields; a test fails when kustomize
// adds a field this table does not know) and of the builtin plugin
// configurations (pluginPathKeys).

// fieldRule says what a field of a kustomization does in render.
type fieldRule int

const (
	// local fields change each object on its own: a partitioned build
	// gives what one build gives.
	local fieldRule = iota
	// whole fields relate objects to each other (renames that references
	// follow, replacements, vars...): such an overlay is built in one piece.
	whole
	// refused fields run programs or keep process-wide state.
	refused
)

// kustomizationFields classifies every field of types.Kustomization by its
// JSON name.
var kustomizationFields = map[string]fieldRule{
	"apiVersion": local, "kind": local, "metadata": local,
	"resources": local, "bases": local, "components": local,
	"namespace": local, "commonLabels": local, "labels": local, "commonAnnotations": local,
	"images": local, "imageTags": local,
	"patches": local, "patchesJson6902": local, "patchesStrategicMerge": local,
	"replicas":           local,
	"configMapGenerator": local, "secretGenerator": local, "generatorOptions": local,
	"transformers": local, // builtin ones that are local; checked one by one
	"sortOptions":  local, "buildMetadata": local,

	"namePrefix": whole, "nameSuffix": whole, // references follow the new names
	"replacements": whole, "vars": whole,
	"crds": whole, "configurations": whole, // change what references are followed
	"generators": whole, "validators": whole,

	"openapi":                     refused, // kustomize keeps the schema in process-wide state
	"helmGlobals":                 refused, // helm is a program
	"helmCharts":                  refused,
	"helmChartInflationGenerator": refused,
}

// localTransformers are the builtin transformers that change each object on
// its own (a transformers: entry of another kind makes the build whole).
var localTransformers = map[string]bool{
	"NamespaceTransformer": true, "LabelTransformer": true,
	"AnnotationsTransformer": true, "ImageTagTransformer": true,
}

// pluginPathKeys are the fields of builtin plugin configurations that name
// files (PatchTransformer path, ConfigMapGenerator files and envs, ...),
// wherever they appear in the configuration.
var pluginPathKeys = map[string]bool{
	"path": true, "paths": true, "files": true, "envs": true, "env": true, "envSource": true, "envSources": true,
}

// kustomizationNames are the file names kustomize recognises.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// plan is what the walk learnt: every file a build reads, and whether (and
// how) the build can be partitioned.
type plan struct {
	root     string // overlays/<target>
	rootFile string // its kustomization file
	// files are the files of the commit that kustomize reads, besides
	// snapshot objects and the derived kustomizations.
	files map[string]bool
	// routedFiles are the files only read by routed patches: a chunk needs
	// those of its own patches.
	routedFiles map[string]bool
	// snapshotRefs are the derived directories the overlay reaches.
	snapshotRefs map[string]bool
	// snapshotFiles are snapshot object files the overlay names directly.
	snapshotFiles map[string]bool
	pins          []pin
	// kusts are the kustomizations the walk read, by directory.
	kusts map[string]*kustFile
	// whole says why the build cannot be partitioned ("" when it can).
	whole string
}

// pin names objects that every chunk holds: the target of a patch or
// replica count that fails when its object is missing. Kind "" is any kind.
type pin struct{ kind, name string }

// kustFile is one kustomization the walk read.
type kustFile struct {
	file, dir string
	raw       []byte
	// children are its resources and bases entries that are directories.
	children []childRef
	// unit is set when its resources are snapshot directories only.
	unit *routedUnit

	once      sync.Once // decodes raw for a chunk's cuts, shared by the chunks
	decoded   map[string]any
	decodeErr error
}

type childRef struct {
	field string // resources or bases
	index int
	dir   string
}

// routedUnit is a kustomization whose resources are snapshot directories
// only: its patches see the objects as in the snapshot, so a chunk needs
// only the patches whose target can be one of its objects, and a chunk
// with none of its objects does not need it at all.
type routedUnit struct {
	dirs    []string // the snapshot directories it lists
	patches []*routedPatch
}

type routedPatch struct {
	field string // patches or patchesJson6902
	index int
	file  string // the patch file, "" for an inline patch
	sel   *types.Selector
	// objects are the snapshot object files the patch may apply to; nil:
	// every chunk keeps the patch.
	objects map[string]bool
}

type walker struct {
	t    *repoTree
	snap *snapshot
	p    *plan
	seen map[string]bool
	errs []error
}

// walk checks the overlay rooted at dir and everything it reaches.
func walk(t *repoTree, snap *snapshot, root string) (*plan, error) {
	w := &walker{t: t, snap: snap, seen: map[string]bool{}, p: &plan{
		root: root, files: map[string]bool{}, routedFiles: map[string]bool{},
		snapshotRefs: map[string]bool{}, snapshotFiles: map[string]bool{}, kusts: map[string]*kustFile{},
	}}
	file, err := w.kustomizationFile(root)
	if err != nil {
		return nil, err
	}
	w.p.rootFile = file
	w.dir(root, "", "")
	if len(w.errs) > 0 {
		return nil, joinErrors(w.errs)
	}
	// A patch file is routed only if no other field reads it.
	for f := range w.p.routedFiles {
		if w.p.files[f] {
			delete(w.p.routedFiles, f)
		}
	}
	return w.p, nil
}

func (w *walker) fail(format string, args ...any) {
	w.errs = append(w.errs, fmt.Errorf(format, args...))
}

func (w *walker) notWhole(format string, args ...any) {
	if w.p.whole == "" {
		w.p.whole = fmt.Sprintf(format, args...)
	}
}

// kustomizationFile finds the one kustomization file of dir.
func (w *walker) kustomizationFile(dir string) (string, error) {
	var found []string
	for _, n := range kustomizationNames {
		if w.t.isFile(dir + "/" + n) {
			found = append(found, dir+"/"+n)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%s/kustomization.yaml: not in the commit", dir)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("%s: more than one kustomization file (%s)", dir, strings.Join(found, ", "))
	}
}

// dir checks the kustomization in directory dir, reached from field of
// file (both "" for the root).
func (w *walker) dir(dir, from, field string) {
	if w.seen[dir] {
		return
	}
	w.seen[dir] = true
	if w.snap.isDerived(dir) {
		w.p.snapshotRefs[dir] = true
		return
	}
	file, err := w.kustomizationFile(dir)
	if err != nil {
		if from != "" {
			err = fmt.Errorf("%s: %s: %w", from, field, err)
		}
		w.errs = append(w.errs, err)
		return
	}
	if w.snap.contains(dir) {
		w.fail("%s: the snapshot holds no kustomization: render derives one for snapshots/<source>/ and each of its directories", file)
		return
	}
	raw, err := w.t.read(file)
	if err != nil {
		w.errs = append(w.errs, err)
		return
	}
	parsed, err := w.t.kustomization(file)
	if err != nil {
		w.fail("%s: %v", file, err)
		return
	}
	k := parsed.k
	for _, name := range parsed.fields {
		switch rule, known := kustomizationFields[name]; {
		case !known:
			w.fail("%s: %s: a field render does not know", file, name)
		case rule == refused:
			w.fail("%s: %s: %s", file, name, refusedWhy(name))
		case rule == whole:
			w.notWhole("%s: %s", file, name)
		}
	}
	kf := &kustFile{file: file, dir: dir, raw: raw}
	w.p.kusts[dir] = kf
	w.check(kf, k)
}

func refusedWhy(field string) string {
	if field == "openapi" {
		return "a custom OpenAPI schema is not supported: kustomize keeps it in process-wide state, so one build would change the next"
	}
	return "Helm charts are not rendered: render runs no programs"
}

// check checks every field of k that names a file or directory, and notes
// what partitioning needs.
func (w *walker) check(kf *kustFile, k *types.Kustomization) {
	dir, file := kf.dir, kf.file
	var snapshotDirsOnly = len(k.Resources)+len(k.Bases) > 0
	var unitDirs []string
	for _, f := range []struct {
		field string
		list  []string
	}{{"resources", k.Resources}, {"bases", k.Bases}} {
		field := f.field
		for i, e := range f.list {
			p, ok := w.ref(dir, file, fmt.Sprintf("%s[%d]", field, i), e)
			if !ok {
				snapshotDirsOnly = false
				continue
			}
			switch {
			case w.t.isFile(p):
				w.resourceFile(p)
				snapshotDirsOnly = false
			case w.snap.isDerived(p) || w.t.isDir(p):
				kf.children = append(kf.children, childRef{field: field, index: i, dir: p})
				if w.snap.isDerived(p) {
					unitDirs = append(unitDirs, p)
				} else {
					snapshotDirsOnly = false
				}
				w.dir(p, file, fmt.Sprintf("%s[%d]", field, i))
			default:
				w.fail("%s: %s[%d]: %s: not in the commit", file, field, i, e)
				snapshotDirsOnly = false
			}
		}
	}
	for i, e := range k.Components {
		if p, ok := w.ref(dir, file, fmt.Sprintf("components[%d]", i), e); ok {
			if !w.t.isDir(p) || w.snap.isDerived(p) {
				w.fail("%s: components[%d]: %s: not a directory of the commit", file, i, e)
				continue
			}
			w.dir(p, file, fmt.Sprintf("components[%d]", i))
		}
	}
	for i, e := range k.Crds {
		w.file(dir, file, fmt.Sprintf("crds[%d]", i), e)
	}
	for i, e := range k.Configurations {
		w.file(dir, file, fmt.Sprintf("configurations[%d]", i), e)
	}
	for i, r := range k.Replacements {
		if r.Path != "" {
			w.file(dir, file, fmt.Sprintf("replacements[%d].path", i), r.Path)
		}
	}
	for i, g := range k.ConfigMapGenerator {
		w.generatorSources(dir, file, fmt.Sprintf("configMapGenerator[%d]", i), g.KvPairSources)
	}
	for i, g := range k.SecretGenerator {
		w.generatorSources(dir, file, fmt.Sprintf("secretGenerator[%d]", i), g.KvPairSources)
	}
	for _, f := range []struct {
		field string
		list  []string
	}{{"generators", k.Generators}, {"transformers", k.Transformers}, {"validators", k.Validators}} {
		for i, e := range f.list {
			w.plugin(dir, file, fmt.Sprintf("%s[%d]", f.field, i), f.field, e)
		}
	}
	for i, e := range k.PatchesStrategicMerge {
		w.strategicMerge(dir, file, fmt.Sprintf("patchesStrategicMerge[%d]", i), string(e))
	}
	for _, r := range k.Replicas {
		w.p.pins = append(w.p.pins, pin{name: r.Name})
	}

	// A kustomization whose resources are snapshot directories only, and
	// that adds no object of its own before its patches run, sees the
	// objects as in the snapshot: its targeted patches can be routed.
	routable := snapshotDirsOnly && len(k.Components) == 0 && len(k.ConfigMapGenerator) == 0 &&
		len(k.SecretGenerator) == 0 && len(k.Generators) == 0 && len(k.PatchesStrategicMerge) == 0
	var unit *routedUnit
	if routable {
		unit = &routedUnit{dirs: unitDirs}
		kf.unit = unit
	}
	for i, pt := range k.Patches {
		w.patch(dir, file, "patches", i, pt, unit)
	}
	for i, pt := range k.PatchesJson6902 {
		w.patch(dir, file, "patchesJson6902", i, pt, unit)
	}
}

// ref checks one entry naming a file or directory and returns its path
// from the repository root.
func (w *walker) ref(dir, file, field, e string) (string, bool) {
	switch {
	case e == "":
		w.fail("%s: %s: empty path", file, field)
	case isRemote(e):
		w.fail("%s: %s: %s: remote resources are refused: render builds from the commit only", file, field, e)
	case path.IsAbs(e) || strings.HasPrefix(e, `\`) || (len(e) > 1 && e[1] == ':'):
		w.fail("%s: %s: %s: an absolute path is refused: paths are relative to the kustomization", file, field, e)
	default:
		p := path.Clean(dir + "/" + e)
		if p == ".." || strings.HasPrefix(p, "../") {
			w.fail("%s: %s: %s: outside the repository", file, field, e)
			return "", false
		}
		if p == "." {
			p = ""
		}
		return p, true
	}
	return "", false
}

// remote matches (more than) what kustomize would fetch or clone rather
// than read: anything with "://", the schemes and the git:: prefix it
// knows, an scp-like user@host:path, and github.com/... without a scheme.
var remote = regexp.MustCompile(`(?i)://|^(git::|https?:|ssh:|file:|[a-z][a-z0-9-]*@|github\.com[/:])`)

func isRemote(e string) bool { return remote.MatchString(strings.TrimSpace(e)) }

// file checks an entry that must name a file of the commit.
func (w *walker) file(dir, file, field, e string) (string, bool) {
	p, ok := w.ref(dir, file, field, e)
	if !ok {
		return "", false
	}
	if !w.t.isFile(p) {
		w.fail("%s: %s: %s: not a file of the commit", file, field, e)
		return "", false
	}
	w.p.files[p] = true
	return p, true
}

// resourceFile notes a file listed as a resource.
func (w *walker) resourceFile(p string) {
	if w.snap.isObject(p) {
		w.p.snapshotFiles[p] = true
		return
	}
	w.p.files[p] = true
}

func (w *walker) generatorSources(dir, file, field string, src types.KvPairSources) {
	var paths []string
	for _, f := range src.FileSources {
		if _, p, ok := strings.Cut(f, "="); ok {
			f = p
		}
		paths = append(paths, f)
	}
	paths = append(paths, src.EnvSources...)
	if src.EnvSource != "" {
		paths = append(paths, src.EnvSource)
	}
	for _, e := range paths {
		p, ok := w.ref(dir, file, field, e)
		if !ok {
			continue
		}
		switch {
		case w.t.isFile(p):
			w.p.files[p] = true
		case w.t.isDir(p) && !w.snap.contains(p) && !w.snap.isDerived(p):
			// kustomize reads every file of a directory source.
			for _, f := range w.t.under(p) {
				w.p.files[f] = true
			}
		default:
			w.fail("%s: %s: %s: not in the commit", file, field, e)
		}
	}
}

// plugin checks a generators, transformers or validators entry: inline
// configurations or a file of them. A directory (a kustomization whose
// output would be the configurations) is refused: its configurations cannot
// be checked before they run.
func (w *walker) plugin(dir, file, field, kind, e string) {
	label := field
	docs, inline := parseObjects(e)
	if !inline {
		p, ok := w.ref(dir, file, field, e)
		if !ok {
			return
		}
		if !w.t.isFile(p) {
			if w.t.isDir(p) {
				w.fail("%s: %s: %s: plugin configurations made by a kustomization are not supported: render checks every configuration before it runs", file, label, e)
			} else {
				w.fail("%s: %s: %s: not in the commit", file, label, e)
			}
			return
		}
		w.p.files[p] = true
		raw, err := w.t.read(p)
		if err != nil {
			w.errs = append(w.errs, err)
			return
		}
		label += ": " + p
		if docs, inline = parseObjects(string(raw)); !inline {
			w.fail("%s: %s: not a list of plugin configurations", file, label)
			return
		}
	}
	for _, d := range docs {
		apiVersion, _ := d["apiVersion"].(string)
		k, _ := d["kind"].(string)
		if apiVersion != "builtin" {
			w.fail("%s: %s: %s (apiVersion %q) is not a builtin plugin: plugins, exec and KRM functions are disabled", file, label, k, apiVersion)
			continue
		}
		if k == "HelmChartInflationGenerator" {
			w.fail("%s: %s: %s: Helm charts are not rendered: render runs no programs", file, label, k)
			continue
		}
		if kind == "transformers" && !localTransformers[k] {
			w.notWhole("%s: %s: %s", file, label, k)
		}
		w.pluginPaths(dir, file, label, d)
	}
}

// pluginPaths checks the fields of a plugin configuration that name files.
// Paths in a configuration are relative to the kustomization that lists it.
func (w *walker) pluginPaths(dir, file, label string, v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, key := range slices.Sorted(maps.Keys(v)) {
			if !pluginPathKeys[key] {
				w.pluginPaths(dir, file, label, v[key])
				continue
			}
			var list []string
			switch x := v[key].(type) {
			case string:
				list = []string{x}
			case []any:
				for _, e := range x {
					if s, ok := e.(string); ok {
						list = append(list, s)
					}
				}
			}
			for _, e := range list {
				if _, p, ok := strings.Cut(e, "="); ok && key == "files" {
					e = p
				}
				if p, ok := w.ref(dir, file, label+": "+key, e); ok {
					if !w.t.isFile(p) {
						w.fail("%s: %s: %s: %s: not a file of the commit", file, label, key, e)
						continue
					}
					w.p.files[p] = true
				}
			}
		}
	case []any:
		for _, e := range v {
			w.pluginPaths(dir, file, label, e)
		}
	}
}

// strategicMerge checks a patchesStrategicMerge entry: inline patches or a
// file of them (kustomize tries the first, then the second). Their targets
// are pinned: a chunk without one would fail.
func (w *walker) strategicMerge(dir, file, field, e string) {
	docs, inline := parseObjects(e)
	if !inline {
		p, ok := w.file(dir, file, field, e)
		if !ok {
			return
		}
		raw, err := w.t.read(p)
		if err != nil {
			w.errs = append(w.errs, err)
			return
		}
		docs, _ = parseObjects(string(raw))
	}
	w.pinDocs(docs)
}

func (w *walker) pinDocs(docs []map[string]any) {
	for _, d := range docs {
		k, _ := d["kind"].(string)
		meta, _ := d["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		w.p.pins = append(w.p.pins, pin{kind: k, name: name})
	}
}

// patch checks a patches or patchesJson6902 entry. Of a routable unit, a
// patch with a target is routed to the chunks holding objects it may
// select; any other untargeted patch pins its target.
func (w *walker) patch(dir, file, field string, i int, pt types.Patch, unit *routedUnit) {
	// Made for a message only: a walk goes through every patch of the
	// overlay at every build (one per object with a generated patch).
	where := func() string { return fmt.Sprintf("%s: %s[%d]", file, field, i) }
	text := pt.Patch
	var p string
	var facts *patchFacts
	if pt.Path != "" {
		var ok bool
		if p, ok = w.ref(dir, file, fmt.Sprintf("%s[%d].path", field, i), pt.Path); !ok {
			return
		}
		if !w.t.isFile(p) {
			w.fail("%s.path: %s: not a file of the commit", where(), pt.Path)
			return
		}
		var err error
		if facts, err = w.t.patch(p); err != nil {
			w.errs = append(w.errs, err)
			return
		}
	}
	if facts == nil {
		facts = parsePatch(text)
	}
	if pt.Options != nil && (pt.Options.AllowNameChange || pt.Options.AllowKindChange) {
		w.notWhole("%s: options", where())
	}
	if facts.renames && (pt.Target == nil || pt.Target.Kind != "Namespace") {
		w.notWhole("%s: renames or moves objects", where())
	}
	if pt.Target == nil {
		if facts.isObjects {
			w.pinDocs(facts.docs)
		}
		if p != "" {
			w.p.files[p] = true
		}
		return
	}
	if unit == nil {
		if p != "" {
			w.p.files[p] = true
		}
		return
	}
	rp := &routedPatch{field: field, index: i, file: p, sel: pt.Target}
	unit.patches = append(unit.patches, rp)
	if p != "" {
		w.p.routedFiles[p] = true
	}
}

// parsedKustomization is a kustomization file decoded, and the names of the
// fields it sets, sorted. Read only: the cache shares it between builds.
type parsedKustomization struct {
	k      *types.Kustomization
	fields []string
}

func parseKustomization(raw []byte) (*parsedKustomization, error) {
	k := &types.Kustomization{}
	if err := k.Unmarshal(raw); err != nil {
		return nil, err
	}
	var present map[string]any
	if err := yaml.Unmarshal(raw, &present); err != nil {
		return nil, err
	}
	return &parsedKustomization{k: k, fields: slices.Sorted(maps.Keys(present))}, nil
}

// patchFacts is what the walk learns of a patch's text.
type patchFacts struct {
	docs      []map[string]any // its objects, when isObjects (read only)
	isObjects bool
	renames   bool // a JSON patch that renames or moves objects
}

func parsePatch(text string) *patchFacts {
	f := &patchFacts{}
	f.docs, f.isObjects = parseObjects(text)
	if !f.isObjects {
		if ops, ok := parseJSONPatch(text); ok {
			f.renames = renames(ops)
		}
	}
	return f
}

// parseObjects reads s as YAML documents that are all mappings; ok is false
// when s is not that (a path, or a JSON patch).
func parseObjects(s string) (docs []map[string]any, ok bool) {
	if !strings.Contains(s, "\n") && !strings.HasPrefix(strings.TrimSpace(s), "{") {
		return nil, false
	}
	for _, d := range splitDocuments(s) {
		if strings.TrimSpace(stripComments(d)) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil || m == nil {
			return nil, false
		}
		docs = append(docs, m)
	}
	return docs, len(docs) > 0
}

func parseJSONPatch(s string) ([]map[string]any, bool) {
	var ops []map[string]any
	if err := yaml.Unmarshal([]byte(s), &ops); err != nil {
		return nil, false
	}
	return ops, true
}

// renames says whether JSON patch operations change what identifies an
// object (apiVersion, kind, name, namespace): references to it would have
// to follow, across chunks.
func renames(ops []map[string]any) bool {
	for _, op := range ops {
		if op["op"] == "test" {
			continue
		}
		for _, key := range []string{"path", "from"} {
			p, _ := op[key].(string)
			if key == "from" && p == "" {
				continue
			}
			for _, id := range []string{"", "/apiVersion", "/kind", "/metadata", "/metadata/name", "/metadata/namespace"} {
				if p == id || (id != "" && strings.HasPrefix(id, p+"/")) {
					return true
				}
			}
		}
	}
	return false
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

func splitDocuments(s string) []string { return documentSeparator.Split(s, -1) }

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
