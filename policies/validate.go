package policies

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks every rule (see the package documentation) and returns
// all violations joined, each a *FieldError naming the field's path. Values
// left empty where a default exists count as that default, so a SyncConfig
// built in Go validates with or without Default.
func (c *SyncConfig) Validate() error {
	return c.validate().join()
}

func (c *SyncConfig) validate() fieldErrors {
	var errs fieldErrors
	if c.APIVersion != APIVersion {
		errs.add("apiVersion", fmt.Errorf("is %q, want %q", c.APIVersion, APIVersion))
	}
	if c.Kind != Kind {
		errs.add("kind", fmt.Errorf("is %q, want %q", c.Kind, Kind))
	}
	checkName(&errs, "metadata.name", "name", c.Metadata.Name, validation.IsDNS1123Subdomain)
	checkName(&errs, "spec.source.name", "cluster name", c.Spec.Source.Name, validation.IsDNS1123Label)
	checkName(&errs, "spec.target.name", "cluster name", c.Spec.Target.Name, validation.IsDNS1123Label)
	c.validateNamespaces(&errs)
	c.validateResources(&errs)
	c.validateSecrets(&errs)
	validateNameMappings(&errs, "spec.storageClasses", "storage class", c.Spec.StorageClasses, func(s string) []string {
		return validation.IsDNS1123Subdomain(s)
	})
	validateNameMappings(&errs, "spec.accessModes", "access mode", c.Spec.AccessModes, func(s string) []string {
		if slices.Contains(accessModes, corev1.PersistentVolumeAccessMode(s)) {
			return nil
		}
		return []string{fmt.Sprintf("want one of %s", quoteList(accessModes))}
	})
	c.validateReplication(&errs)
	c.validateApply(&errs)
	c.validateVolumes(&errs)
	c.validateReview(&errs)
	return errs
}

// followedBranch is the branch the target follows by default; review mode
// must commit snapshots elsewhere.
const followedBranch = "main"

func (c *SyncConfig) validateReview(errs *fieldErrors) {
	const base = "spec.review"
	r := c.Spec.Review
	if r.Branch == "" {
		return
	}
	if !r.Enabled {
		errs.addDep(fieldPath(base, "branch"), errors.New("is only used when enabled is true"), fieldPath(base, "enabled"))
		return
	}
	if err := checkBranchName(r.Branch); err != nil {
		errs.add(fieldPath(base, "branch"), err)
		return
	}
	if r.Branch == followedBranch {
		errs.add(fieldPath(base, "branch"), fmt.Errorf("is %q, the branch the target follows: snapshots would be applied without review", followedBranch))
	}
}

// checkBranchName applies git's rules for branch names (git
// check-ref-format), which policies checks without git.
func checkBranchName(b string) error {
	bad := func(why string) error { return fmt.Errorf("invalid branch name %q: %s", b, why) }
	switch {
	case strings.HasPrefix(b, "-"), strings.HasPrefix(b, "/"), strings.HasSuffix(b, "/"):
		return bad("starts with '-' or '/', or ends with '/'")
	case strings.HasPrefix(b, "refs/"):
		return bad(`give the branch name without "refs/heads/"`)
	case strings.HasSuffix(b, "."), strings.HasSuffix(b, ".lock"):
		return bad(`ends with "." or ".lock"`)
	case strings.Contains(b, ".."), strings.Contains(b, "//"), strings.Contains(b, "@{"), b == "@":
		return bad(`contains "..", "//" or "@{"`)
	}
	for _, seg := range strings.Split(b, "/") {
		if strings.HasPrefix(seg, ".") {
			return bad("a component starts with '.'")
		}
	}
	for _, r := range b {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return bad(fmt.Sprintf("character %q not allowed", r))
		}
	}
	return nil
}

// reservedNamespaces belong to the target cluster's own control plane: a copy
// of the source's kube-system must never be applied over the target's.
var reservedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

var accessModes = []corev1.PersistentVolumeAccessMode{
	corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod,
}

// checkName checks a required name; what says what it names.
func checkName(errs *fieldErrors, field, what, name string, check func(string) []string) bool {
	if name == "" {
		errs.addf(field, "is required")
		return false
	}
	if msgs := check(name); len(msgs) > 0 {
		errs.add(field, fmt.Errorf("invalid %s %q: %s", what, name, strings.Join(msgs, "; ")))
		return false
	}
	return true
}

func (c *SyncConfig) validateNamespaces(errs *fieldErrors) {
	const base = "spec.namespaces"
	if len(c.Spec.Namespaces) == 0 {
		errs.addf(base, "at least one namespace mapping is required")
		return
	}
	sources := map[string]string{} // source namespace → path of the mapping
	targets := map[string]string{}
	for i, m := range c.Spec.Namespaces {
		p := indexPath(base, i)
		switch {
		case m.Source != "" && m.Selector != nil:
			errs.addf(p, "source and selector are exclusive: a mapping names one namespace or selects many")
			continue
		case m.Source == "" && m.Selector == nil:
			errs.addf(p, "one of source or selector is required")
			continue
		case m.Selector != nil:
			if m.Target != "" {
				errs.addf(fieldPath(p, "target"), "only a mapping by source has a target: a selector maps namespaces to namespaces of the same name")
			}
			validateSelector(errs, fieldPath(p, "selector"), m.Selector)
			continue
		}
		sourceOK := checkName(errs, fieldPath(p, "source"), "namespace name", m.Source, validation.IsDNS1123Label)
		if prev, ok := sources[m.Source]; ok && sourceOK {
			errs.add(fieldPath(p, "source"), fmt.Errorf("namespace %q is already mapped by %s", m.Source, prev))
			sourceOK = false // a target that repeats the source would only repeat the error
		} else if sourceOK {
			sources[m.Source] = p
		}
		target, tp := m.Target, fieldPath(p, "target")
		if target == "" || target == m.Source {
			if !sourceOK {
				continue
			}
			target = m.Source
		}
		if msgs := validation.IsDNS1123Label(target); len(msgs) > 0 {
			if m.Target != "" {
				errs.add(tp, fmt.Errorf("invalid namespace name %q: %s", target, strings.Join(msgs, "; ")))
			}
			continue
		}
		if slices.Contains(reservedNamespaces, target) {
			errs.add(tp, fmt.Errorf("namespace %q is reserved for the target cluster's own control plane: map it to another name", target))
			continue
		}
		if prev, ok := targets[target]; ok {
			same := ""
			if target == m.Source {
				same = " (a mapping without target keeps the name)"
			}
			errs.add(tp, fmt.Errorf("namespace %q is already the target of %s%s: two source namespaces would overwrite each other", target, prev, same))
			continue
		}
		targets[target] = p
	}
}

var selectorOperators = map[metav1.LabelSelectorOperator]selection.Operator{
	metav1.LabelSelectorOpIn:           selection.In,
	metav1.LabelSelectorOpNotIn:        selection.NotIn,
	metav1.LabelSelectorOpExists:       selection.Exists,
	metav1.LabelSelectorOpDoesNotExist: selection.DoesNotExist,
}

// validateSelector checks what metav1.LabelSelectorAsSelector checks, but
// every requirement and in a stable order, each at its own path.
func validateSelector(errs *fieldErrors, p string, s *metav1.LabelSelector) {
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		if _, err := labels.NewRequirement(k, selection.Equals, []string{s.MatchLabels[k]}); err != nil {
			errs.add(keyPath(fieldPath(p, "matchLabels"), k), fmt.Errorf("invalid label selector: %w", err))
		}
	}
	for i, e := range s.MatchExpressions {
		ep := indexPath(fieldPath(p, "matchExpressions"), i)
		op, ok := selectorOperators[e.Operator]
		if !ok {
			errs.add(fieldPath(ep, "operator"), fmt.Errorf("invalid operator %q: want In, NotIn, Exists or DoesNotExist", e.Operator))
			continue
		}
		if _, err := labels.NewRequirement(e.Key, op, e.Values); err != nil {
			errs.add(ep, fmt.Errorf("invalid label selector: %w", err))
		}
	}
}

var camelCase = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

func validateKindRef(errs *fieldErrors, p string, k KindRef) bool {
	ok := true
	switch {
	case k.Kind == "":
		errs.addf(fieldPath(p, "kind"), "is required")
		ok = false
	case !camelCase.MatchString(k.Kind):
		errs.add(fieldPath(p, "kind"), fmt.Errorf("invalid kind %q: want the CamelCase kind, e.g. ConfigMap, not the resource name", k.Kind))
		ok = false
	}
	switch {
	case k.Group == "":
	case k.Group == "core":
		errs.addf(fieldPath(p, "group"), `the core group is written as "" (leave group out)`)
		ok = false
	case len(validation.IsDNS1123Subdomain(k.Group)) > 0:
		errs.add(fieldPath(p, "group"), fmt.Errorf("invalid group %q: want an API group without version, e.g. apps, or none for the core group", k.Group))
		ok = false
	}
	return ok
}

func (c *SyncConfig) validateResources(errs *fieldErrors) {
	const base = "spec.resources"
	r := c.Spec.Resources
	// kindList checks a list of kinds and returns the valid, first-listed
	// ones in order, with their paths.
	kindList := func(name string, list []KindRef) ([]KindRef, map[KindRef]string) {
		var kinds []KindRef
		seen := map[KindRef]string{}
		for i, k := range list {
			p := indexPath(fieldPath(base, name), i)
			if !validateKindRef(errs, p, k) {
				continue
			}
			if prev, ok := seen[k]; ok {
				errs.add(p, fmt.Errorf("kind %s is already listed at %s", k, prev))
				continue
			}
			seen[k] = p
			kinds = append(kinds, k)
		}
		return kinds, seen
	}
	includedKinds, included := kindList("include", r.Include)
	excludedKinds, excluded := kindList("exclude", r.Exclude)
	for _, k := range excludedKinds {
		if prev, ok := included[k]; ok {
			errs.add(excluded[k], fmt.Errorf("kind %s is also included at %s", k, prev))
		}
	}
	disabled := map[string]string{}
	for i, id := range r.DisableDefaultExclusions {
		p := indexPath(fieldPath(base, "disableDefaultExclusions"), i)
		if _, ok := defaultExclusionByID(id); !ok {
			msg := fmt.Sprintf("unknown default exclusion %q", id)
			if s := suggest(id, exclusionIDs()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			errs.addf(p, msg)
			continue
		}
		if prev, ok := disabled[id]; ok {
			errs.add(p, fmt.Errorf("%q is already listed at %s", id, prev))
			continue
		}
		disabled[id] = p
	}
	for _, k := range includedKinds {
		for _, x := range defaultExclusions {
			if x.match == nil && x.Group == k.Group && x.Kind == k.Kind && disabled[x.ID] == "" {
				errs.addDep(included[k], fmt.Errorf("kind %s is left out by the default exclusion %q: add it to disableDefaultExclusions to take it", k, x.ID),
					fieldPath(base, "disableDefaultExclusions"))
			}
		}
	}
	for i, f := range r.ExcludeObjects {
		p := indexPath(fieldPath(base, "excludeObjects"), i)
		if f.Kind == nil && f.Namespace == "" && f.Name == "" && f.Selector == nil {
			errs.addf(p, "an object filter needs at least one of kind, namespace, name or selector")
			continue
		}
		if f.Kind != nil {
			validateKindRef(errs, fieldPath(p, "kind"), *f.Kind)
		}
		validateGlob(errs, fieldPath(p, "namespace"), f.Namespace)
		validateGlob(errs, fieldPath(p, "name"), f.Name)
		if f.Selector != nil {
			validateSelector(errs, fieldPath(p, "selector"), f.Selector)
		}
	}
}

func (k KindRef) String() string {
	if k.Group == "" {
		return k.Kind
	}
	return k.Kind + "." + k.Group
}

func validateGlob(errs *fieldErrors, p, glob string) {
	if glob == "" {
		return
	}
	// path.Match checks the whole pattern even when the name does not match.
	if _, err := path.Match(glob, ""); err != nil {
		errs.add(p, fmt.Errorf("invalid glob %q: %w", glob, err))
	}
}

func (c *SyncConfig) validateSecrets(errs *fieldErrors) {
	const base = "spec.secrets"
	s := c.Spec.Secrets
	switch s.Mode {
	case "", SecretModeEncrypt, SecretModeExclude:
	default:
		errs.add(fieldPath(base, "mode"), fmt.Errorf("invalid mode %q: want %q or %q", s.Mode, SecretModeEncrypt, SecretModeExclude))
		return
	}
	seen := map[string]string{}
	for i, r := range s.Recipients {
		p := indexPath(fieldPath(base, "recipients"), i)
		if err := checkRecipient(r); err != nil {
			errs.add(p, err)
			continue
		}
		if prev, ok := seen[r]; ok {
			errs.add(p, fmt.Errorf("recipient is already listed at %s", prev))
			continue
		}
		seen[r] = p
	}
	if c.secretMode() == SecretModeEncrypt && len(s.Recipients) == 0 && c.TakesKind("", "Secret") {
		errs.addDep(fieldPath(base, "recipients"), fmt.Errorf("at least one age recipient is required when mode is %q (or set mode: %s)", SecretModeEncrypt, SecretModeExclude),
			fieldPath(base, "mode"), "spec.resources")
	}
}

var errIdentity = errors.New("is an age identity (a secret key), not a recipient: give its public key (age-keygen -y) and keep the identity out of the repository")

// checkRecipient parses one age recipient. Its errors never quote the value
// when it may be a secret key.
func checkRecipient(r string) error {
	if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(r)), "AGE-SECRET-KEY-") {
		return errIdentity
	}
	if strings.ContainsAny(r, "\r\n#") || strings.TrimSpace(r) != r || r == "" {
		return errors.New("invalid age recipient: want one recipient (age1…) per entry, without spaces or comments")
	}
	recs, err := age.ParseRecipients(strings.NewReader(r))
	if err != nil {
		// ParseRecipients reads a recipients file and says "error at line
		// 1"; the parser of the one recipient says what is wrong with it.
		switch {
		case strings.HasPrefix(r, "age1pq1"):
			_, err = age.ParseHybridRecipient(r)
		case strings.HasPrefix(r, "age1"):
			_, err = age.ParseX25519Recipient(r)
		default:
			err = errors.New("unknown recipient type: want an age recipient (age1…)")
		}
		return fmt.Errorf("invalid age recipient: %w", err)
	}
	if len(recs) != 1 {
		return errors.New("invalid age recipient: want exactly one recipient per entry")
	}
	return nil
}

func validateNameMappings(errs *fieldErrors, base, what string, list []NameMapping, check func(string) []string) {
	seen := map[string]string{}
	for i, m := range list {
		p := indexPath(base, i)
		ok := checkName(errs, fieldPath(p, "source"), what, m.Source, check)
		checkName(errs, fieldPath(p, "target"), what, m.Target, check)
		if !ok {
			continue
		}
		if prev, dup := seen[m.Source]; dup {
			errs.add(fieldPath(p, "source"), fmt.Errorf("%q is already mapped by %s", m.Source, prev))
			continue
		}
		seen[m.Source] = p
	}
}

func (c *SyncConfig) validateApply(errs *fieldErrors) {
	const base = "spec.apply"
	for i, k := range c.Spec.Apply.Recreate {
		p := fmt.Sprintf("%s.recreate[%d]", base, i)
		if !validateKindRef(errs, p, k) {
			continue
		}
		if slices.Contains(neverRecreated, k) {
			errs.add(p, fmt.Errorf("%s is never recreated: deleting it deletes what it holds", k))
		}
	}
	if p := c.Spec.Apply.MaxPrunePercent; p != nil && (*p < 0 || *p > 100) {
		errs.add(base+".maxPrunePercent", fmt.Errorf("is %d, want 0 to 100", *p))
	}
}

func (c *SyncConfig) validateReplication(errs *fieldErrors) {
	const base = "spec.replication"
	r := c.Spec.Replication
	switch r.Mode {
	case "", ReplicationModeManual, ReplicationModeScheduled, ReplicationModeContinuous:
	default:
		errs.add(fieldPath(base, "mode"), fmt.Errorf("invalid mode %q: want %q, %q or %q", r.Mode, ReplicationModeManual, ReplicationModeScheduled, ReplicationModeContinuous))
		return
	}
	scheduled := r.Mode == ReplicationModeScheduled
	switch {
	case scheduled && r.Schedule == "":
		errs.addDep(fieldPath(base, "schedule"), fmt.Errorf("is required when mode is %q", ReplicationModeScheduled), fieldPath(base, "mode"))
	case !scheduled && r.Schedule != "":
		errs.addDep(fieldPath(base, "schedule"), fmt.Errorf("is only used when mode is %q, and mode is %q", ReplicationModeScheduled, c.replicationMode()), fieldPath(base, "mode"))
	case scheduled:
		if err := checkCron(r.Schedule); err != nil {
			errs.add(fieldPath(base, "schedule"), err)
		}
	}
	if r.TimeZone == "" {
		return
	}
	if !scheduled {
		errs.addDep(fieldPath(base, "timeZone"), fmt.Errorf("is only used when mode is %q, and mode is %q", ReplicationModeScheduled, c.replicationMode()), fieldPath(base, "mode"))
		return
	}
	if r.TimeZone == "Local" {
		errs.addf(fieldPath(base, "timeZone"), `"Local" depends on the machine that runs the controller: name an IANA time zone, e.g. Europe/Berlin`)
		return
	}
	if _, err := time.LoadLocation(r.TimeZone); err != nil {
		errs.add(fieldPath(base, "timeZone"), fmt.Errorf("unknown IANA time zone %q: %w", r.TimeZone, err))
	}
}

var cronField = regexp.MustCompile(`^[0-9A-Za-z*?,/-]+$`)

// checkCron checks the shape of a five-field cron expression only; the
// controller parses it.
func checkCron(s string) error {
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return fmt.Errorf("invalid schedule %q: want five fields (minute hour day-of-month month day-of-week), got %d", s, len(fields))
	}
	for _, f := range fields {
		if !cronField.MatchString(f) {
			return fmt.Errorf("invalid schedule %q: field %q may hold only digits, names, and * , - / ?", s, f)
		}
	}
	// Values out of range (minute 61, month 13) and malformed ranges or
	// steps: the parser the controller uses says, so that a mapping that
	// validates is one the controller can run.
	if _, err := cron.ParseStandard(s); err != nil {
		return fmt.Errorf("invalid schedule %q: %w", s, err)
	}
	return nil
}

func quoteList[T ~string](list []T) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
